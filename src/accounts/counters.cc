// accounts/counters — see the header for the contract.
#include <ringrelay/accounts/counters.hh>

namespace ringrelay::accounts {

std::uint64_t counter_slot::usage(std::uint32_t day) const {
  // Acquire pairs with the release of the CAS that charged the relays, so
  // a reader on another shard sees the charge once it sees the word.
  const std::uint64_t word = usage_word.load(std::memory_order_acquire);
  return packed_day(word) == day ? packed_usage(word) : 0;
}

counter_slot& counter_store::slot_for(std::string_view username, std::int64_t initial_blocks) {
  std::lock_guard lock(_mutex);
  if (auto it = _by_name.find(username); it != _by_name.end()) return *it->second;
  counter_slot& slot = _slots.emplace_back();
  slot.blocks.store(initial_blocks, std::memory_order_relaxed);
  _by_name.emplace(std::string(username), &slot);
  return slot;
}

std::size_t counter_store::size() const {
  std::lock_guard lock(_mutex);
  return _slots.size();
}

}  // namespace ringrelay::accounts
