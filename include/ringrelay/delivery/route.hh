// delivery/route — where a recipient domain's mail goes.
//
// With `delivery.relayhost` empty, each recipient domain is routed by DNS
// (RFC 5321 5.1):
// - its MX records, lowest preference first, in random order among equal
//   preferences (so equal MX hosts share the load);
// - no MX records (NODATA): the domain itself is the one host ("implicit
//   MX"); a domain that does not exist (NXDOMAIN) fails for good, 5.1.2;
// - a null MX (RFC 7505, "0 ."): the domain accepts no mail, 5.1.10;
// - when this relay is one of the MX hosts (its name is our `hostname`),
//   only hosts more preferred than ours are used, and none left is a mail
//   loop, 5.4.6; an address that is one of our own listeners on the MX port
//   is dropped the same way;
// - each host's A records, then its AAAA records, become the targets tried
//   in order: the next target on a connection failure or a 4xx greeting or
//   EHLO (service.cc).
// A domain written as an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]")
// is that address. A lookup that fails temporarily (SERVFAIL, timeout, a
// network error) defers the domain's mail, 4.4.3; so does an MX host list
// whose address lookups all fail temporarily. The DNS cache (dns/cache) keeps
// the answers for their TTLs, so routing a domain again is cheap.
//
// Shard-local, like the resolver it uses.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <random>
#include <ringrelay/dns/answer.hh>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::dns {
class resolver;
}

namespace ringrelay::delivery {

// One address to connect to, and the host name it stands for (for logs and
// the bounce's Remote-MTA).
struct route_target {
  std::string host;  // the MX host's name, or the address literal
  sockaddr_storage addr{};
  socklen_t addr_len = 0;

  // "mx.example.net[192.0.2.1]:25"
  std::string describe() const;
};

enum class route_status : std::uint8_t {
  ok,         // targets to try, in order
  temporary,  // try again later: status 4.x.x and text say why
  permanent,  // the recipients fail: status 5.x.x and text say why
};

struct route {
  route_status status = route_status::temporary;
  std::vector<route_target> targets;
  std::string enhanced;  // "5.1.10", "4.4.3", ... (not for ok)
  std::string text;      // the reason in words, for logs and bounces
};

// The domain part of a recipient address, lower case ("" when none).
std::string recipient_domain(std::string_view address);

// What the MX answer says, before any address lookup. Pure.
struct mx_plan {
  enum class verdict : std::uint8_t { hosts, null_mx, loop, none } what = verdict::none;
  std::vector<std::string> hosts;  // in the order to try them
};
// `mx`: the MX records found (an empty list: none). `self`: our host name.
mx_plan plan_mx(std::span<const dns::record* const> mx, std::string_view self, std::mt19937& rng);

// Our own listening addresses, so that a route never points back at us.
struct self_addresses {
  std::string hostname;
  std::vector<sockaddr_storage> listeners;  // with their ports
  // The host's interface addresses (ports ignored): a wildcard listener
  // ("0.0.0.0", "::") answers on these and on loopback.
  std::vector<sockaddr_storage> interfaces;
  // True when connecting to `addr` would reach one of our listeners.
  bool contains(const sockaddr_storage& addr) const;
};

// The IPv4 and IPv6 addresses of this host's interfaces now (getifaddrs);
// empty if they cannot be listed.
std::vector<sockaddr_storage> interface_addresses();

using route_callback = std::function<void(route)>;

// Resolves `domain` to a route through `res`; calls `done` once, after the
// lookups (never inside this call). Hosts beyond the first `max_hosts` MX
// hosts are not looked up.
void resolve_route(dns::resolver& res, const std::string& domain, std::uint16_t port,
                   const self_addresses& self, std::mt19937& rng, route_callback done,
                   std::size_t max_hosts = 10);

}  // namespace ringrelay::delivery
