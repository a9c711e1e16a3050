#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <ringrelay/delivery/route.hh>
#include <ringrelay/dns/resolver.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/util/hostname.hh>

namespace ringrelay::delivery {
namespace {

// Lower case, without a final dot: how names are compared.
std::string lowered(std::string_view s) {
  std::string out = util::ascii_lowered(s);
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

route_target make_target(std::string host, int family, const void* address, std::uint16_t port) {
  route_target t;
  t.host = std::move(host);
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&t.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, address, 4);
    t.addr_len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&t.addr);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, address, 16);
    t.addr_len = sizeof(sockaddr_in6);
  }
  return t;
}

route failed(route_status s, std::string enhanced, std::string text) {
  route r;
  r.status = s;
  r.enhanced = std::move(enhanced);
  r.text = std::move(text);
  return r;
}

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3).
bool parse_literal(std::string_view domain, std::uint16_t port, route_target& out) {
  if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') return false;
  std::string inner(domain.substr(1, domain.size() - 2));
  unsigned char buf[16];
  if (inner.size() > 5 && strncasecmp(inner.c_str(), "ipv6:", 5) == 0) {
    if (inet_pton(AF_INET6, inner.c_str() + 5, buf) != 1) return false;
    out = make_target(std::string(domain), AF_INET6, buf, port);
    return true;
  }
  if (inet_pton(AF_INET, inner.c_str(), buf) != 1) return false;
  out = make_target(std::string(domain), AF_INET, buf, port);
  return true;
}

bool loopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  if (a.ss_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr);
  return false;
}

// The address lookups of one route: A then AAAA for each host, all at once.
struct route_job {
  std::string domain;
  std::vector<std::string> hosts;
  std::uint16_t port = 25;
  const self_addresses* self = nullptr;
  route_callback done;
  // Per host: the A answer, then the AAAA answer.
  std::vector<dns::lookup_result> answers;
  std::size_t waiting = 0;

  void finish() {
    route r;
    bool temporary = false;
    std::string why;
    bool dropped_self = false;
    for (std::size_t h = 0; h < hosts.size(); ++h) {
      for (std::size_t k = 0; k < 2; ++k) {
        const auto& a = answers[h * 2 + k];
        auto type = k == 0 ? dns::rr_type::a : dns::rr_type::aaaa;
        if (a.status == dns::lookup_status::ok) {
          for (const auto* rec : a.of_type(type)) {
            auto t = make_target(hosts[h], k == 0 ? AF_INET : AF_INET6, rec->address.data(), port);
            if (self->contains(t.addr)) {
              dropped_self = true;
              continue;
            }
            r.targets.push_back(std::move(t));
          }
        } else if (a.status != dns::lookup_status::nxdomain &&
                   a.status != dns::lookup_status::nodata) {
          temporary = true;
          if (why.empty())
            why = std::string(dns::type_name(type)) + " lookup of " + hosts[h] + ": " +
                  dns::status_name(a.status);
        }
      }
    }
    if (!r.targets.empty()) {
      r.status = route_status::ok;
    } else if (temporary) {
      r = failed(route_status::temporary, "4.4.3",
                 "DNS lookups for " + domain + " failed (" + why + "); it is tried again later");
    } else if (dropped_self) {
      r = failed(route_status::permanent, "5.4.6",
                 "mail for " + domain + " loops back to this relay (its MX host is this relay)");
    } else {
      r = failed(route_status::permanent, "5.1.2",
                 "no address (A or AAAA) found for the mail host of " + domain);
    }
    done(std::move(r));
  }
};

void lookup_addresses(dns::resolver& res, std::shared_ptr<route_job> job) {
  job->answers.resize(job->hosts.size() * 2);
  job->waiting = job->answers.size();
  for (std::size_t h = 0; h < job->hosts.size(); ++h) {
    for (std::size_t k = 0; k < 2; ++k) {
      res.lookup(job->hosts[h], k == 0 ? dns::rr_type::a : dns::rr_type::aaaa,
                 [job, slot = h * 2 + k](const dns::lookup_result& r) {
                   job->answers[slot] = r;
                   if (--job->waiting == 0) job->finish();
                 });
    }
  }
}

}  // namespace

std::string route_target::describe() const {
  char ip[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip);
    port = ntohs(sin.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(addr);
    inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof ip);
    port = ntohs(sin6.sin6_port);
  }
  // An address literal is its own address: "[192.0.2.1]:25".
  std::string out = !host.empty() && host.front() == '[' ? std::string() : host;
  out.append("[").append(ip).append("]:").append(std::to_string(port));
  return out;
}

std::string recipient_domain(std::string_view address) {
  auto at = address.rfind('@');
  if (at == std::string_view::npos) return {};
  return lowered(address.substr(at + 1));
}

mx_plan plan_mx(std::span<const dns::record* const> mx, std::string_view self, std::mt19937& rng) {
  mx_plan plan;
  if (mx.empty()) return plan;
  for (const auto* r : mx)
    if (r->null_mx()) {
      plan.what = mx_plan::verdict::null_mx;
      return plan;
    }
  std::vector<const dns::record*> sorted(mx.begin(), mx.end());
  std::shuffle(sorted.begin(), sorted.end(), rng);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto* a, const auto* b) { return a->preference < b->preference; });
  // RFC 5321 5.1: when we are listed, only hosts more preferred than us.
  std::string me = lowered(self);
  std::uint32_t limit = 0x10000;
  for (const auto* r : sorted)
    if (!me.empty() && lowered(r->target) == me)
      limit = std::min<std::uint32_t>(limit, r->preference);
  for (const auto* r : sorted) {
    if (r->preference >= limit || r->target.empty()) continue;
    std::string host = lowered(r->target);
    if (std::find(plan.hosts.begin(), plan.hosts.end(), host) == plan.hosts.end())
      plan.hosts.push_back(std::move(host));
  }
  if (!plan.hosts.empty())
    plan.what = mx_plan::verdict::hosts;
  else
    // Only root targets left ("10 ." is not RFC 7505's form, but means the
    // same), or only hosts at or below our own preference.
    plan.what = limit == 0x10000 ? mx_plan::verdict::null_mx : mx_plan::verdict::loop;
  return plan;
}

namespace {

bool same_host(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  return a.ss_family == AF_INET6 &&
         std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                     &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, 16) == 0;
}

std::uint16_t port_of(const sockaddr_storage& a) {
  return a.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(a).sin_port
                                : reinterpret_cast<const sockaddr_in6&>(a).sin6_port;
}

bool wildcard(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr == htonl(INADDR_ANY);
  return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr);
}

}  // namespace

bool self_addresses::contains(const sockaddr_storage& addr) const {
  if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) return false;
  for (const auto& l : listeners) {
    if (l.ss_family != addr.ss_family || port_of(l) != port_of(addr)) continue;
    if (same_host(l, addr)) return true;
    if (!wildcard(l)) continue;
    if (loopback(addr)) return true;
    for (const auto& i : interfaces)
      if (same_host(i, addr)) return true;
  }
  return false;
}

std::vector<sockaddr_storage> interface_addresses() {
  std::vector<sockaddr_storage> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    const auto family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    sockaddr_storage a{};
    std::memcpy(&a, i->ifa_addr, family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

void resolve_route(dns::resolver& res, const std::string& domain, std::uint16_t port,
                   const self_addresses& self, std::mt19937& rng, route_callback done,
                   std::size_t max_hosts) {
  route_target literal;
  if (!domain.empty() && domain.front() == '[') {
    route r;
    if (!parse_literal(domain, port, literal)) {
      r = failed(route_status::permanent, "5.1.2",
                 "the address literal " + domain + " is not an IPv4 or IPv6 address");
    } else if (self.contains(literal.addr)) {
      r = failed(route_status::permanent, "5.4.6",
                 "mail for " + domain + " loops back to this relay");
    } else {
      r.status = route_status::ok;
      r.targets.push_back(std::move(literal));
    }
    res.loop().defer([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    return;
  }
  for (unsigned char c : domain) {
    if (c >= 0x80) {
      route r = failed(route_status::permanent, "5.1.2",
                       "the domain " + domain +
                           " is internationalised (U-labels); ringrelay does not convert it to "
                           "its ASCII (A-label) form yet");
      res.loop().defer(
          [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
      return;
    }
  }
  auto job = std::make_shared<route_job>();
  job->domain = domain;
  job->port = port;
  job->self = &self;
  job->done = std::move(done);
  res.lookup(domain, dns::rr_type::mx, [&res, &rng, job, max_hosts](const dns::lookup_result& r) {
    switch (r.status) {
      case dns::lookup_status::ok: {
        auto plan = plan_mx(r.of_type(dns::rr_type::mx), job->self->hostname, rng);
        if (plan.what == mx_plan::verdict::null_mx)
          return job->done(failed(route_status::permanent, "5.1.10",
                                  job->domain + " publishes a null MX (RFC 7505): it accepts "
                                                "no mail"));
        if (plan.what == mx_plan::verdict::loop)
          return job->done(
              failed(route_status::permanent, "5.4.6",
                     "mail for " + job->domain +
                         " loops back to this relay (it is the domain's best MX host)"));
        if (plan.hosts.size() > max_hosts) plan.hosts.resize(max_hosts);
        job->hosts = std::move(plan.hosts);
        return lookup_addresses(res, job);
      }
      case dns::lookup_status::nodata:
        job->hosts = {job->domain};
        return lookup_addresses(res, job);
      case dns::lookup_status::nxdomain:
        return job->done(failed(route_status::permanent, "5.1.2",
                                "the domain " + job->domain + " does not exist (DNS: NXDOMAIN)"));
      default:
        return job->done(
            failed(route_status::temporary, "4.4.3",
                   "the MX lookup for " + job->domain + " failed (" + dns::status_name(r.status) +
                       (r.detail.empty() ? "" : ": " + r.detail) + "); it is tried again later"));
    }
  });
}

}  // namespace ringrelay::delivery
