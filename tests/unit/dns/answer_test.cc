// dns::parse_answer on hand-built wire messages: the records it keeps and
// how it writes names (compression, case, escapes), the RFC 2308 negative
// TTL, the null MX, and refusal of every malformed message — each strict
// prefix of a valid one, pointer loops, bad labels, overlong names, rdata
// that does not fit its type.
#include <gtest/gtest.h>

#include <ringrelay/dns/answer.hh>
#include <string>
#include <vector>

#include "wire.hh"

namespace ringrelay::dns {
namespace {

using test::wire;

answer parse_ok(const wire& w) {
  answer a;
  EXPECT_EQ(parse_answer(w.bytes, a), parse_error::ok);
  return a;
}

parse_error parse(const wire& w) {
  answer a;
  return parse_answer(w.bytes, a);
}

record mx(std::string owner, std::uint32_t ttl, std::uint16_t pref, std::string target) {
  record r;
  r.name = std::move(owner);
  r.type = rr_type::mx;
  r.ttl = ttl;
  r.preference = pref;
  r.target = std::move(target);
  return r;
}

// example.com MX, answered with three MX records whose names are all
// compressed: owners point at the question, the targets' suffix too, and
// the third target points at the second one's rdata (a pointer reached
// through a pointer).
wire compressed_mx() {
  wire w;
  w.header(0x1234, test::response_flags, 1, 3);
  w.question("example.com", rr_type::mx);  // the name is at offset 12
  w.pointer(12).u16(15).u16(1).u32(300).u16(8).u16(10).labels("mx1").pointer(12);
  // The second record's exchange follows its owner pointer (2), the fixed
  // fields (10) and the preference (2).
  const auto second_target = static_cast<std::uint16_t>(w.size() + 14);
  w.pointer(12).u16(15).u16(1).u32(200).u16(8).u16(20).labels("mx2").pointer(12);
  w.pointer(12).u16(15).u16(1).u32(100).u16(6).u16(30).labels("b").pointer(second_target);
  return w;
}

wire nxdomain_with_soa(std::uint32_t soa_ttl, std::uint32_t minimum) {
  wire w = test::response("nope.example.com", rr_type::mx, 0, 1, rcode::nxdomain);
  w.soa("example.com", soa_ttl, minimum);
  return w;
}

TEST(answer, compressed_names_are_followed) {
  const answer a = parse_ok(compressed_mx());
  EXPECT_EQ(a.id, 0x1234);
  EXPECT_EQ(a.code, rcode::noerror);
  EXPECT_FALSE(a.truncated);
  EXPECT_EQ(a.question, "example.com");
  EXPECT_EQ(a.question_type, rr_type::mx);
  ASSERT_EQ(a.records.size(), 3u);
  EXPECT_EQ(a.records[0], mx("example.com", 300, 10, "mx1.example.com"));
  EXPECT_EQ(a.records[1], mx("example.com", 200, 20, "mx2.example.com"));
  EXPECT_EQ(a.records[2], mx("example.com", 100, 30, "b.mx2.example.com"));
  EXPECT_FALSE(a.soa);
}

TEST(answer, a_pointer_may_land_inside_a_name) {
  wire w = test::response("www.example.com", rr_type::cname, 1);
  // "example.com" of the question starts at 12 + 4 ("www" and its length).
  w.pointer(12).u16(5).u16(1).u32(60).u16(6).labels("web").pointer(16);
  const answer a = parse_ok(w);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].name, "www.example.com");
  EXPECT_EQ(a.records[0].target, "web.example.com");
}

TEST(answer, every_kept_type_is_decoded) {
  wire w = test::response("www.example.com", rr_type::a, 5);
  w.cname("www.example.com", 30, "host.example.net");
  w.a("host.example.net", 60, "192.0.2.7");
  w.aaaa("host.example.net", 90, "2001:db8::7");
  w.txt("host.example.net", 120, {"v=spf1 ", "include:_spf.example.net", " -all"});
  w.mx("example.net", 150, 0, "");
  const answer a = parse_ok(w);
  ASSERT_EQ(a.records.size(), 5u);
  EXPECT_EQ(a.records[0].type, rr_type::cname);
  EXPECT_EQ(a.records[0].target, "host.example.net");
  EXPECT_EQ(a.records[1].type, rr_type::a);
  EXPECT_EQ(a.records[1].address_text(), "192.0.2.7");
  EXPECT_EQ(a.records[1].ttl, 60u);
  EXPECT_EQ(a.records[2].type, rr_type::aaaa);
  EXPECT_EQ(a.records[2].address_text(), "2001:db8::7");
  EXPECT_EQ(a.records[3].text, "v=spf1 include:_spf.example.net -all");
  EXPECT_TRUE(a.records[4].null_mx());
  EXPECT_EQ(a.records[4].target, "");
  EXPECT_FALSE(a.records[0].null_mx());
  EXPECT_EQ(a.records[0].address_text(), "");
}

TEST(answer, only_a_root_target_with_preference_zero_is_a_null_mx) {
  wire w = test::response("example.com", rr_type::mx, 3);
  w.mx("example.com", 60, 0, "");
  w.mx("example.com", 60, 10, "");
  w.mx("example.com", 60, 0, "mx.example.com");
  const answer a = parse_ok(w);
  ASSERT_EQ(a.records.size(), 3u);
  EXPECT_TRUE(a.records[0].null_mx());
  EXPECT_FALSE(a.records[1].null_mx());
  EXPECT_FALSE(a.records[2].null_mx());
}

TEST(answer, names_are_lower_case_and_odd_octets_escaped) {
  wire w;
  w.header(1, test::response_flags, 1, 1);
  w.question("ExAmPle.COM", rr_type::cname);
  // One label holding a dot, a space, a backslash and octet 200.
  w.name("ExAmPle.COM").u16(5).u16(1).u32(5).u16(10);
  w.u8(8).raw("a.b c\\").u8(200).u8('Z').root();
  const answer a = parse_ok(w);
  EXPECT_EQ(a.question, "example.com");
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].name, "example.com");
  EXPECT_EQ(a.records[0].target, "a\\046b\\032c\\092\\200z");
}

TEST(answer, negative_ttl_is_the_smaller_of_soa_ttl_and_minimum) {
  struct row {
    std::uint32_t soa_ttl, minimum, expected;
  };
  for (const row r : {row{3600, 300, 300}, row{60, 300, 60}, row{0, 900, 0}}) {
    const answer a = parse_ok(nxdomain_with_soa(r.soa_ttl, r.minimum));
    EXPECT_EQ(a.code, rcode::nxdomain);
    ASSERT_TRUE(a.soa);
    EXPECT_EQ(a.soa->zone, "example.com");
    EXPECT_EQ(a.negative_ttl(), r.expected) << r.soa_ttl << " " << r.minimum;
  }
  EXPECT_FALSE(
      parse_ok(test::response("x.example", rr_type::a, 0, 0, rcode::nxdomain)).negative_ttl());
}

TEST(answer, rcodes_and_flags_are_read) {
  for (auto code : {rcode::noerror, rcode::formerr, rcode::servfail, rcode::nxdomain, rcode::notimp,
                    rcode::refused, static_cast<rcode>(9)}) {
    EXPECT_EQ(parse_ok(test::response("example.com", rr_type::a, 0, 0, code)).code, code);
  }
  wire w;
  w.header(7, test::response_flags | test::flag_tc, 1, 0).question("example.com", rr_type::txt);
  EXPECT_TRUE(parse_ok(w).truncated);
}

TEST(answer, ttls_with_the_top_bit_set_read_as_zero) {
  wire w = test::response("example.com", rr_type::a, 2);
  w.a("example.com", 0x80000000u, "192.0.2.1");
  w.a("example.com", 0x7fffffffu, "192.0.2.2");
  const answer a = parse_ok(w);
  ASSERT_EQ(a.records.size(), 2u);
  EXPECT_EQ(a.records[0].ttl, 0u);
  EXPECT_EQ(a.records[1].ttl, 0x7fffffffu);
}

TEST(answer, other_classes_and_types_are_skipped) {
  wire w = test::response("example.com", rr_type::a, 4);
  w.name("example.com").u16(1).u16(3).u32(60).u16(4).u32(0x7f000001);  // A in class CH
  w.name("example.com").u16(46).u16(1).u32(60).u16(3).raw("sig");      // RRSIG
  w.name("example.com").u16(2).u16(1).u32(60).u16(1).u8(0);            // NS "."
  w.a("example.com", 60, "192.0.2.9");
  const answer a = parse_ok(w);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].address_text(), "192.0.2.9");
}

TEST(answer, only_the_first_soa_of_the_authority_section_counts) {
  wire w = test::response("x.example.com", rr_type::a, 0, 3, rcode::nxdomain);
  w.name("example.com").u16(2).u16(1).u32(60).u16(1).u8(0);  // NS first
  w.soa("example.com", 600, 120);
  w.soa("other.example", 1, 1);
  const answer a = parse_ok(w);
  ASSERT_TRUE(a.soa);
  EXPECT_EQ(a.soa->zone, "example.com");
  EXPECT_EQ(a.negative_ttl(), 120u);
}

TEST(answer, trailing_octets_and_the_additional_section_are_not_read) {
  wire w = compressed_mx();
  w.bytes[11] = 5;  // ARCOUNT 5, none present
  w.raw("trailing garbage");
  EXPECT_EQ(parse_ok(w).records.size(), 3u);
}

TEST(answer, a_name_of_255_octets_is_read_and_one_more_is_refused) {
  const std::string l63(63, 'a');
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');  // 255
  const std::string too_long = l63 + "." + l63 + "." + l63 + "." + std::string(62, 'b');
  ASSERT_EQ(wire::name_size(longest), 255u);
  EXPECT_EQ(parse_ok(test::response(longest, rr_type::a, 0)).question, longest);
  EXPECT_EQ(parse(test::response(too_long, rr_type::a, 0)), parse_error::name_too_long);
}

struct bad_case {
  const char* what;
  wire message;
  parse_error expected;
};

std::vector<bad_case> bad_cases() {
  std::vector<bad_case> cases;
  auto add = [&](const char* what, wire w, parse_error e) {
    cases.push_back({what, std::move(w), e});
  };

  wire w;
  w.header(1, test::response_flags, 0, 0).bytes.pop_back();
  add("eleven octets", w, parse_error::short_header);

  w = {};
  w.header(1, 0x0100, 1, 0).question("example.com", rr_type::a);
  add("a query, not a response", w, parse_error::not_a_response);

  w = {};
  w.header(1, test::response_flags, 1, 0).pointer(12).u16(1).u16(1);
  add("a pointer to itself", w, parse_error::name_loop);

  w = {};
  w.header(1, test::response_flags, 1, 0).labels("a").pointer(20).u16(1).u16(1);
  add("a pointer forwards", w, parse_error::name_loop);

  // Two names pointing at each other: the second is reached through the
  // first and points back into it.
  w = {};
  w.header(1, test::response_flags, 2, 0);
  w.labels("a").pointer(20).u16(1).u16(1);  // 12: "a" -> 20
  w.labels("b").pointer(12).u16(1).u16(1);  // 20: "b" -> 12
  add("a pointer cycle", w, parse_error::name_loop);

  w = {};
  w.header(1, test::response_flags, 1, 0).labels("a").pointer(12).u16(1).u16(1);
  add("a pointer to the start of its own name", w, parse_error::name_loop);

  w = {};
  w.header(1, test::response_flags, 1, 0).u8(0x40).u8(1).root().u16(1).u16(1);
  add("extended label type 01", w, parse_error::bad_label);

  w = {};
  w.header(1, test::response_flags, 1, 0).u8(0x80).u8(1).root().u16(1).u16(1);
  add("label type 10", w, parse_error::bad_label);

  w = test::response("example.com", rr_type::a, 2);
  w.a("example.com", 60, "192.0.2.1");
  add("fewer answers than ANCOUNT", w, parse_error::truncated);

  w = test::response("example.com", rr_type::a, 0, 1);
  add("no authority record after NSCOUNT 1", w, parse_error::truncated);

  w = test::response("example.com", rr_type::a, 1);
  w.rr_head("example.com", rr_type::a, 60).u16(8).u32(0xc0000201);
  add("rdlength beyond the message", w, parse_error::truncated);

  w = test::response("example.com", rr_type::a, 1);
  w.rr_head("example.com", rr_type::a, 60).u16(5).u32(0xc0000201).u8(0);
  add("A of five octets", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::aaaa, 1);
  w.rr_head("example.com", rr_type::aaaa, 60).u16(4).u32(0x20010db8);
  add("AAAA of four octets", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::mx, 1);
  w.rr_head("example.com", rr_type::mx, 60).u16(2).u16(10);
  add("MX without an exchange", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::mx, 1);
  w.rr_head("example.com", rr_type::mx, 60).u16(7).u16(10).name("mx").u8(0);
  add("MX with an octet after the exchange", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::mx, 1);
  w.rr_head("example.com", rr_type::mx, 60).u16(4).u16(10).labels("mx").root();
  add("MX exchange running past its rdata", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::cname, 1);
  w.rr_head("example.com", rr_type::cname, 60).u16(1).u8(0x40);
  add("CNAME with a bad label", w, parse_error::bad_label);

  w = test::response("example.com", rr_type::txt, 1);
  w.rr_head("example.com", rr_type::txt, 60).u16(0);
  add("TXT without a string", w, parse_error::bad_rdata);

  w = test::response("example.com", rr_type::txt, 1);
  w.rr_head("example.com", rr_type::txt, 60).u16(4).u8(4).raw("abc");
  add("TXT string longer than its rdata", w, parse_error::bad_rdata);

  w = test::response("x.example.com", rr_type::a, 0, 1, rcode::nxdomain);
  w.rr_head("example.com", rr_type::soa, 60).u16(4).root().root().u16(0);
  add("SOA without its five numbers", w, parse_error::bad_rdata);

  return cases;
}

TEST(answer, malformed_messages_are_refused) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(parse(c.message), c.expected);
    EXPECT_STRNE(describe(c.expected), "");
  }
}

TEST(answer, every_strict_prefix_of_a_valid_message_is_refused) {
  wire txt = test::response("example.com", rr_type::txt, 1);
  txt.txt("example.com", 60, {"hello", "", "world"});
  wire chain = test::response("www.example.com", rr_type::a, 2);
  chain.cname("www.example.com", 30, "host.example.net").a("host.example.net", 60, "192.0.2.7");
  for (const wire& whole : {compressed_mx(), nxdomain_with_soa(3600, 300), txt, chain}) {
    ASSERT_EQ(parse(whole), parse_error::ok);
    for (std::size_t n = 0; n < whole.size(); ++n) {
      answer a;
      const std::span<const std::uint8_t> prefix(whole.bytes.data(), n);
      EXPECT_NE(parse_answer(prefix, a), parse_error::ok) << "prefix of " << n << " octets";
    }
  }
}

}  // namespace
}  // namespace ringrelay::dns
