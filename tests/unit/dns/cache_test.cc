// dns::result_of and dns::cache: which answers are kept and for how long
// (positive: the smallest TTL, capped; negative: RFC 2308's SOA-derived
// TTL or the default, capped; failures: never), expiry, the TTL left on a
// hit, and least-recently-used eviction.
#include <gtest/gtest.h>

#include <ringrelay/dns/cache.hh>
#include <string>
#include <vector>

#include "wire.hh"

namespace ringrelay::dns {
namespace {

answer parsed(const test::wire& w) {
  answer a;
  EXPECT_EQ(parse_answer(w.bytes, a), parse_error::ok);
  return a;
}

lookup_result ok_result(std::uint32_t ttl) {
  lookup_result r;
  r.status = lookup_status::ok;
  r.ttl = ttl;
  return r;
}

TEST(result_of, a_positive_answer_lives_for_its_smallest_ttl) {
  test::wire w = test::response("www.example.com", rr_type::a, 3);
  w.cname("www.example.com", 120, "host.example.com");
  w.a("host.example.com", 600, "192.0.2.1");
  w.a("host.example.com", 300, "192.0.2.2");
  const lookup_result r = result_of(parsed(w), rr_type::a, {});
  EXPECT_EQ(r.status, lookup_status::ok);
  EXPECT_EQ(r.ttl, 120u);
  EXPECT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.of_type(rr_type::a).size(), 2u);
  EXPECT_EQ(r.of_type(rr_type::cname).size(), 1u);
}

TEST(result_of, ttls_are_capped) {
  test::wire w = test::response("example.com", rr_type::mx, 1);
  w.mx("example.com", 7 * 86400, 10, "mx.example.com");
  EXPECT_EQ(result_of(parsed(w), rr_type::mx, {}).ttl, 86400u);
  cache_limits small;
  small.max_ttl = 60;
  EXPECT_EQ(result_of(parsed(w), rr_type::mx, small).ttl, 60u);
}

TEST(result_of, negative_answers_use_the_soa_or_the_default) {
  struct row {
    const char* what;
    rcode code;
    bool soa;
    std::uint32_t soa_ttl, minimum;
    lookup_status status;
    std::uint32_t ttl;
  };
  const row rows[] = {
      {"NXDOMAIN, SOA minimum smaller", rcode::nxdomain, true, 3600, 600, lookup_status::nxdomain,
       600},
      {"NXDOMAIN, SOA TTL smaller", rcode::nxdomain, true, 30, 600, lookup_status::nxdomain, 30},
      {"NXDOMAIN without SOA", rcode::nxdomain, false, 0, 0, lookup_status::nxdomain, 300},
      {"NODATA with SOA", rcode::noerror, true, 900, 900, lookup_status::nodata, 900},
      {"NODATA without SOA", rcode::noerror, false, 0, 0, lookup_status::nodata, 300},
      {"NXDOMAIN, SOA over the cap", rcode::nxdomain, true, 86400, 86400, lookup_status::nxdomain,
       10800},
      {"NODATA, SOA says zero", rcode::noerror, true, 0, 300, lookup_status::nodata, 0},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    test::wire w = test::response("x.example.com", rr_type::mx, 0, r.soa ? 1 : 0, r.code);
    if (r.soa) w.soa("example.com", r.soa_ttl, r.minimum);
    const lookup_result res = result_of(parsed(w), rr_type::mx, {});
    EXPECT_EQ(res.status, r.status);
    EXPECT_EQ(res.ttl, r.ttl);
  }
}

TEST(result_of, a_cname_without_the_asked_type_is_nodata) {
  test::wire w = test::response("www.example.com", rr_type::mx, 1, 1);
  w.cname("www.example.com", 600, "host.example.com");
  w.soa("example.com", 3600, 120);
  const lookup_result r = result_of(parsed(w), rr_type::mx, {});
  EXPECT_EQ(r.status, lookup_status::nodata);
  EXPECT_EQ(r.ttl, 120u);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].type, rr_type::cname);
}

TEST(result_of, failures_are_never_cached) {
  const lookup_result servfail = result_of(
      parsed(test::response("example.com", rr_type::a, 0, 0, rcode::servfail)), rr_type::a, {});
  EXPECT_EQ(servfail.status, lookup_status::servfail);
  EXPECT_EQ(servfail.ttl, 0u);
  const lookup_result refused = result_of(
      parsed(test::response("example.com", rr_type::a, 0, 0, rcode::refused)), rr_type::a, {});
  EXPECT_EQ(refused.status, lookup_status::error);
  EXPECT_EQ(refused.ttl, 0u);
  EXPECT_EQ(refused.detail, "the server answered REFUSED");
}

TEST(cache, a_hit_reports_the_ttl_left_rounded_up) {
  cache c({});
  c.store("example.com", rr_type::mx, ok_result(60), 1000);
  auto hit = c.find("example.com", rr_type::mx, 1000);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->ttl, 60u);
  EXPECT_EQ(c.find("example.com", rr_type::mx, 30500)->ttl, 31u);
  EXPECT_EQ(c.find("example.com", rr_type::mx, 60999)->ttl, 1u);
  EXPECT_FALSE(c.find("example.com", rr_type::mx, 61000));
  EXPECT_EQ(c.size(), 0u);
}

TEST(cache, names_and_types_are_separate_entries) {
  cache c({});
  c.store("example.com", rr_type::mx, ok_result(60), 0);
  EXPECT_FALSE(c.find("example.com", rr_type::a, 0));
  EXPECT_FALSE(c.find("example.org", rr_type::mx, 0));
  EXPECT_TRUE(c.find("example.com", rr_type::mx, 0));
}

TEST(cache, a_zero_ttl_is_not_stored) {
  cache c({});
  c.store("example.com", rr_type::a, ok_result(0), 0);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_FALSE(c.find("example.com", rr_type::a, 0));
}

TEST(cache, storing_again_replaces_the_entry) {
  cache c({});
  c.store("example.com", rr_type::a, ok_result(10), 0);
  lookup_result newer = ok_result(100);
  newer.detail = "newer";
  c.store("example.com", rr_type::a, newer, 5000);
  EXPECT_EQ(c.size(), 1u);
  auto hit = c.find("example.com", rr_type::a, 20000);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->detail, "newer");
  EXPECT_EQ(hit->ttl, 85u);
}

TEST(cache, the_least_recently_used_entry_goes_first) {
  cache_limits limits;
  limits.max_entries = 2;
  cache c(limits);
  c.store("a.example", rr_type::a, ok_result(60), 0);
  c.store("b.example", rr_type::a, ok_result(60), 0);
  ASSERT_TRUE(c.find("a.example", rr_type::a, 0));  // a is now the most recent
  c.store("c.example", rr_type::a, ok_result(60), 0);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(c.find("a.example", rr_type::a, 0));
  EXPECT_FALSE(c.find("b.example", rr_type::a, 0));
  EXPECT_TRUE(c.find("c.example", rr_type::a, 0));
}

}  // namespace
}  // namespace ringrelay::dns
