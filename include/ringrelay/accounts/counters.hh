// accounts/counters — each account's relay counters, shared by all shards.
//
// A `counter_slot` is one cache line of atomics: the day's usage packed with
// its day number (so the daily reset is a compare-and-swap that sees an old
// day, not a timer), and the relay-block balance. Slots live in the
// `counter_store`, which survives reloads of users.json: a new account table
// asks the store for each username and gets the slot that username had
// before, so usage and blocks carry over; a new username gets a new slot.
// Slots are never freed while the process runs (an account removed from the
// file and added back finds its counters again).
//
// Threads: a slot's atomics may be read and written from any thread. The
// store's `slot_for` is for the code that loads account tables (startup,
// reload, ringrelayctl); it takes a mutex, so loads may overlap, but it is
// never called on a shard. Charging (reserve at RCPT, settle at end of data,
// release on abort) is issue #4; this header defines the slot and the read
// side only.
//
// Errors: none.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ringrelay::accounts {

// The packed usage word: the day number (days since 1970-01-01 in the
// quota's time zone) in the high 24 bits, the relays used that day in the
// low 40. 2^24 days is 45,000 years; 2^40 relays is a trillion a day.
inline constexpr unsigned usage_bits = 40;
inline constexpr std::uint64_t max_usage = (std::uint64_t{1} << usage_bits) - 1;
inline constexpr std::uint32_t max_day = (std::uint32_t{1} << (64 - usage_bits)) - 1;

constexpr std::uint64_t pack_usage(std::uint32_t day, std::uint64_t usage) {
  return (std::uint64_t{day} << usage_bits) | (usage & max_usage);
}
constexpr std::uint32_t packed_day(std::uint64_t packed) {
  return static_cast<std::uint32_t>(packed >> usage_bits);
}
constexpr std::uint64_t packed_usage(std::uint64_t packed) {
  return packed & max_usage;
}

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

// One account's counters, alone on its cache line so shards charging
// different accounts never share a line.
struct alignas(64) counter_slot {
  // pack_usage(day, relays used that day). A word whose day is older than
  // today means nothing was used today.
  std::atomic<std::uint64_t> usage_word{0};
  // Extra relays bought, used once the daily quota is spent; they do not
  // expire at the reset.
  std::atomic<std::int64_t> blocks{0};

  // Relays used on `day` (0 when the word holds another day).
  std::uint64_t usage(std::uint32_t day) const;
  // charging: issue #4 (reserve, settle and release, each a CAS loop on
  // usage_word, spilling into blocks once the quota is spent).
};

static_assert(sizeof(counter_slot) == 64 && alignof(counter_slot) == 64);

// Hash for maps keyed by username that are searched with a string_view.
struct name_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class counter_store {
 public:
  counter_store() = default;
  counter_store(const counter_store&) = delete;
  counter_store& operator=(const counter_store&) = delete;

  // The slot of `username`. A username seen for the first time gets a new
  // slot whose block balance starts at `initial_blocks`; a known one keeps
  // its slot and balance (`initial_blocks` is ignored). The reference stays
  // valid for the store's lifetime.
  counter_slot& slot_for(std::string_view username, std::int64_t initial_blocks);

  // Slots created so far (one per distinct username ever loaded).
  std::size_t size() const;

 private:
  mutable std::mutex _mutex;
  std::deque<counter_slot> _slots;  // a deque never moves what it holds
  std::unordered_map<std::string, counter_slot*, name_hash, std::equal_to<>> _by_name;
};

}  // namespace ringrelay::accounts
