// dns::resolver on a real reactor::loop, talking UDP to an in-test
// responder on 127.0.0.1: answers, NXDOMAIN and NODATA (cached for the
// SOA's negative TTL), SERVFAIL, a server that never answers and one that
// is not there (never cached), an answer truncated over UDP and fetched
// over TCP, joined lookups, the cache in front, names refused without a
// query, and destruction with lookups in flight.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <ringrelay/dns/resolver.hh>
#include <ringrelay/util/clock.hh>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_server.hh"

namespace ringrelay::dns {
namespace {

using test::rr;

// A port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

class resolver_test : public ::testing::Test {
 protected:
  resolver_test() : loop(reactor::loop_options{256, 10}) {
    // A bug stops the test instead of hanging it.
    loop.on_tick([this](std::int64_t now) {
      if (now - _started > 10000) {
        _out_of_time = true;
        loop.stop();
      }
    });
  }

  resolver_options options(std::uint32_t timeout_ms = 3000) {
    resolver_options o;
    o.servers = {server.address()};
    o.timeout_ms = timeout_ms;
    return o;
  }

  void run() {
    _started = util::monotonic_ms();
    loop.run();
    EXPECT_FALSE(_out_of_time) << "the loop ran out of time";
  }

  lookup_result lookup(resolver& r, const std::string& name, rr_type t) {
    std::optional<lookup_result> got;
    r.lookup(name, t, [&](const lookup_result& res) {
      got = res;
      loop.stop();
    });
    run();
    EXPECT_TRUE(got) << name;
    return got.value_or(lookup_result{});
  }

  test::fake_server server;
  reactor::loop loop;

 private:
  std::int64_t _started = 0;
  bool _out_of_time = false;
};

TEST_F(resolver_test, answers_are_read_and_cached) {
  server.set("example.com", rr_type::mx,
             test::records({{rr_type::mx, "example.com", 300, "10 mx1.example.com"},
                            {rr_type::mx, "example.com", 200, "20 mx2.example.com"}}));
  resolver r(loop, options());
  const lookup_result first = lookup(r, "example.com", rr_type::mx);
  EXPECT_EQ(first.status, lookup_status::ok);
  ASSERT_EQ(first.records.size(), 2u);
  EXPECT_EQ(first.records[0].target, "mx1.example.com");
  EXPECT_EQ(first.records[1].preference, 20);
  EXPECT_EQ(first.ttl, 200u);

  // Case and a final dot do not matter: the same cache entry answers.
  const lookup_result again = lookup(r, "EXAMPLE.com.", rr_type::mx);
  EXPECT_EQ(again.status, lookup_status::ok);
  EXPECT_EQ(again.records, first.records);
  EXPECT_LE(again.ttl, 200u);
  EXPECT_EQ(server.queries("example.com", rr_type::mx), 1);
  EXPECT_EQ(r.stats().lookups, 2u);
  EXPECT_EQ(r.stats().cache_hits, 1u);
  EXPECT_EQ(r.stats().queries, 1u);
}

TEST_F(resolver_test, negative_answers_are_cached_for_the_soa_negative_ttl) {
  server.set("nope.example.com", rr_type::mx, test::nxdomain("example.com", 3600, 120));
  server.set("bare.example.com", rr_type::mx, test::nodata("example.com", 60, 600));
  resolver r(loop, options());
  const lookup_result nx = lookup(r, "nope.example.com", rr_type::mx);
  EXPECT_EQ(nx.status, lookup_status::nxdomain);
  EXPECT_EQ(nx.ttl, 120u);
  const lookup_result nodata = lookup(r, "bare.example.com", rr_type::mx);
  EXPECT_EQ(nodata.status, lookup_status::nodata);
  EXPECT_EQ(nodata.ttl, 60u);

  EXPECT_EQ(lookup(r, "nope.example.com", rr_type::mx).status, lookup_status::nxdomain);
  EXPECT_EQ(lookup(r, "bare.example.com", rr_type::mx).status, lookup_status::nodata);
  EXPECT_EQ(server.total_queries(), 2);
  EXPECT_EQ(r.stats().cache_hits, 2u);
}

TEST_F(resolver_test, a_name_the_server_does_not_know_is_nxdomain_with_the_default_ttl) {
  resolver r(loop, options());
  const lookup_result res = lookup(r, "unknown.example", rr_type::a);
  EXPECT_EQ(res.status, lookup_status::nxdomain);
  EXPECT_EQ(res.ttl, 300u);
}

TEST_F(resolver_test, servfail_is_reported_and_never_cached) {
  server.set("broken.example", rr_type::mx, test::servfail());
  resolver r(loop, options());
  EXPECT_EQ(lookup(r, "broken.example", rr_type::mx).status, lookup_status::servfail);
  const int asked = server.queries("broken.example", rr_type::mx);
  EXPECT_GE(asked, 1);
  EXPECT_EQ(lookup(r, "broken.example", rr_type::mx).status, lookup_status::servfail);
  EXPECT_GT(server.queries("broken.example", rr_type::mx), asked);
  EXPECT_EQ(r.cached(), 0u);
}

TEST_F(resolver_test, a_server_that_never_answers_times_out_and_is_asked_again) {
  server.set("slow.example", rr_type::a, test::silent());
  resolver r(loop, options(300));
  const lookup_result res = lookup(r, "slow.example", rr_type::a);
  EXPECT_EQ(res.status, lookup_status::timeout);
  EXPECT_FALSE(res.detail.empty());
  const int asked = server.queries("slow.example", rr_type::a);
  EXPECT_EQ(lookup(r, "slow.example", rr_type::a).status, lookup_status::timeout);
  EXPECT_GT(server.queries("slow.example", rr_type::a), asked);
  EXPECT_EQ(r.cached(), 0u);
}

TEST_F(resolver_test, an_unreachable_server_is_an_error) {
  resolver_options o = options(1000);
  o.servers = {"127.0.0.1:" + std::to_string(closed_port())};
  resolver r(loop, o);
  const lookup_result res = lookup(r, "example.com", rr_type::a);
  EXPECT_TRUE(res.status == lookup_status::error || res.status == lookup_status::timeout)
      << status_name(res.status);
  EXPECT_EQ(r.cached(), 0u);
}

TEST_F(resolver_test, identical_lookups_in_flight_share_one_query) {
  server.set("example.net", rr_type::a,
             test::records({{rr_type::a, "example.net", 60, "192.0.2.5"}}));
  resolver r(loop, options());
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) {
    r.lookup("example.net", rr_type::a, [&](const lookup_result& res) {
      got.push_back(res.records.empty() ? "" : res.records[0].address_text());
      if (got.size() == 3) loop.stop();
    });
  }
  run();
  EXPECT_EQ(got, (std::vector<std::string>{"192.0.2.5", "192.0.2.5", "192.0.2.5"}));
  EXPECT_EQ(server.queries("example.net", rr_type::a), 1);
  EXPECT_EQ(r.stats().joined, 2u);
}

TEST_F(resolver_test, different_lookups_run_side_by_side) {
  for (int i = 0; i < 20; ++i) {
    const std::string name = "host" + std::to_string(i) + ".example";
    server.set(name, rr_type::a,
               test::records({{rr_type::a, name, 60, "192.0.2." + std::to_string(i + 1)}}));
  }
  resolver r(loop, options());
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    r.lookup("host" + std::to_string(i) + ".example", rr_type::a, [&, i](const lookup_result& res) {
      ASSERT_EQ(res.status, lookup_status::ok);
      EXPECT_EQ(res.records[0].address_text(), "192.0.2." + std::to_string(i + 1));
      if (++answered == 20) loop.stop();
    });
  }
  run();
  EXPECT_EQ(answered, 20);
  EXPECT_EQ(r.cached(), 20u);
}

TEST_F(resolver_test, a_truncated_udp_answer_is_asked_again_over_tcp) {
  const std::string long_text(200, 'x');
  for (const char* name : {"big1.example", "big2.example"}) {
    server.set(name, rr_type::txt,
               test::tcp_only({{rr_type::txt, name, 60, long_text},
                               {rr_type::txt, name, 60, long_text + "y"}}));
  }
  resolver r(loop, options());
  for (const char* name : {"big1.example", "big2.example"}) {
    const lookup_result res = lookup(r, name, rr_type::txt);
    EXPECT_EQ(res.status, lookup_status::ok) << name << ": " << res.detail;
    ASSERT_EQ(res.records.size(), 2u) << name;
    EXPECT_EQ(res.records[1].text, long_text + "y");
    // c-ares asks over UDP first, then over TCP.
    EXPECT_EQ(server.queries(name, rr_type::txt), 2) << name;
  }
  EXPECT_EQ(server.tcp_queries(), 2);
}

TEST_F(resolver_test, a_zero_ttl_answer_is_not_kept) {
  server.set("zero.example", rr_type::a,
             test::records({{rr_type::a, "zero.example", 0, "192.0.2.1"}}));
  resolver r(loop, options());
  EXPECT_EQ(lookup(r, "zero.example", rr_type::a).status, lookup_status::ok);
  EXPECT_EQ(lookup(r, "zero.example", rr_type::a).status, lookup_status::ok);
  EXPECT_EQ(server.queries("zero.example", rr_type::a), 2);
}

TEST_F(resolver_test, invalid_names_are_refused_without_a_query) {
  resolver r(loop, options());
  const std::vector<std::string> names = {"",
                                          ".",
                                          "a..example",
                                          "long.example" + std::string(250, 'x'),
                                          std::string(64, 'a') + ".example",
                                          "sp ace.example",
                                          "caf\xc3\xa9.example",
                                          "back\\slash.example"};
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const lookup_result res = lookup(r, name, rr_type::a);
    EXPECT_EQ(res.status, lookup_status::error);
    EXPECT_EQ(res.detail, "not a valid DNS name");
  }
  EXPECT_EQ(server.total_queries(), 0);
  EXPECT_EQ(r.stats().queries, 0u);
}

TEST_F(resolver_test, callbacks_never_run_inside_lookup) {
  server.set("example.org", rr_type::a,
             test::records({{rr_type::a, "example.org", 60, "192.0.2.9"}}));
  resolver r(loop, options());
  ASSERT_EQ(lookup(r, "example.org", rr_type::a).status, lookup_status::ok);
  bool called = false;
  r.lookup("example.org", rr_type::a, [&](const lookup_result&) {
    called = true;
    loop.stop();
  });
  EXPECT_FALSE(called) << "a cache hit must still call back after the batch";
  r.lookup("", rr_type::a, [](const lookup_result&) {});
  run();
  EXPECT_TRUE(called);
}

TEST_F(resolver_test, lookups_in_flight_when_the_resolver_goes_never_call_back) {
  server.set("slow.example", rr_type::a, test::silent());
  bool called = false;
  std::optional<std::int64_t> until;
  {
    resolver r(loop, options(5000));
    r.lookup("slow.example", rr_type::a, [&](const lookup_result&) { called = true; });
    // Let the query reach the server, then destroy the resolver outside
    // the loop's run (never inside one of its own callbacks).
    loop.on_tick([&](std::int64_t now) {
      if (!until && server.queries("slow.example", rr_type::a) > 0) {
        until = now + 300;
        loop.stop();
      }
    });
    run();
  }
  // The loop carries on: stale completions of the resolver's polls and
  // timer are dropped.
  loop.on_tick([&](std::int64_t now) {
    if (until && now >= *until) loop.stop();
  });
  run();
  EXPECT_FALSE(called);
}

TEST_F(resolver_test, bad_server_addresses_are_refused_at_start) {
  resolver_options o = options();
  o.servers = {"not an address"};
  EXPECT_THROW((resolver{loop, o}), std::runtime_error);
}

TEST_F(resolver_test, servers_take_the_forms_the_config_writes) {
  resolver_options o = options();
  o.servers = {"127.0.0.1:5353", "[::1]:5353", "192.0.2.53", "[2001:db8::53]:53"};
  EXPECT_NO_THROW((resolver{loop, o}));
  o.servers.clear();  // the system's /etc/resolv.conf
  EXPECT_NO_THROW((resolver{loop, o}));
}

}  // namespace
}  // namespace ringrelay::dns
