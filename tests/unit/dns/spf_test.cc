// dns/spf — RFC 7208: which TXT records are SPF records, the grammar of
// §12 term by term (what parses, and for what does not, which term, where
// and why), which terms evaluation reaches and counts (§4.6.4, §5.1, §6.1),
// and the check end to end over a real resolver with canned answers from
// the in-test responder: nested counting, the limit, loops, includes found
// or not, and what an include that cannot be followed is reported as.
#include <gtest/gtest.h>

#include <optional>
#include <ringrelay/dns/spf.hh>
#include <ringrelay/util/clock.hh>
#include <string>
#include <vector>

#include "fake_server.hh"

namespace ringrelay::dns {
namespace {

// "fail include _spf.example.com", "pass a example.com /24 //64".
std::string summary(const spf_term& t) {
  static constexpr std::pair<spf_qualifier, const char*> qualifiers[] = {
      {spf_qualifier::pass, "pass"},
      {spf_qualifier::fail, "fail"},
      {spf_qualifier::softfail, "softfail"},
      {spf_qualifier::neutral, "neutral"},
  };
  std::string out;
  if (t.is_mechanism()) {
    for (const auto& [q, name] : qualifiers)
      if (q == t.qualifier) out = std::string(name) + " ";
  }
  out += t.kind == spf_kind::unknown_modifier ? t.modifier + "=" : kind_name(t.kind);
  if (!t.target.empty()) out += " " + t.target;
  if (t.ip4_prefix) out += " /" + std::to_string(*t.ip4_prefix);
  if (t.ip6_prefix) out += " //" + std::to_string(*t.ip6_prefix);
  return out;
}

std::vector<std::string> summaries(const spf_record& r) {
  std::vector<std::string> out;
  for (const auto& t : r.terms) out.push_back(summary(t));
  return out;
}

TEST(is_spf, wants_v_spf1_then_a_space_or_the_end) {
  for (const char* yes : {"v=spf1", "v=spf1 -all", "V=SPF1 -all", "v=spf1  mx"}) {
    EXPECT_TRUE(is_spf(yes)) << yes;
  }
  for (const char* no : {"", "v=spf", "v=spf10 -all", "v=spf1-all", " v=spf1 -all",
                         "spf2.0/pra -all", "v=DMARC1; p=none", "v=spf1\t-all"}) {
    EXPECT_FALSE(is_spf(no)) << no;
  }
}

TEST(parse_spf, reads_every_kind_of_term) {
  struct row {
    const char* record;
    std::vector<std::string> terms;
  };
  const row rows[] = {
      {"v=spf1", {}},
      {"v=spf1 -all", {"fail all"}},
      {"v=spf1 +all ~all ?all", {"pass all", "softfail all", "neutral all"}},
      {"v=spf1 include:_spf.relay.example -all", {"pass include _spf.relay.example", "fail all"}},
      {"v=spf1 ~include:spf.example.net.", {"softfail include spf.example.net."}},
      {"v=spf1 a mx ptr", {"pass a", "pass mx", "pass ptr"}},
      {"v=spf1 a:mail.example.com mx:example.com ptr:example.org",
       {"pass a mail.example.com", "pass mx example.com", "pass ptr example.org"}},
      {"v=spf1 a/24 mx//64 a:example.com/24//64 mx/0//0",
       {"pass a /24", "pass mx //64", "pass a example.com /24 //64", "pass mx /0 //0"}},
      {"v=spf1 ip4:192.0.2.1 ip4:192.0.2.0/24 ip4:0.0.0.0/0 ip4:255.255.255.255/32",
       {"pass ip4 192.0.2.1", "pass ip4 192.0.2.0 /24", "pass ip4 0.0.0.0 /0",
        "pass ip4 255.255.255.255 /32"}},
      {"v=spf1 ip6:2001:db8::1 ip6:2001:db8::/32 -ip6:::ffff:192.0.2.1/128",
       {"pass ip6 2001:db8::1", "pass ip6 2001:db8:: //32", "fail ip6 ::ffff:192.0.2.1 //128"}},
      {"v=spf1 exists:%{i}._spf.example.com -all",
       {"pass exists %{i}._spf.example.com", "fail all"}},
      {"v=spf1 include:%{ir}.%{v}.%{d2r-}.spf.example.com",
       {"pass include %{ir}.%{v}.%{d2r-}.spf.example.com"}},
      {"v=spf1 exists:%{l1r+}.%{d} include:a.%%.%_.%-.example.com",
       {"pass exists %{l1r+}.%{d}", "pass include a.%%.%_.%-.example.com"}},
      {"v=spf1 mx redirect=_spf.example.com", {"pass mx", "redirect _spf.example.com"}},
      {"v=spf1 exp=explain._spf.%{d} -all", {"exp explain._spf.%{d}", "fail all"}},
      {"v=spf1 foo=bar x-y_z.1=%{d} empty= -all",
       {"foo= bar", "x-y_z.1= %{d}", "empty=", "fail all"}},
      // RFC 7208 §12: any name=value is a modifier, even one named like a
      // mechanism; unknown ones are ignored (§6).
      {"v=spf1 a=example.com", {"a= example.com"}},
      {"v=spf1 INCLUDE:Example.COM Ip4:192.0.2.1 MX -ALL REDIRECT=x.example",
       {"pass include Example.COM", "pass ip4 192.0.2.1", "pass mx", "fail all",
        "redirect x.example"}},
      {"v=spf1   mx   -all   ", {"pass mx", "fail all"}},
      {"v=spf1 include:123-456.example.com a:host.xn--p1ai a:x.b2b",
       {"pass include 123-456.example.com", "pass a host.xn--p1ai", "pass a x.b2b"}},
      {"v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all",
       {"pass include _spf.google.com", "pass include spf.protection.outlook.com", "softfail all"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.record);
    const spf_record got = parse_spf(r.record);
    EXPECT_FALSE(got.error) << got.error->message;
    EXPECT_EQ(summaries(got), r.terms);
  }
}

TEST(parse_spf, reports_the_first_error_with_its_term_and_what_is_wrong) {
  struct row {
    const char* record;
    std::size_t term;
    std::size_t offset;
    const char* message;  // a part of it
  };
  const row rows[] = {
      {"v=spf2 -all", 0, 0, "does not start with \"v=spf1\""},
      {"v=spf1 mx foo -all", 2, 10, "\"foo\" is not a mechanism"},
      {"v=spf1 mx\t-all", 1, 9, "0x09 (a tab"},
      {"v=spf1 -all\x7f", 1, 11, "the octet 0x7F"},
      {"v=spf1 include", 1, 14, "include needs a domain"},
      {"v=spf1 include:", 1, 15, "\"include:\" needs a domain"},
      {"v=spf1 include:localhost", 1, 15, "\"localhost\" is not a domain name"},
      {"v=spf1 include:example.123", 1, 15, "not all digits"},
      {"v=spf1 include:example.com-", 1, 15, "not a domain name"},
      {"v=spf1 include:a..example.com", 1, 17, "empty label"},
      {"v=spf1 include:.example.com", 1, 15, "empty label"},
      {"v=spf1 exists:%{x}.example.com", 1, 14, "\"%{x}\" is not a macro"},
      {"v=spf1 exists:%{c}.example.com", 1, 14, "exp text only"},
      {"v=spf1 exists:%{d", 1, 14, "no closing"},
      {"v=spf1 exists:%{d!}.example.com", 1, 14, "the delimiters"},
      {"v=spf1 include:50%.example.com", 1, 17, "write %% for a percent sign"},
      {"v=spf1 -all:foo", 1, 11, "all takes nothing after it"},
      {"v=spf1 -", 1, 8, "a qualifier needs a mechanism"},
      {"v=spf1 :example.com", 1, 7, "no name"},
      {"v=spf1 ip4", 1, 10, "ip4 needs a network"},
      {"v=spf1 ip4:192.0.2", 1, 11, "\"192.0.2\" is not an IPv4 address"},
      {"v=spf1 ip4:192.0.2.01", 1, 11, "is not an IPv4 address"},
      {"v=spf1 ip4:192.0.2.256", 1, 11, "is not an IPv4 address"},
      {"v=spf1 ip4:2001:db8::1", 1, 11, "is not an IPv4 address"},
      {"v=spf1 ip4:192.0.2.0/33", 1, 20, "\"/33\" is not a number from 0 to 32"},
      {"v=spf1 ip4:192.0.2.0/024", 1, 20, "from 0 to 32"},
      {"v=spf1 ip4:192.0.2.0/", 1, 20, "from 0 to 32"},
      {"v=spf1 ip6:192.0.2.1", 1, 11, "is not an IPv6 address"},
      {"v=spf1 ip6:2001:db8::/129", 1, 21, "from 0 to 128"},
      {"v=spf1 a/33", 1, 8, "from 0 to 32"},
      {"v=spf1 mx//129", 1, 9, "from 0 to 128"},
      {"v=spf1 a:example.com/", 1, 20, "from 0 to 32"},
      {"v=spf1 mxx", 1, 7, "\"mxx\" is not a mechanism"},
      {"v=spf1 ptrexample.com", 1, 7, "not a mechanism"},
      {"v=spf1 mx;example.com", 1, 7, "not a mechanism"},
      {"v=spf1 -redirect=example.com", 1, 7, "a modifier takes no qualifier"},
      {"v=spf1 redirect=", 1, 16, "\"redirect=\" needs a domain"},
      {"v=spf1 redirect=a.example redirect=b.example", 2, 26, "more than once"},
      {"v=spf1 exp=a.example EXP=b.example", 2, 21, "more than once"},
      {"v=spf1 1foo=bar", 1, 7, "is not a modifier name"},
      {"v=spf1 foo=50%", 1, 13, "write %% for a percent sign"},
      {"v=spf1 ~mx:-", 1, 11, "not a domain name"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.record);
    const spf_record got = parse_spf(r.record);
    ASSERT_TRUE(got.error);
    EXPECT_EQ(got.error->term, r.term);
    EXPECT_EQ(got.error->offset, r.offset);
    EXPECT_NE(got.error->message.find(r.message), std::string::npos) << got.error->message;
    EXPECT_EQ(got.terms.size(), r.term == 0 ? 0 : r.term - 1);
  }
  const std::string long_label = "v=spf1 include:" + std::string(64, 'a') + ".example.com";
  EXPECT_NE(parse_spf(long_label).error->message.find("longer than 63"), std::string::npos);
  std::string long_name = "v=spf1 include:";
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  EXPECT_NE(parse_spf(long_name + "com").error->message.find("longer than 253"), std::string::npos);
}

TEST(evaluated_terms, stop_at_all_and_take_redirect_only_without_all) {
  struct row {
    const char* record;
    std::vector<std::string> evaluated;
    std::vector<std::string> ignored;
    unsigned lookups;
  };
  const row rows[] = {
      {"v=spf1", {}, {}, 0},
      {"v=spf1 ip4:192.0.2.1 -all", {"ip4:192.0.2.1", "-all"}, {}, 0},
      {"v=spf1 a mx ptr exists:%{i}.x.example include:y.example -all",
       {"a", "mx", "ptr", "exists:%{i}.x.example", "include:y.example", "-all"},
       {},
       5},
      {"v=spf1 redirect=r.example mx", {"mx", "redirect=r.example"}, {}, 2},
      {"v=spf1 mx -all redirect=r.example", {"mx", "-all"}, {"redirect=r.example"}, 1},
      {"v=spf1 -all include:late.example a", {"-all"}, {"include:late.example", "a"}, 0},
      {"v=spf1 exp=e.example foo=bar ip6:2001:db8::/32", {"ip6:2001:db8::/32"}, {}, 0},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.record);
    const spf_record rec = parse_spf(r.record);
    ASSERT_FALSE(rec.error);
    std::vector<std::string> evaluated, ignored;
    for (const spf_term* t : evaluated_terms(rec)) evaluated.push_back(t->text);
    for (const spf_term* t : ignored_terms(rec)) ignored.push_back(t->text);
    EXPECT_EQ(evaluated, r.evaluated);
    EXPECT_EQ(ignored, r.ignored);
    EXPECT_EQ(own_lookups(rec), r.lookups);
  }
}

lookup_result txt_result(lookup_status s, std::vector<std::string> texts) {
  lookup_result r;
  r.status = s;
  for (auto& t : texts) {
    record rec;
    rec.name = "example.com";
    rec.type = rr_type::txt;
    rec.text = std::move(t);
    r.records.push_back(std::move(rec));
  }
  return r;
}

TEST(spf_start, finds_exactly_one_record_or_says_why_not) {
  struct row {
    const char* what;
    lookup_result txt;
    spf_presence presence;
    std::size_t records;
  };
  using ls = lookup_status;
  const row rows[] = {
      {"one among others",
       txt_result(ls::ok, {"google-site-verification=x", "v=spf1 mx -all", "v=spf10"}),
       spf_presence::found, 1},
      {"TXT without SPF", txt_result(ls::ok, {"hello"}), spf_presence::none, 0},
      {"no TXT", txt_result(ls::nodata, {}), spf_presence::none, 0},
      {"no domain", txt_result(ls::nxdomain, {}), spf_presence::none, 0},
      {"two", txt_result(ls::ok, {"v=spf1 mx -all", "v=spf1 a -all"}), spf_presence::multiple, 2},
      {"SERVFAIL", txt_result(ls::servfail, {}), spf_presence::lookup_failed, 0},
      {"timeout", txt_result(ls::timeout, {}), spf_presence::lookup_failed, 0},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    const spf_report rep = spf_start("Example.COM.", r.txt);
    EXPECT_EQ(rep.domain, "example.com");
    EXPECT_EQ(rep.presence, r.presence);
    EXPECT_EQ(rep.records.size(), r.records);
  }
  const spf_report found = spf_start("example.com", txt_result(ls::ok, {"v=spf1 mx -all"}));
  EXPECT_EQ(found.parsed.terms.size(), 2u);
  EXPECT_EQ(spf_start("example.com", txt_result(ls::servfail, {})).detail, "servfail");
}

// The check end to end, against the zone the responder serves.
class spf_check_test : public test::resolver_fixture {
 protected:
  void spf(const std::string& name, std::vector<std::string> texts) {
    std::vector<test::rr> answers;
    for (auto& t : texts) answers.push_back({rr_type::txt, name, 300, std::move(t)});
    server.set(name, rr_type::txt, test::records(std::move(answers)));
  }

  spf_report check(const std::string& domain, const std::string& include_name = "") {
    resolver r(loop, options());
    spf_check checker(r, {include_name, 10});
    return run<spf_report>([&](auto done) { checker.check(domain, std::move(done)); }, domain);
  }
};

std::vector<std::string> kinds(const spf_report& r) {
  static constexpr const char* names[] = {"no_record",     "multiple", "syntax",
                                          "lookup_failed", "loop",     "macros"};
  std::vector<std::string> out;
  for (const auto& p : r.problems)
    out.push_back(std::string(names[static_cast<int>(p.what)]) + " " + p.domain);
  return out;
}

TEST_F(spf_check_test, counts_through_includes_and_redirect_and_finds_the_include) {
  spf("example.com", {"v=spf1 mx a include:a.example.com redirect=r.example.com"});
  spf("a.example.com", {"v=spf1 ip4:192.0.2.0/24 include:b.example.com ~all"});
  spf("b.example.com", {"v=spf1 include:_spf.relay.example exists:%{i}.x.example -all"});
  spf("_spf.relay.example", {"v=spf1 ip4:198.51.100.0/24 -all"});
  spf("r.example.com", {"v=spf1 ptr -all"});
  const spf_report r = check("Example.com.", "_SPF.relay.example.");
  EXPECT_EQ(r.presence, spf_presence::found);
  // mx a include redirect + include + include exists + ptr.
  EXPECT_EQ(r.lookups, 8u);
  EXPECT_FALSE(r.over_limit);
  EXPECT_EQ(kinds(r), std::vector<std::string>{});
  ASSERT_TRUE(r.include_term);
  EXPECT_EQ(r.include_term->text, "include:_spf.relay.example");
  EXPECT_EQ(r.include_path,
            (std::vector<std::string>{"example.com", "a.example.com", "b.example.com"}));
}

TEST_F(spf_check_test, a_direct_include_with_its_qualifier) {
  spf("example.com", {"v=spf1 ~include:_spf.relay.example -all"});
  spf("_spf.relay.example", {"v=spf1 ip4:198.51.100.0/24 -all"});
  const spf_report r = check("example.com", "_spf.relay.example");
  ASSERT_TRUE(r.include_term);
  EXPECT_EQ(r.include_term->qualifier, spf_qualifier::softfail);
  EXPECT_EQ(r.include_path, std::vector<std::string>{"example.com"});
  EXPECT_EQ(r.lookups, 1u);
}

TEST_F(spf_check_test, an_include_that_is_absent_or_never_reached_is_not_found) {
  spf("absent.example", {"v=spf1 mx -all"});
  spf("late.example", {"v=spf1 -all include:_spf.relay.example"});
  EXPECT_FALSE(check("absent.example", "_spf.relay.example").include_term);
  const spf_report late = check("late.example", "_spf.relay.example");
  EXPECT_FALSE(late.include_term);
  EXPECT_EQ(late.lookups, 0u);
  EXPECT_EQ(server.queries("_spf.relay.example", rr_type::txt), 0);
  EXPECT_FALSE(check("absent.example").include_term) << "no name, nothing looked for";
}

TEST_F(spf_check_test, stops_following_once_over_the_limit) {
  // 4 + (4 + (4 + ...)): the 11th term is in c's record; d is never read.
  spf("top.example", {"v=spf1 a mx ptr include:b.example -all"});
  spf("b.example", {"v=spf1 a mx ptr include:c.example -all"});
  spf("c.example", {"v=spf1 a mx include:d.example -all"});
  spf("d.example", {"v=spf1 include:_spf.relay.example -all"});
  const spf_report r = check("top.example", "_spf.relay.example");
  EXPECT_TRUE(r.over_limit);
  EXPECT_EQ(r.lookups, 11u);
  EXPECT_EQ(r.limit_term, "include:d.example");
  EXPECT_EQ(r.limit_path, (std::vector<std::string>{"top.example", "b.example", "c.example"}));
  EXPECT_EQ(server.queries("d.example", rr_type::txt), 0);
  EXPECT_FALSE(r.include_term);
}

TEST_F(spf_check_test, exactly_ten_is_within_the_limit) {
  spf("ten.example", {"v=spf1 a mx ptr exists:x.example include:b.example -all"});
  spf("b.example", {"v=spf1 a mx ptr exists:x.example a:y.example -all"});
  const spf_report r = check("ten.example");
  EXPECT_EQ(r.lookups, 10u);
  EXPECT_FALSE(r.over_limit);
}

TEST_F(spf_check_test, a_loop_is_named_and_not_followed) {
  spf("a.example", {"v=spf1 include:b.example -all"});
  spf("b.example", {"v=spf1 mx include:A.example. -all"});
  spf("self.example", {"v=spf1 redirect=self.example"});
  const spf_report r = check("a.example");
  EXPECT_EQ(kinds(r), std::vector<std::string>{"loop a.example"});
  EXPECT_EQ(r.problems[0].path, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(r.problems[0].term, "include:A.example.");
  EXPECT_EQ(r.lookups, 3u);
  EXPECT_EQ(kinds(check("self.example")), std::vector<std::string>{"loop self.example"});
}

TEST_F(spf_check_test, includes_that_cannot_be_followed_are_problems_and_the_rest_goes_on) {
  spf("top.example", {"v=spf1 include:none.example include:gone.example include:two.example "
                      "include:bad.example include:broken.example include:%{d}.m.example "
                      "include:fine.example -all"});
  spf("none.example", {"some text"});
  spf("two.example", {"v=spf1 mx -all", "v=spf1 a -all"});
  spf("bad.example", {"v=spf1 ip4:192.0.2 -all"});
  server.set("broken.example", rr_type::txt, test::servfail());
  spf("fine.example", {"v=spf1 a mx -all"});
  const spf_report r = check("top.example");
  EXPECT_EQ(kinds(r),
            (std::vector<std::string>{"no_record none.example", "no_record gone.example",
                                      "multiple two.example", "syntax bad.example",
                                      "lookup_failed broken.example", "macros %{d}.m.example"}));
  EXPECT_EQ(r.problems[1].detail, "nxdomain");
  EXPECT_NE(r.problems[3].detail.find("\"192.0.2\" is not an IPv4 address"), std::string::npos)
      << r.problems[3].detail;
  EXPECT_EQ(r.problems[4].detail.substr(0, 8), "servfail");
  EXPECT_EQ(r.lookups, 9u);
  EXPECT_EQ(server.queries("fine.example", rr_type::txt), 1);
}

TEST_F(spf_check_test, the_domains_own_record_decides_first) {
  spf("two.example", {"v=spf1 mx -all", "v=spf1 a -all"});
  spf("bad.example", {"v=spf1 include:x.example ip4:1.2.3 -all"});
  server.set("slow.example", rr_type::txt, test::silent());
  EXPECT_EQ(check("two.example").presence, spf_presence::multiple);
  const spf_report bad = check("bad.example");
  ASSERT_TRUE(bad.parsed.error);
  EXPECT_EQ(bad.parsed.error->term, 2u);
  EXPECT_EQ(bad.lookups, 0u);
  EXPECT_EQ(server.queries("x.example", rr_type::txt), 0);
  const spf_report slow = check("slow.example");
  EXPECT_EQ(slow.presence, spf_presence::lookup_failed);
  EXPECT_EQ(slow.detail.substr(0, 7), "timeout");
  EXPECT_EQ(check("nowhere.example").presence, spf_presence::none);
}

}  // namespace
}  // namespace ringrelay::dns
