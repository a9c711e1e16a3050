// auth/failure_limiter — slows and then refuses clients that keep failing
// AUTH (SPEC.md §3: "Repeated failures from one address are slowed and
// then refused (421 4.7.0), without blocking other clients").
//
// Per client address: the first `free_failures` failures in a window cost
// nothing; each further one returns a delay (first_delay, doubling, at
// most max_delay) that the session waits before sending its 535; the
// `max_failures`-th failure within `window` blocks the address for
// `window` from then (the session answers 421 4.7.0 and closes, and
// refuses AUTH while `blocked`). A window starts at an address's first
// failure; once it has passed (and no block is running) the count starts
// again. Successes do not clear the count: interleaving logins to an
// account one owns must not reset the guessing budget.
//
// Addresses: IPv4 as such (IPv4-mapped IPv6 too); IPv6 by its /64, since
// one host usually has a whole /64 to pick addresses from.
//
// Memory is fixed: `capacity` addresses (rounded up to a power of two) in
// 8-way sets, indexed by a keyed hash so a client cannot aim at a set.
// When a set is full, an idle entry (window over, not blocked) is reused
// first, then the one whose window started first among the unblocked, and
// only then the oldest block. A client with very many addresses can thus
// push blocks out: the limit bounds guessing per address, it is not a
// firewall.
//
// Pure: the time is passed in (monotonic milliseconds). One limiter per
// shard, used from that shard only. Errors: none after construction (which
// reads getrandom for the hash key and may throw std::runtime_error).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace ringrelay::auth {

struct limiter_config {
  std::uint32_t free_failures = 3;  // failures with no delay
  std::uint32_t max_failures = 10;  // in one window: the address is blocked
  std::int64_t window_ms = 15 * 60 * 1000;
  std::int64_t first_delay_ms = 1000;
  std::int64_t max_delay_ms = 16000;
  std::size_t capacity = 4096;  // addresses tracked
};

// A client address as the limiter counts it.
struct client_key {
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in bytes[0..3], IPv6 /64 in bytes[0..7]
  bool ipv6 = false;
  bool operator==(const client_key&) const = default;

  // From an AF_INET or AF_INET6 socket address; nullopt for others.
  static std::optional<client_key> from_sockaddr(const sockaddr* sa);
  // From "192.0.2.1" or "2001:db8::1" (as smtp::peer_info holds it).
  static std::optional<client_key> from_string(std::string_view address);
};

struct failure_verdict {
  std::int64_t delay_ms = 0;  // wait this long before answering 535
  bool blocked = false;       // answer 421 4.7.0 and close instead
};

class failure_limiter {
 public:
  explicit failure_limiter(const limiter_config& cfg = {});

  // Counts one failed AUTH from `client` at `now_ms`.
  failure_verdict record_failure(const client_key& client, std::int64_t now_ms);
  // True while `client` is blocked: refuse AUTH (421 4.7.0) at once.
  bool blocked(const client_key& client, std::int64_t now_ms) const;

  const limiter_config& config() const { return _cfg; }

 private:
  static constexpr std::size_t ways = 8;
  static constexpr std::size_t absent = ~std::size_t{0};
  struct entry {
    client_key key;
    bool used = false;
    std::uint32_t failures = 0;
    std::int64_t window_start = 0;
    std::int64_t blocked_until = 0;  // 0 = not blocked
  };

  std::size_t set_of(const client_key& k) const;
  std::size_t find(const client_key& k) const;  // index in _entries, or absent
  entry& claim(const client_key& k, std::int64_t now_ms);
  bool idle(const entry& e, std::int64_t now_ms) const;
  std::int64_t delay_for(std::uint32_t failures) const;

  limiter_config _cfg;
  std::uint64_t _seed[2] = {};
  std::size_t _set_mask = 0;
  std::vector<entry> _entries;  // sets of `ways` entries
};

// One limiter for the whole process: a client's connections land on any
// shard (SO_REUSEPORT), so per-shard counts would let an address make
// `shards` times as many guesses. AUTH is not on the message path, and the
// critical section is one table probe, so a mutex is acceptable here
// (DESIGN.md §1 keeps mutexes off the message path only).
class shared_failure_limiter {
 public:
  explicit shared_failure_limiter(const limiter_config& cfg = {}) : _limiter(cfg) {}
  failure_verdict record_failure(const client_key& client, std::int64_t now_ms) {
    std::lock_guard lock(_mutex);
    return _limiter.record_failure(client, now_ms);
  }
  bool blocked(const client_key& client, std::int64_t now_ms) const {
    std::lock_guard lock(_mutex);
    return _limiter.blocked(client, now_ms);
  }

 private:
  mutable std::mutex _mutex;
  failure_limiter _limiter;
};

}  // namespace ringrelay::auth
