#include <gtest/gtest.h>

#include <ringrelay/delivery/reply.hh>
#include <string>
#include <vector>

namespace ringrelay::delivery {
namespace {

struct parsed {
  reply_parser::status st = reply_parser::status::need_more;
  reply r;
  std::size_t consumed = 0;
};

// Feeds `in` in pieces cut at `cuts` (sorted offsets); stops at the first
// complete reply or error, like the session does.
parsed parse(std::string_view in, const std::vector<std::size_t>& cuts, reply_limits limits = {}) {
  reply_parser p(limits);
  parsed out;
  std::size_t from = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(in.size());
  for (std::size_t to : ends) {
    const auto res = p.feed(in.substr(from, to - from));
    out.consumed += res.consumed;
    out.st = res.st;
    if (res.st != reply_parser::status::need_more) break;
    from = to;
  }
  if (out.st == reply_parser::status::complete) out.r = p.current();
  return out;
}

struct valid_case {
  const char* name;
  std::string_view in;
  std::uint16_t code;
  std::string_view enhanced;
  std::vector<std::string_view> lines;
  std::string_view one_line;
};

const std::vector<valid_case> valid_cases = {
    {"single_line", "250 ok\r\n", 250, "", {"ok"}, "250 ok"},
    {"enhanced_code",
     "250 2.1.0 Sender ok\r\n",
     250,
     "2.1.0",
     {"2.1.0 Sender ok"},
     "250 2.1.0 Sender ok"},
    {"code_only", "250\r\n", 250, "", {""}, "250"},
    {"enhanced_code_only", "550 5.1.1\r\n", 550, "5.1.1", {"5.1.1"}, "550 5.1.1"},
    {"multi_line",
     "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
     "550-5.1.1 Please try double-checking the recipient's address.\r\n"
     "550 5.1.1 https://support.example/answer\r\n",
     550,
     "5.1.1",
     {"5.1.1 The email account that you tried to reach does not exist.",
      "5.1.1 Please try double-checking the recipient's address.",
      "5.1.1 https://support.example/answer"},
     "550 5.1.1 The email account that you tried to reach does not exist. Please try "
     "double-checking the recipient's address. https://support.example/answer"},
    {"continuation_then_bare_last",
     "250-mx.example\r\n250\r\n",
     250,
     "",
     {"mx.example", ""},
     "250 mx.example"},
    {"bare_lf_line_ends", "250-a\n250 b\n", 250, "", {"a", "b"}, "250 a b"},
    {"class_mismatch_is_not_enhanced",
     "550 2.1.0 odd\r\n",
     550,
     "",
     {"2.1.0 odd"},
     "550 2.1.0 odd"},
    {"four_digit_detail_is_not_enhanced",
     "550 5.1.1000 x\r\n",
     550,
     "",
     {"5.1.1000 x"},
     "550 5.1.1000 x"},
    {"glued_text_is_not_enhanced", "550 5.1.1x\r\n", 550, "", {"5.1.1x"}, "550 5.1.1x"},
    {"control_octets_become_spaces",
     "250 a\tb\x01"
     "c\r\n",
     250,
     "",
     {"a\tb\x01"
      "c"},
     "250 a b c"},
};

class reply_valid : public testing::TestWithParam<valid_case> {};

TEST_P(reply_valid, parses_whole_and_split_at_every_offset_and_byte_by_byte) {
  const valid_case& c = GetParam();
  std::vector<std::vector<std::size_t>> splits = {{}};
  for (std::size_t k = 1; k < c.in.size(); ++k) splits.push_back({k});
  std::vector<std::size_t> bytes;
  for (std::size_t k = 1; k < c.in.size(); ++k) bytes.push_back(k);
  splits.push_back(bytes);
  for (const auto& cuts : splits) {
    SCOPED_TRACE(cuts.size() == 1 ? cuts[0] : cuts.size());
    parsed p = parse(c.in, cuts);
    ASSERT_EQ(p.st, reply_parser::status::complete);
    EXPECT_EQ(p.consumed, c.in.size());
    EXPECT_EQ(p.r.code, c.code);
    EXPECT_EQ(p.r.enhanced, c.enhanced);
    EXPECT_EQ(p.r.raw, c.in);
    ASSERT_EQ(p.r.line_count(), c.lines.size());
    for (std::size_t i = 0; i < c.lines.size(); ++i) EXPECT_EQ(p.r.line_text(i), c.lines[i]);
    EXPECT_EQ(p.r.one_line(), c.one_line);
  }
}

INSTANTIATE_TEST_SUITE_P(table, reply_valid, testing::ValuesIn(valid_cases),
                         [](const auto& info) { return std::string(info.param.name); });

struct malformed_case {
  const char* name;
  std::string in;
};

const std::vector<malformed_case> malformed_cases = {
    {"two_digit_code", "25 ok\r\n"},
    {"letters", "abc ok\r\n"},
    {"empty_line", "\r\n"},
    {"bad_separator", "250x\r\n"},
    {"tab_separator", "250\tok\r\n"},
    {"code_below_200", "199 hello\r\n"},
    {"code_above_599", "600 hello\r\n"},
    {"mismatched_codes", "250-first\r\n251 second\r\n"},
    {"garbage_continuation", "250-first\r\nhello\r\n"},
    {"line_over_limit", "250 " + std::string(4091, 'x') + "\r\n"},
    {"line_over_limit_without_end", "250 " + std::string(5000, 'x')},
    {"reply_over_limit",
     [] {
       std::string s;
       while (s.size() <= 65536) s += "250-" + std::string(1000, 'x') + "\r\n";
       return s + "250 end\r\n";
     }()},
};

class reply_malformed : public testing::TestWithParam<malformed_case> {};

TEST_P(reply_malformed, is_a_sticky_error_whatever_the_split) {
  const malformed_case& c = GetParam();
  for (std::size_t k = 0; k<c.in.size(); k += c.in.size()> 64 ? 97 : 1) {
    SCOPED_TRACE(k);
    reply_parser p;
    auto first = p.feed(std::string_view(c.in).substr(0, k));
    auto r = first.st == reply_parser::status::error
                 ? first
                 : p.feed(std::string_view(c.in).substr(first.consumed));
    ASSERT_EQ(r.st, reply_parser::status::error);
    EXPECT_FALSE(p.error().empty());
    EXPECT_EQ(p.feed("250 ok\r\n").st, reply_parser::status::error);
    p.reset();
    EXPECT_EQ(p.feed("250 ok\r\n").st, reply_parser::status::complete);
  }
}

INSTANTIATE_TEST_SUITE_P(table, reply_malformed, testing::ValuesIn(malformed_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(reply_parser, line_of_exactly_the_limit_is_accepted) {
  const std::string line = "250 " + std::string(4090, 'x') + "\r\n";
  ASSERT_EQ(line.size(), 4096u);
  EXPECT_EQ(parse(line, {}).st, reply_parser::status::complete);
  EXPECT_EQ(parse(line, {}, {.max_line = 4095, .max_reply = 65536}).st,
            reply_parser::status::error);
}

TEST(reply_parser, pipelined_replies_come_out_one_at_a_time) {
  const std::string_view in = "250 2.1.0 Ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go";
  reply_parser p;
  auto r = p.feed(in);
  ASSERT_EQ(r.st, reply_parser::status::complete);
  EXPECT_EQ(p.current().code, 250);
  std::string_view rest = in.substr(r.consumed);
  r = p.feed(rest);
  ASSERT_EQ(r.st, reply_parser::status::complete);
  EXPECT_EQ(p.current().code, 550);
  EXPECT_EQ(p.current().one_line(), "550 5.1.1 no such user");
  rest.remove_prefix(r.consumed);
  r = p.feed(rest);
  EXPECT_EQ(r.st, reply_parser::status::need_more);
  EXPECT_EQ(r.consumed, rest.size());
  r = p.feed("\r\n");
  ASSERT_EQ(r.st, reply_parser::status::complete);
  EXPECT_EQ(p.current().code, 354);
  EXPECT_EQ(p.current().raw, "354 go\r\n");
}

TEST(reply_parser, make_reply_builds_a_wire_reply) {
  const reply r = make_reply(554, "5.6.3", "no 8BITMIME");
  EXPECT_EQ(r.code, 554);
  EXPECT_EQ(r.enhanced, "5.6.3");
  EXPECT_EQ(r.raw, "554 5.6.3 no 8BITMIME\r\n");
  EXPECT_EQ(r.one_line(), "554 5.6.3 no 8BITMIME");
  EXPECT_EQ(parse(r.raw, {}).r.enhanced, "5.6.3");
}

}  // namespace
}  // namespace ringrelay::delivery
