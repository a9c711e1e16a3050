// auth/failure_limiter — see the header for the contract.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <ringrelay/auth/failure_limiter.hh>
#include <string>

#include "secure.hh"

namespace ringrelay::auth {
namespace {

std::uint64_t mix(std::uint64_t x) {
  // The MurmurHash3 / SplitMix64 finaliser: every input bit reaches every
  // output bit.
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

client_key ipv4_key(const std::uint8_t* addr) {
  client_key k;
  std::memcpy(k.bytes.data(), addr, 4);
  return k;
}

client_key ipv6_key(const in6_addr& addr) {
  // ::ffff:a.b.c.d is how a dual-stack socket shows an IPv4 client.
  if (IN6_IS_ADDR_V4MAPPED(&addr)) return ipv4_key(addr.s6_addr + 12);
  client_key k;
  k.ipv6 = true;
  std::memcpy(k.bytes.data(), addr.s6_addr, 8);  // the /64
  return k;
}

}  // namespace

std::optional<client_key> client_key::from_sockaddr(const sockaddr* sa) {
  if (!sa) return std::nullopt;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return ipv4_key(reinterpret_cast<const std::uint8_t*>(&in->sin_addr));
  }
  if (sa->sa_family == AF_INET6)
    return ipv6_key(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return std::nullopt;
}

std::optional<client_key> client_key::from_string(std::string_view address) {
  // A zone ("fe80::1%eth0") does not change which host it is.
  std::string text(address.substr(0, address.find('%')));
  std::uint8_t v4[4];
  if (inet_pton(AF_INET, text.c_str(), v4) == 1) return ipv4_key(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return ipv6_key(v6);
  return std::nullopt;
}

failure_limiter::failure_limiter(const limiter_config& cfg) : _cfg(cfg) {
  _cfg.max_failures = std::max<std::uint32_t>(_cfg.max_failures, 1);
  _cfg.window_ms = std::max<std::int64_t>(_cfg.window_ms, 1);
  std::size_t sets = 1;
  while (sets * ways < _cfg.capacity) sets *= 2;
  _cfg.capacity = sets * ways;
  _set_mask = sets - 1;
  _entries.resize(_cfg.capacity);
  detail::random_bytes(_seed, sizeof _seed);
}

std::size_t failure_limiter::set_of(const client_key& k) const {
  std::uint64_t lo = 0, hi = 0;
  std::memcpy(&lo, k.bytes.data(), 8);
  std::memcpy(&hi, k.bytes.data() + 8, 8);
  const std::uint64_t h = mix(mix(lo ^ _seed[0]) ^ hi ^ _seed[1] ^ (k.ipv6 ? 1 : 0));
  return static_cast<std::size_t>(h) & _set_mask;
}

std::size_t failure_limiter::find(const client_key& k) const {
  const std::size_t first = set_of(k) * ways;
  for (std::size_t i = first; i < first + ways; ++i)
    if (_entries[i].used && _entries[i].key == k) return i;
  return absent;
}

bool failure_limiter::idle(const entry& e, std::int64_t now_ms) const {
  return !e.used || (e.blocked_until <= now_ms && now_ms - e.window_start >= _cfg.window_ms);
}

// An entry for a client not in the table, taken from its set: an unused or
// idle one, else the unblocked one with the oldest window, else the block
// that ends first.
failure_limiter::entry& failure_limiter::claim(const client_key& k, std::int64_t now_ms) {
  entry* set = &_entries[set_of(k) * ways];
  entry* victim = std::find_if(set, set + ways, [&](const entry& e) { return idle(e, now_ms); });
  if (victim == set + ways) {
    victim = nullptr;
    for (entry* e = set; e != set + ways; ++e)
      if (e->blocked_until <= now_ms && (!victim || e->window_start < victim->window_start))
        victim = e;
  }
  if (!victim) {
    victim = std::min_element(set, set + ways, [](const entry& a, const entry& b) {
      return a.blocked_until < b.blocked_until;
    });
  }
  *victim = entry{k, true, 0, now_ms, 0};
  return *victim;
}

std::int64_t failure_limiter::delay_for(std::uint32_t failures) const {
  if (failures <= _cfg.free_failures) return 0;
  const std::uint32_t doublings = std::min<std::uint32_t>(failures - _cfg.free_failures - 1, 30);
  return std::min(_cfg.first_delay_ms << doublings, _cfg.max_delay_ms);
}

failure_verdict failure_limiter::record_failure(const client_key& client, std::int64_t now_ms) {
  const std::size_t i = find(client);
  entry* e = i == absent ? &claim(client, now_ms) : &_entries[i];
  if (e->blocked_until > now_ms) return {0, true};
  if (e->blocked_until != 0 || now_ms - e->window_start >= _cfg.window_ms) {
    // A block or a window has run out: count afresh from this failure.
    e->failures = 0;
    e->blocked_until = 0;
    e->window_start = now_ms;
  }
  if (++e->failures >= _cfg.max_failures) {
    e->blocked_until = now_ms + _cfg.window_ms;
    return {0, true};
  }
  return {delay_for(e->failures), false};
}

bool failure_limiter::blocked(const client_key& client, std::int64_t now_ms) const {
  const std::size_t i = find(client);
  return i != absent && _entries[i].blocked_until > now_ms;
}

}  // namespace ringrelay::auth
