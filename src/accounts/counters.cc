// accounts/counters — see the header for the contract.
//
// Every change is a compare-and-swap loop on one atomic. Two atomics cannot
// change in one step, so a charge that needs both (quota up to the limit,
// the rest from blocks) takes the blocks first, with a CAS that only
// succeeds when the balance covers them, and then the quota with a CAS that
// only succeeds when the word is still the one the split was computed from.
// If the word moved, the split is recomputed and the blocks held adjusted;
// if the blocks can no longer cover it, the ones held go back. So the quota
// part never passes the day's limit and the balance never goes below zero,
// whatever the interleaving.
#include <algorithm>
#include <limits>
#include <ringrelay/accounts/counters.hh>

namespace ringrelay::accounts {
namespace {

// acq_rel on success pairs with `usage`'s acquire load and with the next
// CAS on another shard; relaxed first loads are fine because a stale value
// only makes the CAS fail and the loop retry with the fresh one.
constexpr auto success = std::memory_order_acq_rel;
constexpr auto failure = std::memory_order_relaxed;
constexpr auto relaxed = std::memory_order_relaxed;

// The day a charge on `day` goes to and what that day has used: a word
// from an older day counts as nothing used (the daily reset), and a word
// from a newer day wins over a caller whose clock lags.
struct day_usage {
  std::uint32_t day;
  std::uint64_t used;
};

day_usage usage_for(std::uint64_t word, std::uint32_t day) {
  const std::uint32_t d = std::max(day, packed_day(word));
  return {d, packed_day(word) == d ? packed_usage(word) : 0};
}

std::uint64_t room(std::uint64_t used, std::uint64_t daily_quota) {
  const std::uint64_t limit = std::min(daily_quota, max_usage);
  return limit > used ? limit - used : 0;
}

// Takes `n` blocks if the balance covers them; otherwise changes nothing.
bool take_blocks(counter_slot& slot, std::uint64_t n) {
  if (n == 0) return true;
  std::int64_t have = slot.blocks.load(relaxed);
  do {
    if (have < 0 || static_cast<std::uint64_t>(have) < n) return false;
  } while (!slot.blocks.compare_exchange_weak(have, have - static_cast<std::int64_t>(n), success,
                                              failure));
  return true;
}

void give_blocks(counter_slot& slot, std::uint64_t n) {
  constexpr auto most = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (n != 0) add_blocks(slot, static_cast<std::int64_t>(std::min(n, most)));
}

// Takes `n` off `day`'s usage. A word holding another day is left alone:
// `day` has ended and the word now counts a later one.
void give_quota(counter_slot& slot, std::uint32_t day, std::uint64_t n) {
  if (n == 0) return;
  std::uint64_t word = slot.usage_word.load(relaxed);
  std::uint64_t next = 0;
  do {
    if (packed_day(word) != day) return;
    const std::uint64_t used = packed_usage(word);
    next = pack_usage(day, used - std::min(used, n));
  } while (!slot.usage_word.compare_exchange_weak(word, next, success, failure));
}

// Records that `r` now has quota on `day`: what it had on an earlier day
// is final (that word was replaced by the CAS that charged `day`).
void move_to_day(reservation& r, std::uint32_t day) {
  if (r.day == day) return;
  r.ended += r.quota;
  r.quota = 0;
  r.day = day;
}

// Moves what `r` holds in blocks to the day's quota while it has room.
void prefer_quota(counter_slot& slot, reservation& r, std::uint32_t day,
                  std::uint64_t daily_quota) {
  if (r.blocks == 0) return;
  std::uint64_t word = slot.usage_word.load(relaxed);
  for (;;) {
    const auto [d, used] = usage_for(word, day);
    const std::uint64_t n = std::min(r.blocks, room(used, daily_quota));
    if (n == 0) return;
    if (slot.usage_word.compare_exchange_weak(word, pack_usage(d, used + n), success, failure)) {
      move_to_day(r, d);
      r.quota += n;
      r.blocks -= n;
      give_blocks(slot, n);
      return;
    }
  }
}

}  // namespace

std::uint64_t counter_slot::usage(std::uint32_t day) const {
  // Acquire pairs with the release of the CAS that charged the relays, so
  // a reader on another shard sees the charge once it sees the word.
  const std::uint64_t word = usage_word.load(std::memory_order_acquire);
  return packed_day(word) == day ? packed_usage(word) : 0;
}

std::optional<reservation> reserve(counter_slot& slot, std::uint32_t day, std::uint64_t relays,
                                   std::uint64_t daily_quota) {
  std::uint64_t held = 0;  // blocks taken so far
  std::uint64_t word = slot.usage_word.load(relaxed);
  for (;;) {
    const auto [d, used] = usage_for(word, day);
    const std::uint64_t from_quota = std::min(relays, room(used, daily_quota));
    const std::uint64_t from_blocks = relays - from_quota;
    if (from_blocks > held && !take_blocks(slot, from_blocks - held)) {
      give_blocks(slot, held);
      return std::nullopt;
    }
    if (from_blocks < held) give_blocks(slot, held - from_blocks);
    held = from_blocks;
    // Quota spent: the blocks alone pay, and the word need not change.
    if (from_quota == 0) return reservation{.day = d, .blocks = from_blocks};
    if (slot.usage_word.compare_exchange_weak(word, pack_usage(d, used + from_quota), success,
                                              failure))
      return reservation{.day = d, .quota = from_quota, .blocks = from_blocks};
  }
}

bool settle(counter_slot& slot, reservation& r, std::uint32_t day, std::uint64_t relays,
            std::uint64_t daily_quota) {
  const std::uint64_t have = r.relays();
  if (relays > have) {
    const auto more = reserve(slot, day, relays - have, daily_quota);
    if (!more) return false;
    if (more->quota != 0) move_to_day(r, more->day);
    r.quota += more->quota;
    r.blocks += more->blocks;
  } else {
    std::uint64_t excess = have - relays;
    const std::uint64_t blocks = std::min(excess, r.blocks);
    give_blocks(slot, blocks);
    r.blocks -= blocks;
    excess -= blocks;
    const std::uint64_t quota = std::min(excess, r.quota);
    give_quota(slot, r.day, quota);
    r.quota -= quota;
    r.ended -= excess - quota;
  }
  prefer_quota(slot, r, day, daily_quota);
  return true;
}

void release(counter_slot& slot, reservation& r) {
  give_blocks(slot, r.blocks);
  give_quota(slot, r.day, r.quota);
  r = reservation{};
}

std::int64_t add_blocks(counter_slot& slot, std::int64_t n) {
  std::int64_t have = slot.blocks.load(relaxed);
  std::int64_t next = 0;
  do {
    if (__builtin_add_overflow(have, n, &next))
      next = n > 0 ? std::numeric_limits<std::int64_t>::max()
                   : std::numeric_limits<std::int64_t>::min();
  } while (!slot.blocks.compare_exchange_weak(have, next, success, failure));
  return next;
}

counter_slot& counter_store::slot_for(std::string_view username, std::int64_t file_blocks) {
  std::lock_guard lock(_mutex);
  if (auto it = _by_name.find(username); it != _by_name.end()) {
    // The grant is one term of the balance, beside what operators added and
    // what messages used: a changed grant moves the balance by the change,
    // with add_blocks, so shards charging at this moment lose nothing.
    std::int64_t change = 0;
    if (__builtin_sub_overflow(file_blocks, it->second.file_blocks, &change))
      change = file_blocks > it->second.file_blocks ? std::numeric_limits<std::int64_t>::max()
                                                    : std::numeric_limits<std::int64_t>::min();
    if (change != 0) add_blocks(*it->second.slot, change);
    it->second.file_blocks = file_blocks;
    return *it->second.slot;
  }
  counter_slot& slot = _slots.emplace_back();
  slot.blocks.store(file_blocks, std::memory_order_relaxed);
  _by_name.emplace(std::string(username), known{&slot, file_blocks});
  return slot;
}

std::size_t counter_store::size() const {
  std::lock_guard lock(_mutex);
  return _slots.size();
}

}  // namespace ringrelay::accounts
