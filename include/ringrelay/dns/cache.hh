// dns/cache — what a lookup found, and the shard's cache of it.
//
// `result_of` turns a parsed answer into a `lookup_result` with the time it
// may be reused: a positive answer for the smallest TTL of its records, a
// negative one (NXDOMAIN, or NOERROR without a record of the asked type)
// for the SOA-derived negative TTL of RFC 2308 §5, or a default when the
// server sent no SOA; both are capped. SERVFAIL, timeouts and every other
// failure get no time at all: they are never cached, the next lookup asks
// again.
//
// `cache` keeps results by (name, type) until their time is up, at most
// `max_entries` of them: the least recently used goes first. It is pure —
// the caller passes the monotonic time — and shard-local: one per
// resolver, no locking, all calls on one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <ringrelay/dns/answer.hh>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringrelay::dns {

enum class lookup_status : std::uint8_t {
  ok,        // at least one record of the asked type
  nxdomain,  // the name does not exist
  nodata,    // the name exists, without a record of the asked type
  servfail,  // the server could not answer (RCODE 2)
  timeout,   // no answer in time
  error,     // anything else: REFUSED, unreachable server, malformed answer
};

// "ok", "nxdomain", ... (for logs).
const char* status_name(lookup_status s);

struct lookup_result {
  lookup_status status = lookup_status::error;
  // The answer section's records: those of the asked type, and the CNAMEs
  // that led to them (also on nodata/nxdomain, RFC 6604).
  std::vector<record> records;
  std::uint32_t ttl = 0;  // seconds it may still be reused; 0 = not cached
  std::string detail;     // error: what went wrong, for the log

  // The records of type `t`, in answer order.
  std::vector<const record*> of_type(rr_type t) const;
};

struct cache_limits {
  std::size_t max_entries = 10000;
  std::uint32_t max_ttl = 86400;             // cap for positive answers (1 day)
  std::uint32_t max_negative_ttl = 10800;    // cap for negative answers (RFC 2308 §5: 3 hours)
  std::uint32_t default_negative_ttl = 300;  // negative answer without an SOA
};

// The result a parsed answer stands for when `asked` was queried.
lookup_result result_of(const answer& a, rr_type asked, const cache_limits& limits);

class cache {
 public:
  explicit cache(const cache_limits& limits) : _limits(limits) {}

  // A copy of the result for (name, type) with `ttl` set to the seconds
  // left (rounded up), or nullopt when there is none or its time is up.
  // A hit makes the entry the most recently used.
  std::optional<lookup_result> find(std::string_view name, rr_type type, std::int64_t now_ms);

  // Keeps `r` for r.ttl seconds from `now_ms` (replacing an older entry);
  // does nothing when r.ttl is 0. Evicts the least recently used entry
  // beyond `max_entries`.
  void store(std::string_view name, rr_type type, const lookup_result& r, std::int64_t now_ms);

  std::size_t size() const { return _lru.size(); }
  const cache_limits& limits() const { return _limits; }

  // The key of (name, type) here and in the resolver's table of queries.
  static std::string key(std::string_view name, rr_type type);

 private:
  struct entry {
    std::string key;
    lookup_result result;
    std::int64_t expires_ms = 0;
  };

  cache_limits _limits;
  std::list<entry> _lru;  // most recently used first
  std::unordered_map<std::string, std::list<entry>::iterator> _index;
};

}  // namespace ringrelay::dns
