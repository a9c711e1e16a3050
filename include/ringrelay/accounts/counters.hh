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
// Block balance: what an account has is the `blocks` grant of users.json,
// plus the blocks operators added (`ringrelayctl blocks add`, kept in the
// blocks ledger, blocks_ledger.hh), minus the blocks messages used. The
// store remembers the grant each username had at the last load, so a
// reload that changes it adds the difference to the live balance (a grant
// lowered below what is left makes the balance negative: it then covers
// nothing until it is raised again).
//
// Charging (SPEC.md §5, DESIGN.md §4) is three calls, each a CAS loop on the
// slot's atomics: `reserve` at RCPT, `settle` at end of data (and to grow a
// transaction's reservation by later RCPTs), `release` on RSET, a failed or
// refused message, or a dropped connection. Relays come from the day's
// quota first and from the block balance once the quota is spent; the
// reservation records how many came from each and the day, so settle and
// release put back exactly what was taken, to where it was taken from.
// Nothing ever admits more than the day's quota plus the blocks: the quota
// part is admitted only by a CAS that checks it against the day's usage, the
// block part only by a CAS that checks it against the balance.
//
// Days: the caller passes the day number (quota_clock in quota.hh, from a
// time it read once: these functions read no clock). A usage word holding
// an older day counts as nothing used: the first charge of a new day is the
// CAS that replaces the old word, so the reset needs no timer. A word is
// never moved back to an older day: a caller whose clock lags another's
// charges the newer day, so a late "yesterday" can never reset today.
// Relays charged to a day that has ended are final: settle and release
// give back blocks whenever, but quota only to a word that still holds the
// reservation's day (once the word holds a later day, the ended day's usage
// no longer limits anything, and writing to it would corrupt the new day).
//
// Threads: a slot's atomics may be read and written from any thread;
// reserve, settle, release and add_blocks never block, lock or make a
// syscall. A `reservation` belongs to one transaction on one shard. The
// store's `slot_for` is for the code that loads account tables (startup,
// reload, ringrelayctl) and applies the blocks ledger at startup; it takes
// a mutex, so loads may overlap, but it is never called on a shard.
//
// Errors: none. A refusal is a return value and changes nothing.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
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
};

static_assert(sizeof(counter_slot) == 64 && alignof(counter_slot) == 64);

// What a transaction holds: the relays it took and where from. Once the
// message got its 250, this is its charge: `quota` relays on `day` and
// `blocks` off the balance are what a commit record must carry for replay.
struct reservation {
  std::uint32_t day = 0;     // the day `quota` is counted in
  std::uint64_t quota = 0;   // relays in `day`'s usage
  std::uint64_t blocks = 0;  // relays taken from the block balance
  // Relays charged to the quota of a day that has ended (a settle moved the
  // reservation to a new day): final, never given back.
  std::uint64_t ended = 0;

  std::uint64_t relays() const { return quota + blocks + ended; }
};

// Takes `relays` for a transaction on `day`: the day's quota first (at most
// `daily_quota` used that day), then the block balance. nullopt when the
// quota left plus the blocks cannot cover them; nothing is changed then.
// Under contention at the very edge of the balance, a concurrent reserve
// that is about to fail, or a settle moving blocks to quota, can hold
// relays for a moment, so a refusal may be one that an instant later would
// have fit; nothing is ever admitted that does not fit.
std::optional<reservation> reserve(counter_slot& slot, std::uint32_t day, std::uint64_t relays,
                                   std::uint64_t daily_quota);

// Makes `r` hold exactly `relays`, on `day`. More: the difference is taken
// as reserve takes it, on `day`; if it cannot be covered, returns false and
// changes nothing (`r` included). If that moves the quota part to a later
// day than `r.day`, the old quota part becomes `ended`. Fewer: the excess
// goes back blocks first, then quota, then ended (which is only dropped):
// the inverse of reserve's order, so the result is what reserving exactly
// `relays` would have taken. Either way, blocks that `r` still holds move to
// the day's quota while it has room (a release of another transaction may
// have freed some), so blocks pay only for what the quota cannot.
// A growing transaction (a later RCPT) calls settle with r.relays() + n.
bool settle(counter_slot& slot, reservation& r, std::uint32_t day, std::uint64_t relays,
            std::uint64_t daily_quota);

// Gives back everything `r` holds (blocks always, quota if the usage word
// still holds r.day) and empties it.
void release(counter_slot& slot, reservation& r);

// Adds `n` (may be negative) to the block balance, saturating at the int64
// limits; returns the new balance. A negative balance covers nothing.
std::int64_t add_blocks(counter_slot& slot, std::int64_t n);

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

  // The slot of `username`, whose users.json grant is now `file_blocks`. A
  // username seen for the first time gets a new slot whose block balance
  // starts at `file_blocks`; a known one keeps its slot, and `file_blocks`
  // minus the grant it had at the previous call is added to its balance
  // (add_blocks), so an edited grant applies live and an unchanged one
  // changes nothing. The reference stays valid for the store's lifetime.
  counter_slot& slot_for(std::string_view username, std::int64_t file_blocks);

  // Slots created so far (one per distinct username ever loaded).
  std::size_t size() const;

 private:
  struct known {
    counter_slot* slot;
    std::int64_t file_blocks;  // the grant at the last slot_for
  };

  mutable std::mutex _mutex;
  std::deque<counter_slot> _slots;  // a deque never moves what it holds
  std::unordered_map<std::string, known, name_hash, std::equal_to<>> _by_name;
};

}  // namespace ringrelay::accounts
