// delivery/route: MX ordering (pure) and whole routes resolved through the
// real resolver against an in-test DNS server.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <ringrelay/delivery/route.hh>
#include <ringrelay/dns/resolver.hh>
#include <set>

#include "../dns/fake_server.hh"

namespace ringrelay::delivery {
namespace {

using dns::record;
using dns::rr_type;

record mx(std::uint16_t preference, std::string target) {
  record r;
  r.type = rr_type::mx;
  r.preference = preference;
  r.target = std::move(target);
  return r;
}

std::vector<std::string> plan_hosts(const std::vector<record>& recs, std::string_view self,
                                    std::uint32_t seed, mx_plan::verdict* what = nullptr) {
  std::vector<const record*> ptrs;
  for (const auto& r : recs) ptrs.push_back(&r);
  std::mt19937 rng(seed);
  auto plan = plan_mx(ptrs, self, rng);
  if (what) *what = plan.what;
  return plan.hosts;
}

TEST(plan_mx, lowest_preference_first_whatever_the_answer_order) {
  std::vector<record> recs = {mx(30, "c.example"), mx(10, "a.example"), mx(20, "b.example")};
  for (std::uint32_t seed = 0; seed < 20; ++seed)
    EXPECT_EQ(plan_hosts(recs, "relay.test", seed),
              (std::vector<std::string>{"a.example", "b.example", "c.example"}));
}

TEST(plan_mx, equal_preferences_come_in_random_order_after_the_better_ones) {
  std::vector<record> recs = {mx(10, "x.example"), mx(10, "y.example"), mx(5, "first.example"),
                              mx(20, "last.example")};
  std::set<std::vector<std::string>> seen;
  for (std::uint32_t seed = 0; seed < 64; ++seed) {
    auto hosts = plan_hosts(recs, "relay.test", seed);
    ASSERT_EQ(hosts.size(), 4u);
    EXPECT_EQ(hosts.front(), "first.example");
    EXPECT_EQ(hosts.back(), "last.example");
    seen.insert(hosts);
  }
  // Both orders of the two preference-10 hosts show up.
  EXPECT_EQ(seen.size(), 2u);
}

TEST(plan_mx, names_are_lower_case_without_the_final_dot_and_listed_once) {
  std::vector<record> recs = {mx(10, "MX.Example.NET."), mx(20, "mx.example.net")};
  EXPECT_EQ(plan_hosts(recs, "relay.test", 1), (std::vector<std::string>{"mx.example.net"}));
}

TEST(plan_mx, a_null_mx_means_no_mail) {
  mx_plan::verdict what{};
  EXPECT_TRUE(plan_hosts({mx(0, "")}, "relay.test", 1, &what).empty());
  EXPECT_EQ(what, mx_plan::verdict::null_mx);
}

TEST(plan_mx, only_root_targets_mean_no_mail_too) {
  mx_plan::verdict what{};
  EXPECT_TRUE(plan_hosts({mx(10, ""), mx(20, "")}, "relay.test", 1, &what).empty());
  EXPECT_EQ(what, mx_plan::verdict::null_mx);
}

TEST(plan_mx, no_records_means_none) {
  mx_plan::verdict what{};
  EXPECT_TRUE(plan_hosts({}, "relay.test", 1, &what).empty());
  EXPECT_EQ(what, mx_plan::verdict::none);
}

TEST(plan_mx, when_we_are_listed_only_better_hosts_are_used) {
  std::vector<record> recs = {mx(10, "primary.example"), mx(20, "Relay.Test."),
                              mx(30, "backup.example")};
  mx_plan::verdict what{};
  EXPECT_EQ(plan_hosts(recs, "relay.test", 1, &what),
            (std::vector<std::string>{"primary.example"}));
  EXPECT_EQ(what, mx_plan::verdict::hosts);
}

TEST(plan_mx, being_the_best_host_is_a_loop) {
  std::vector<record> recs = {mx(10, "relay.test"), mx(10, "peer.example"),
                              mx(20, "backup.example")};
  mx_plan::verdict what{};
  EXPECT_TRUE(plan_hosts(recs, "relay.test", 1, &what).empty());
  EXPECT_EQ(what, mx_plan::verdict::loop);
}

TEST(route, recipient_domain_is_lower_case) {
  EXPECT_EQ(recipient_domain("Bob@Example.NET"), "example.net");
  EXPECT_EQ(recipient_domain("a@b@Host.Example."), "host.example");
  EXPECT_EQ(recipient_domain("user@[192.0.2.1]"), "[192.0.2.1]");
  EXPECT_EQ(recipient_domain("postmaster"), "");
}

sockaddr_storage address(const char* ip, std::uint16_t port) {
  sockaddr_storage a{};
  if (std::string_view(ip).find(':') != std::string_view::npos) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&a);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
  } else {
    auto* s = reinterpret_cast<sockaddr_in*>(&a);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s->sin_addr);
  }
  return a;
}

TEST(route, self_addresses_match_listeners_and_wildcards_on_loopback) {
  self_addresses self;
  self.listeners = {address("192.0.2.9", 25), address("0.0.0.0", 2525), address("::", 587)};
  EXPECT_TRUE(self.contains(address("192.0.2.9", 25)));
  EXPECT_FALSE(self.contains(address("192.0.2.9", 26)));
  EXPECT_FALSE(self.contains(address("192.0.2.8", 25)));
  EXPECT_TRUE(self.contains(address("127.0.0.5", 2525)));
  EXPECT_FALSE(self.contains(address("198.51.100.1", 2525)));
  EXPECT_TRUE(self.contains(address("::1", 587)));
  EXPECT_FALSE(self.contains(address("2001:db8::1", 587)));
}

TEST(route, a_wildcard_listener_also_answers_on_every_interface_address) {
  self_addresses self;
  self.listeners = {address("0.0.0.0", 25), address("::", 25), address("192.0.2.9", 2525)};
  self.interfaces = {address("198.51.100.7", 0), address("2001:db8::7", 0)};
  EXPECT_TRUE(self.contains(address("198.51.100.7", 25)));
  EXPECT_TRUE(self.contains(address("2001:db8::7", 25)));
  EXPECT_FALSE(self.contains(address("198.51.100.8", 25)));
  EXPECT_FALSE(self.contains(address("198.51.100.7", 26)));
  // A listener on one address does not answer on the others.
  EXPECT_FALSE(self.contains(address("198.51.100.7", 2525)));
}

TEST(route, interface_addresses_lists_the_loopback_interface) {
  auto all = interface_addresses();
  EXPECT_TRUE(std::any_of(all.begin(), all.end(), [](const sockaddr_storage& a) {
    return a.ss_family == AF_INET &&
           reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  }));
}

class route_test : public dns::test::resolver_fixture {
 protected:
  route_test() : res(loop, options()) {
    using dns::test::records;
    server.set("two.example", rr_type::mx,
               records({{rr_type::mx, "two.example", 300, "20 mx2.two.example"},
                        {rr_type::mx, "two.example", 300, "10 mx1.two.example"}}));
    server.set("mx1.two.example", rr_type::a,
               records({{rr_type::a, "mx1.two.example", 300, "192.0.2.1"},
                        {rr_type::a, "mx1.two.example", 300, "192.0.2.11"}}));
    server.set("mx1.two.example", rr_type::aaaa,
               records({{rr_type::aaaa, "mx1.two.example", 300, "2001:db8::1"}}));
    server.set("mx2.two.example", rr_type::a,
               records({{rr_type::a, "mx2.two.example", 300, "192.0.2.2"}}));
    server.set("mx2.two.example", rr_type::aaaa, dns::test::nodata("two.example"));
    server.set("aonly.example", rr_type::mx, dns::test::nodata("aonly.example"));
    server.set("aonly.example", rr_type::a,
               records({{rr_type::a, "aonly.example", 300, "192.0.2.3"}}));
    server.set("aonly.example", rr_type::aaaa, dns::test::nodata("aonly.example"));
    server.set("nomail.example", rr_type::mx,
               records({{rr_type::mx, "nomail.example", 300, "0 ."}}));
    server.set("gone.example", rr_type::mx, dns::test::nxdomain("example"));
    server.set("broken.example", rr_type::mx, dns::test::servfail());
    server.set("loop.example", rr_type::mx,
               records({{rr_type::mx, "loop.example", 300, "10 relay.test"}}));
    server.set("half.example", rr_type::mx,
               records({{rr_type::mx, "half.example", 300, "10 bad.half.example"},
                        {rr_type::mx, "half.example", 300, "20 good.half.example"}}));
    server.set("bad.half.example", rr_type::a, dns::test::servfail());
    server.set("bad.half.example", rr_type::aaaa, dns::test::servfail());
    server.set("good.half.example", rr_type::a,
               records({{rr_type::a, "good.half.example", 300, "192.0.2.5"}}));
    server.set("good.half.example", rr_type::aaaa, dns::test::nodata("half.example"));
    server.set("dead.example", rr_type::mx,
               records({{rr_type::mx, "dead.example", 300, "10 mx.dead.example"}}));
    server.set("mx.dead.example", rr_type::a, dns::test::servfail());
    server.set("mx.dead.example", rr_type::aaaa, dns::test::servfail());
    server.set("noaddr.example", rr_type::mx,
               records({{rr_type::mx, "noaddr.example", 300, "10 mx.noaddr.example"}}));
    server.set("mx.noaddr.example", rr_type::a, dns::test::nodata("noaddr.example"));
    server.set("mx.noaddr.example", rr_type::aaaa, dns::test::nodata("noaddr.example"));
    server.set("self.example", rr_type::mx,
               records({{rr_type::mx, "self.example", 300, "10 mx.self.example"}}));
    server.set("mx.self.example", rr_type::a,
               records({{rr_type::a, "mx.self.example", 300, "127.0.0.1"}}));
    server.set("mx.self.example", rr_type::aaaa, dns::test::nodata("self.example"));
    self.hostname = "relay.test";
    self.listeners = {address("127.0.0.1", 2525)};
  }

  route resolve(const std::string& domain, std::uint16_t port = 25) {
    return run<route>(
        [&](auto done) {
          resolve_route(res, domain, port, self, rng, [done](route r) { done(r); });
        },
        domain);
  }

  static std::vector<std::string> described(const route& r) {
    std::vector<std::string> out;
    for (const auto& t : r.targets) out.push_back(t.describe());
    return out;
  }

  dns::resolver res;
  self_addresses self;
  std::mt19937 rng{7};
};

TEST_F(route_test, mx_hosts_in_preference_order_a_before_aaaa) {
  auto r = resolve("Two.Example");
  ASSERT_EQ(r.status, route_status::ok) << r.text;
  EXPECT_EQ(described(r), (std::vector<std::string>{
                              "mx1.two.example[192.0.2.1]:25", "mx1.two.example[192.0.2.11]:25",
                              "mx1.two.example[2001:db8::1]:25", "mx2.two.example[192.0.2.2]:25"}));
}

TEST_F(route_test, no_mx_falls_back_to_the_domains_own_address) {
  auto r = resolve("aonly.example", 2526);
  ASSERT_EQ(r.status, route_status::ok) << r.text;
  EXPECT_EQ(described(r), (std::vector<std::string>{"aonly.example[192.0.2.3]:2526"}));
}

TEST_F(route_test, permanent_failures_carry_their_status) {
  struct row {
    std::string domain;
    std::string enhanced;
    std::string words;
  };
  for (const row& w : std::vector<row>{
           {"nomail.example", "5.1.10", "null MX"},
           {"gone.example", "5.1.2", "does not exist"},
           {"loop.example", "5.4.6", "loops back"},
           {"noaddr.example", "5.1.2", "no address"},
           {"self.example", "5.4.6", "loops back"},
       }) {
    auto r = resolve(w.domain, 2525);
    EXPECT_EQ(r.status, route_status::permanent) << w.domain;
    EXPECT_EQ(r.enhanced, w.enhanced) << w.domain;
    EXPECT_NE(r.text.find(w.words), std::string::npos) << w.domain << ": " << r.text;
    EXPECT_TRUE(r.targets.empty());
  }
}

TEST_F(route_test, temporary_failures_defer) {
  for (const std::string domain : {"broken.example", "dead.example"}) {
    auto r = resolve(domain);
    EXPECT_EQ(r.status, route_status::temporary) << domain;
    EXPECT_EQ(r.enhanced, "4.4.3") << domain;
    EXPECT_NE(r.text.find("servfail"), std::string::npos) << r.text;
  }
}

TEST_F(route_test, a_host_whose_lookup_fails_is_skipped_when_another_has_addresses) {
  auto r = resolve("half.example");
  ASSERT_EQ(r.status, route_status::ok) << r.text;
  EXPECT_EQ(described(r), (std::vector<std::string>{"good.half.example[192.0.2.5]:25"}));
}

TEST_F(route_test, address_literals_route_without_dns) {
  auto r = resolve("[192.0.2.77]", 2500);
  ASSERT_EQ(r.status, route_status::ok) << r.text;
  EXPECT_EQ(described(r), (std::vector<std::string>{"[192.0.2.77]:2500"}));
  r = resolve("[ipv6:2001:db8::7]");
  ASSERT_EQ(r.status, route_status::ok) << r.text;
  EXPECT_EQ(r.targets[0].addr.ss_family, AF_INET6);
  r = resolve("[127.0.0.1]", 2525);
  EXPECT_EQ(r.status, route_status::permanent);
  EXPECT_EQ(r.enhanced, "5.4.6");
  r = resolve("[not-an-address]");
  EXPECT_EQ(r.status, route_status::permanent);
  EXPECT_EQ(r.enhanced, "5.1.2");
  EXPECT_EQ(server.total_queries(), 0);
}

TEST_F(route_test, internationalised_domains_are_refused_in_words) {
  auto r = resolve(
      "b\xc3\xbc"
      "cher.example");
  EXPECT_EQ(r.status, route_status::permanent);
  EXPECT_EQ(r.enhanced, "5.1.2");
  EXPECT_NE(r.text.find("A-label"), std::string::npos) << r.text;
}

}  // namespace
}  // namespace ringrelay::delivery
