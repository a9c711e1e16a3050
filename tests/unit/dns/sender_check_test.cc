// dns::sender_check — SPEC.md §4's table: the pure steps (domain, reserved
// names, IP-literal targets, the MX / target / address decisions, replies
// and log fields) and each verdict end to end, with canned answers from the
// in-test responder through a real resolver on a real loop.
#include <gtest/gtest.h>

#include <optional>
#include <ringrelay/dns/sender_check.hh>
#include <ringrelay/util/clock.hh>
#include <string>
#include <vector>

#include "fake_server.hh"

namespace ringrelay::dns {
namespace {

using test::rr;

lookup_result result(lookup_status s, std::vector<record> records = {}) {
  lookup_result r;
  r.status = s;
  r.records = std::move(records);
  return r;
}

record mx(std::uint16_t pref, std::string target) {
  record r;
  r.name = "example.com";
  r.type = rr_type::mx;
  r.preference = pref;
  r.target = std::move(target);
  return r;
}

record cname(std::string owner, std::string target) {
  record r;
  r.name = std::move(owner);
  r.type = rr_type::cname;
  r.target = std::move(target);
  return r;
}

record a_record(std::string owner) {
  record r;
  r.name = std::move(owner);
  r.type = rr_type::a;
  return r;
}

TEST(sender_domain, is_the_lower_case_part_after_the_last_at) {
  EXPECT_EQ(sender_domain("alice@Example.COM"), "example.com");
  EXPECT_EQ(sender_domain("alice@example.com."), "example.com");
  EXPECT_EQ(sender_domain("\"a@b\"@mail.example.org"), "mail.example.org");
  EXPECT_EQ(sender_domain("postmaster"), "");
  EXPECT_EQ(sender_domain("alice@"), "");
}

TEST(precheck, decides_what_needs_no_lookup) {
  struct row {
    const char* sender;
    std::vector<std::string> allow;
    std::optional<sender_status> expected;
  };
  const std::optional<sender_status> lookup;  // DNS decides
  const row rows[] = {
      {"", {}, sender_status::null_sender},
      {"alice", {}, sender_status::bad_domain},
      {"alice@", {}, sender_status::bad_domain},
      {"alice@a..example.com", {}, sender_status::bad_domain},
      {"alice@-bad.example.com", {}, sender_status::bad_domain},
      {"alice@exa_mple.com", {}, sender_status::bad_domain},
      {"alice@[192.0.2.1]", {}, sender_status::not_public},
      {"alice@[IPv6:2001:db8::1]", {}, sender_status::not_public},
      {"alice@localhost", {}, sender_status::not_public},
      {"alice@com", {}, sender_status::not_public},
      {"alice@intranet", {}, sender_status::not_public},
      {"alice@printer.local", {}, sender_status::not_public},
      {"alice@box.localhost", {}, sender_status::not_public},
      {"alice@nowhere.invalid", {}, sender_status::not_public},
      {"alice@sender.test", {}, sender_status::not_public},
      {"alice@mail.example", {}, sender_status::not_public},
      {"alice@hidden.onion", {}, sender_status::not_public},
      {"alice@router.home.arpa", {}, sender_status::not_public},
      {"alice@2.0.192.in-addr.arpa", {}, sender_status::not_public},
      {"alice@corp.internal", {}, sender_status::not_public},
      {"alice@host.localdomain", {}, sender_status::not_public},
      {"alice@name.alt", {}, sender_status::not_public},
      {"alice@example.com", {}, lookup},
      {"alice@EXAMPLE.COM.", {}, lookup},
      {"alice@testing.com", {}, lookup},
      {"alice@contest.net", {}, lookup},
      {"alice@local.example.net", {}, lookup},
      {"alice@sender.test", {"test"}, lookup},
      {"alice@test", {"test"}, lookup},
      {"alice@a.b.sender.test", {"sender.test"}, lookup},
      {"alice@other.test", {"sender.test"}, sender_status::not_public},
      {"alice@nowhere.invalid", {"test"}, sender_status::not_public},
      {"alice@intranet", {"intranet"}, lookup},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.sender);
    const auto v = precheck(r.sender, r.allow);
    ASSERT_EQ(v.has_value(), r.expected.has_value());
    if (v) {
      EXPECT_EQ(v->status, *r.expected);
    }
  }
}

TEST(is_ip_literal, recognises_addresses_in_name_form) {
  for (const char* yes : {"192.0.2.1", "\\091192.0.2.1\\093", "2001\\058db8\\058\\0581",
                          "\\0912001\\058db8\\058\\0581\\093", "0.0.0.0"}) {
    EXPECT_TRUE(is_ip_literal(yes)) << yes;
  }
  for (const char* no : {"mx.example.com", "1.2.3", "192.0.2.1.example.com", "999.0.0.1", "",
                         "192.0.2.1\\000x", "\\091mx.example.com\\093"}) {
    EXPECT_FALSE(is_ip_literal(no)) << no;
  }
}

TEST(after_mx, decides_on_the_mx_answer) {
  struct row {
    const char* what;
    lookup_result mx;
    std::optional<sender_status> verdict;
    std::vector<std::string> targets;
    bool fallback;
  };
  const std::vector<row> rows = {
      {"NXDOMAIN", result(lookup_status::nxdomain), sender_status::no_mx, {}, false},
      {"SERVFAIL", result(lookup_status::servfail), sender_status::servfail, {}, false},
      {"timeout", result(lookup_status::timeout), sender_status::timeout, {}, false},
      {"other failure", result(lookup_status::error), sender_status::dns_error, {}, false},
      {"NODATA", result(lookup_status::nodata), std::nullopt, {}, true},
      {"only a CNAME",
       result(lookup_status::nodata, {cname("example.com", "other.example")}),
       std::nullopt,
       {},
       true},
      {"null MX", result(lookup_status::ok, {mx(0, "")}), sender_status::null_mx, {}, false},
      {"null MX among others",
       result(lookup_status::ok, {mx(10, "mx.example.com"), mx(0, "")}),
       sender_status::null_mx,
       {},
       false},
      {"root target, preference 10",
       result(lookup_status::ok, {mx(10, "")}),
       sender_status::null_mx,
       {},
       false},
      {"IPv4 literal",
       result(lookup_status::ok, {mx(10, "mx.example.com"), mx(20, "192.0.2.1")}),
       sender_status::mx_ip,
       {},
       false},
      {"targets by preference, once each",
       result(lookup_status::ok, {mx(20, "b.example.com"), mx(10, "a.example.com"),
                                  mx(30, "a.example.com"), mx(10, "c.example.com")}),
       std::nullopt,
       {"a.example.com", "c.example.com", "b.example.com"},
       false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    const mx_step step = after_mx("example.com", r.mx, 10);
    ASSERT_EQ(step.verdict.has_value(), r.verdict.has_value());
    if (step.verdict) {
      EXPECT_EQ(step.verdict->status, *r.verdict);
      EXPECT_EQ(step.verdict->domain, "example.com");
    }
    EXPECT_EQ(step.targets, r.targets);
    EXPECT_EQ(step.address_fallback, r.fallback);
  }
  const auto many =
      result(lookup_status::ok, {mx(1, "a.example"), mx(2, "b.example"), mx(3, "c.example")});
  EXPECT_EQ(after_mx("example.com", many, 2).targets,
            (std::vector<std::string>{"a.example", "b.example"}));
}

TEST(after_targets, a_cname_at_a_target_fails_and_a_failed_lookup_is_temporary) {
  const std::vector<std::string> targets = {"a.example.com", "b.example.com"};
  const auto fine = result(lookup_status::ok, {a_record("a.example.com")});
  const auto aliased = result(lookup_status::ok, {cname("b.example.com", "real.example.net"),
                                                  a_record("real.example.net")});
  const auto dangling = result(lookup_status::nxdomain, {cname("b.example.com", "gone.example")});
  const auto chained =
      result(lookup_status::ok, {cname("real.example.com", "x.example"), a_record("x.example")});
  EXPECT_EQ(after_targets("example.com", targets, {fine, aliased}).status, sender_status::mx_cname);
  EXPECT_EQ(after_targets("example.com", targets, {fine, dangling}).status,
            sender_status::mx_cname);
  EXPECT_EQ(after_targets("example.com", targets, {fine, chained}).status, sender_status::ok);
  EXPECT_EQ(after_targets("example.com", targets, {fine, result(lookup_status::nxdomain)}).status,
            sender_status::ok);
  EXPECT_EQ(after_targets("example.com", targets, {fine, result(lookup_status::nodata)}).status,
            sender_status::ok);
  EXPECT_EQ(after_targets("example.com", targets, {result(lookup_status::timeout), fine}).status,
            sender_status::timeout);
  // A certain failure wins over a temporary one.
  EXPECT_EQ(
      after_targets("example.com", targets, {result(lookup_status::servfail), aliased}).status,
      sender_status::mx_cname);
}

TEST(after_address, any_address_will_do) {
  struct row {
    lookup_status a, aaaa;
    sender_status expected;
  };
  using ls = lookup_status;
  using ss = sender_status;
  const row rows[] = {
      {ls::ok, ls::nodata, ss::ok},
      {ls::nodata, ls::ok, ss::ok},
      {ls::ok, ls::servfail, ss::ok},
      {ls::nodata, ls::nodata, ss::no_mx},
      {ls::nxdomain, ls::nxdomain, ss::no_mx},
      {ls::servfail, ls::nodata, ss::servfail},
      {ls::nodata, ls::timeout, ss::timeout},
      {ls::error, ls::nodata, ss::dns_error},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(after_address("example.com", result(r.a), result(r.aaaa)).status, r.expected)
        << status_name(r.a) << " " << status_name(r.aaaa);
  }
}

TEST(sender_verdict, replies_and_log_fields) {
  struct row {
    sender_status status;
    const char* reply;
    const char* log;
  };
  const row rows[] = {
      {sender_status::ok, "", "sender_verify=ok"},
      {sender_status::null_sender, "", "sender_verify=null_sender"},
      {sender_status::bad_domain, "451 4.1.8 Sender verify failed: domain has no MX or A record",
       "sender_verify=bad_domain"},
      {sender_status::no_mx, "451 4.1.8 Sender verify failed: domain has no MX or A record",
       "sender_verify=no_mx"},
      {sender_status::not_public, "451 4.1.8 Sender verify failed: domain is not a public domain",
       "sender_verify=not_public"},
      {sender_status::mx_ip, "451 4.1.8 Sender verify failed: MX points to an IP address",
       "sender_verify=mx_ip"},
      {sender_status::mx_cname, "451 4.1.8 Sender verify failed: MX points to a CNAME",
       "sender_verify=mx_cname"},
      {sender_status::servfail, "451 4.4.3 Temporary local error: DNS lookup failed (SERVFAIL)",
       "sender_verify=servfail"},
      {sender_status::timeout, "451 4.4.3 Temporary local error: DNS lookup failed (SERVFAIL)",
       "sender_verify=timeout"},
      {sender_status::dns_error, "451 4.4.3 Temporary local error: DNS lookup failed",
       "sender_verify=dns_error"},
      {sender_status::null_mx,
       "550 5.7.27 Sender domain accepts no mail (null MX): nomail.example publishes a null MX "
       "(RFC 7505), so replies and bounces could not reach the sender; use an address whose "
       "domain receives mail",
       "sender_verify=null_mx"},
  };
  for (const auto& r : rows) {
    const sender_verdict v{r.status, "nomail.example", ""};
    EXPECT_EQ(v.reply(), r.reply);
    EXPECT_EQ(v.log_field(), r.log);
    EXPECT_EQ(v.accepted(), std::string(r.reply).empty());
  }
}

// Each verdict end to end, with the zone the responder serves.
class sender_check_test : public test::resolver_fixture {
 protected:
  sender_check_test() {
    server.set("ok.example.com", rr_type::mx,
               test::records({{rr_type::mx, "ok.example.com", 300, "10 mx.ok.example.com"}}));
    server.set("mx.ok.example.com", rr_type::a,
               test::records({{rr_type::a, "mx.ok.example.com", 300, "192.0.2.1"}}));
    server.set("aonly.example.com", rr_type::mx, test::nodata("example.com"));
    server.set("aonly.example.com", rr_type::a,
               test::records({{rr_type::a, "aonly.example.com", 300, "192.0.2.2"}}));
    server.set("aonly.example.com", rr_type::aaaa, test::nodata("example.com"));
    server.set("v6only.example.com", rr_type::mx, test::nodata("example.com"));
    server.set("v6only.example.com", rr_type::a, test::nodata("example.com"));
    server.set("v6only.example.com", rr_type::aaaa,
               test::records({{rr_type::aaaa, "v6only.example.com", 300, "2001:db8::2"}}));
    server.set("empty.example.com", rr_type::mx, test::nodata("example.com"));
    server.set("empty.example.com", rr_type::a, test::nodata("example.com"));
    server.set("empty.example.com", rr_type::aaaa, test::nodata("example.com"));
    server.set("iplit.example.com", rr_type::mx,
               test::records({{rr_type::mx, "iplit.example.com", 300, "10 192.0.2.3"}}));
    server.set(
        "alias.example.com", rr_type::mx,
        test::records({{rr_type::mx, "alias.example.com", 300, "10 mail.alias.example.com"}}));
    server.set("mail.alias.example.com", rr_type::a,
               test::records({{rr_type::cname, "mail.alias.example.com", 300, "real.example.net"},
                              {rr_type::a, "real.example.net", 300, "192.0.2.4"}}));
    server.set("broken.example.com", rr_type::mx, test::servfail());
    server.set("slow.example.com", rr_type::mx, test::silent());
    server.set("nomail.example.com", rr_type::mx,
               test::records({{rr_type::mx, "nomail.example.com", 300, "0 ."}}));
    server.set("flaky.example.com", rr_type::mx,
               test::records({{rr_type::mx, "flaky.example.com", 300, "10 mx.flaky.example.com"}}));
    server.set("mx.flaky.example.com", rr_type::a, test::servfail());
  }

  sender_verdict check(sender_check& c, const std::string& sender) {
    return run<sender_verdict>([&](auto done) { c.check(sender, std::move(done)); }, sender);
  }
};

TEST_F(sender_check_test, each_verdict_from_canned_answers) {
  struct row {
    const char* sender;
    sender_status status;
  };
  const row rows[] = {
      {"alice@ok.example.com", sender_status::ok},
      {"alice@OK.Example.com", sender_status::ok},
      {"alice@aonly.example.com", sender_status::ok},
      {"alice@v6only.example.com", sender_status::ok},
      {"alice@unregistered.example.com", sender_status::no_mx},
      {"alice@empty.example.com", sender_status::no_mx},
      {"alice@iplit.example.com", sender_status::mx_ip},
      {"alice@alias.example.com", sender_status::mx_cname},
      {"alice@broken.example.com", sender_status::servfail},
      {"alice@slow.example.com", sender_status::timeout},
      {"alice@flaky.example.com", sender_status::servfail},
      {"alice@nomail.example.com", sender_status::null_mx},
      {"alice@sender.test", sender_status::not_public},
      {"alice@localhost", sender_status::not_public},
      {"alice@bad..example.com", sender_status::bad_domain},
      {"", sender_status::null_sender},
  };
  resolver r(loop, options());
  sender_check checker(r, {});
  for (const auto& row : rows) {
    SCOPED_TRACE(row.sender);
    const sender_verdict v = check(checker, row.sender);
    EXPECT_EQ(v.status, row.status) << v.log_field() << " " << v.detail;
  }
  EXPECT_EQ(server.queries("sender.test", rr_type::mx), 0);
  EXPECT_EQ(server.queries("localhost", rr_type::mx), 0);
}

TEST_F(sender_check_test, the_null_sender_and_reserved_names_need_no_lookup) {
  resolver r(loop, options());
  sender_check checker(r, {});
  EXPECT_EQ(check(checker, "").status, sender_status::null_sender);
  EXPECT_EQ(check(checker, "alice@box.local").status, sender_status::not_public);
  EXPECT_EQ(server.total_queries(), 0);
  EXPECT_EQ(r.stats().lookups, 0u);
}

TEST_F(sender_check_test, allowed_reserved_names_are_looked_up) {
  server.set("sender.test", rr_type::mx,
             test::records({{rr_type::mx, "sender.test", 300, "10 mx.sender.test"}}));
  server.set("mx.sender.test", rr_type::a,
             test::records({{rr_type::a, "mx.sender.test", 300, "127.0.0.1"}}));
  resolver r(loop, options());
  sender_check checker(r, {{"test"}, 10});
  const sender_verdict v = check(checker, "alice@sender.test");
  EXPECT_EQ(v.status, sender_status::ok) << v.detail;
  EXPECT_EQ(server.queries("sender.test", rr_type::mx), 1);
}

TEST_F(sender_check_test, verdicts_are_cached_through_the_resolver) {
  resolver r(loop, options());
  sender_check checker(r, {});
  for (const char* sender : {"alice@ok.example.com", "alice@unregistered.example.com"}) {
    const sender_verdict first = check(checker, sender);
    const int asked = server.total_queries();
    const sender_verdict second = check(checker, std::string("bob@") + sender_domain(sender));
    EXPECT_EQ(second.status, first.status);
    EXPECT_EQ(server.total_queries(), asked) << sender;
  }
  // SERVFAIL is asked again.
  check(checker, "alice@broken.example.com");
  const int asked = server.total_queries();
  EXPECT_EQ(check(checker, "alice@broken.example.com").status, sender_status::servfail);
  EXPECT_GT(server.total_queries(), asked);
}

TEST_F(sender_check_test, the_reply_names_what_to_fix) {
  resolver r(loop, options());
  sender_check checker(r, {});
  const sender_verdict nomail = check(checker, "alice@nomail.example.com");
  EXPECT_EQ(nomail.reply().rfind("550 5.7.27 Sender domain accepts no mail (null MX): "
                                 "nomail.example.com publishes a null MX",
                                 0),
            0u);
  const sender_verdict slow = check(checker, "alice@slow.example.com");
  EXPECT_EQ(slow.reply(), "451 4.4.3 Temporary local error: DNS lookup failed (SERVFAIL)");
  EXPECT_EQ(slow.log_field(), "sender_verify=timeout");
  const sender_verdict alias = check(checker, "alice@alias.example.com");
  EXPECT_EQ(alias.detail, "MX target mail.alias.example.com is a CNAME for real.example.net");
}

}  // namespace
}  // namespace ringrelay::dns
