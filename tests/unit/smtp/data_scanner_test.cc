#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <ringrelay/smtp/data_scanner.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::smtp {
namespace {

using mode = data_scanner::mode;

std::vector<scan_impl> impls() {
  std::vector<scan_impl> all{scan_impl::reference, scan_impl::sse2};
  if (__builtin_cpu_supports("avx2")) all.push_back(scan_impl::avx2);
  return all;
}

// Everything the caller can observe once the pieces were fed.
struct outcome {
  std::string body;  // replayed octets and body spans, concatenated
  std::size_t consumed = 0;
  bool end = false;
  std::uint64_t size = 0;
  std::uint64_t wire = 0;
  bool bare = false;
  bool long_line = false;
  bool eight_bit = false;
  bool too_big = false;

  bool operator==(const outcome&) const = default;
};

void PrintTo(const outcome& o, std::ostream* os) {
  *os << "{body=" << testing::PrintToString(o.body) << " consumed=" << o.consumed
      << " end=" << o.end << " size=" << o.size << " wire=" << o.wire << " bare=" << o.bare
      << " long=" << o.long_line << " 8bit=" << o.eight_bit << " too_big=" << o.too_big << "}";
}

// Feeds `in` cut at the offsets in `cuts` (ascending) and stops at the end of
// data, checking the per-feed contract on the way.
outcome run(scan_impl impl, mode m, scan_limits limits, std::string_view in,
            const std::vector<std::size_t>& cuts) {
  EXPECT_EQ(set_scan_impl(impl), impl);
  data_scanner sc(limits);
  sc.reset(m);
  outcome o;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= cuts.size() && !o.end; ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : in.size();
    const std::string_view piece = in.substr(from, to - from);
    const scan_result r = sc.feed(piece);
    EXPECT_LE(r.body, r.consumed);
    EXPECT_LE(r.consumed, piece.size());
    EXPECT_LE(r.replay, 2);
    if (!r.end) {
      EXPECT_EQ(r.consumed, piece.size());
    }
    if (m == mode::bdat) {
      EXPECT_EQ(r.body, piece.size());
      EXPECT_EQ(r.replay, 0);
      EXPECT_FALSE(r.end);
    }
    o.body.append(held_back_text, r.replay);
    o.body.append(piece.substr(0, r.body));
    o.consumed += r.consumed;
    o.end = r.end;
    EXPECT_EQ(sc.wire_size(), o.body.size());
    from = to;
  }
  // The wire form is the input itself: the body is a prefix of it, followed
  // by the terminator or by the octets still held back.
  EXPECT_EQ(o.body, in.substr(0, o.body.size()));
  if (o.end) {
    EXPECT_EQ(in.substr(o.body.size(), 3), ".\r\n");
    EXPECT_EQ(o.consumed, o.body.size() + 3);
  } else {
    EXPECT_EQ(o.consumed, in.size());
    EXPECT_EQ(std::string_view(held_back_text).substr(0, in.size() - o.body.size()),
              in.substr(o.body.size()));
  }
  o.size = sc.size();
  o.wire = sc.wire_size();
  o.bare = sc.bare_cr_or_lf();
  o.long_line = sc.line_too_long();
  o.eight_bit = sc.eight_bit();
  o.too_big = sc.too_big();
  return o;
}

struct scanner_case {
  const char* name;
  mode m;
  std::string in;
  std::string body;
  std::size_t consumed;
  bool end;
  std::uint64_t size;
  bool bare = false;
  bool long_line = false;
  bool eight_bit = false;
  bool too_big = false;
  scan_limits limits = {};
};

std::string line(std::size_t octets_before_crlf, char fill = 'x') {
  return std::string(octets_before_crlf, fill) + "\r\n";
}

// A line that starts with a stuffing dot, then n octets and CRLF.
std::string dot_line(std::size_t n, char fill = 'x') {
  std::string s(1, '.');
  s.append(n, fill);
  return s + "\r\n";
}

std::string lines(std::size_t n, std::string_view l) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) (s += l) += "\r\n";
  return s;
}

std::string text(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += i % 7 == 3 ? dot_line(75, 'a' + i % 26) : line(76, 'a' + i % 26);
  }
  return s;
}

std::vector<scanner_case> cases() {
  const std::string t = text(30);  // lines 3, 10, 17 and 24 are stuffed
  const std::uint64_t t_size = t.size() - 4;
  return {
      {"empty input", mode::data, "", "", 0, false, 0},
      {"empty body", mode::data, ".\r\n", "", 3, true, 0},
      {"one line", mode::data, "a\r\n.\r\n", "a\r\n", 6, true, 3},
      {"empty line", mode::data, "\r\n.\r\n", "\r\n", 5, true, 2},
      {"stuffed dot line", mode::data, "..\r\n.\r\n", "..\r\n", 7, true, 3},
      {"stuffed dots", mode::data, "...x\r\n.\r\n", "...x\r\n", 9, true, 5},
      {"dot text, no end yet", mode::data, ".x", ".x", 2, false, 1},
      {"dot text line", mode::data, ".x\r\n.\r\n", ".x\r\n", 7, true, 3},
      {"dot not at line start", mode::data, "a.\r\n.\r\n", "a.\r\n", 7, true, 4},
      {"held dot at input end", mode::data, "a\r\n.", "a\r\n", 4, false, 3},
      {"held dot CR at input end", mode::data, "a\r\n.\r", "a\r\n", 5, false, 3},
      {"998 octets + CRLF", mode::data, line(998) + ".\r\n", line(998), 1003, true, 1000},
      {"999 octets + CRLF", mode::data, line(999) + ".\r\n", line(999), 1004, true, 1001, false,
       true},
      // RFC 5321 4.5.3.1.6: the stuffing dot is not counted, so a line may be
      // 1001 octets on the wire.
      {"stuffed 997 + CRLF", mode::data, dot_line(997) + ".\r\n", dot_line(997), 1003, true, 999},
      {"stuffed 998 + CRLF, the dot not counted", mode::data, dot_line(998) + ".\r\n",
       dot_line(998), 1004, true, 1000},
      {"stuffed 999 + CRLF", mode::data, dot_line(999) + ".\r\n", dot_line(999), 1005, true, 1001,
       false, true},
      {"stuffed 998 + CRLF between lines", mode::data,
       line(998) + dot_line(998) + line(998) + ".\r\n", line(998) + dot_line(998) + line(998), 3004,
       true, 3000},
      {"stuffed 999 + CRLF between lines", mode::data,
       line(998) + dot_line(999) + line(998) + ".\r\n", line(998) + dot_line(999) + line(998), 3005,
       true, 3001, false, true},
      {"stuffed dot CR, 997 + CRLF", mode::data, ".\r" + line(997) + ".\r\n", ".\r" + line(997),
       1004, true, 1000, true},
      {"stuffed dot CR, 998 + CRLF", mode::data, ".\r" + line(998) + ".\r\n", ".\r" + line(998),
       1005, true, 1001, true, true},
      {"long partial line", mode::data, std::string(1001, 'x'), std::string(1001, 'x'), 1001, false,
       1001, false, true},
      {"partial line at the limit", mode::data, std::string(1000, 'x'), std::string(1000, 'x'),
       1000, false, 1000},
      {"stuffed partial line at the limit", mode::data, "." + std::string(1000, 'x'),
       "." + std::string(1000, 'x'), 1001, false, 1000},
      {"stuffed long partial line", mode::data, "." + std::string(1001, 'x'),
       "." + std::string(1001, 'x'), 1002, false, 1001, false, true},
      {"bare LF", mode::data, "a\nb\r\n.\r\n", "a\nb\r\n", 8, true, 5, true},
      {"bare CR", mode::data, "a\rb\r\n.\r\n", "a\rb\r\n", 8, true, 5, true},
      {"CR CR LF", mode::data, "a\r\r\n.\r\n", "a\r\r\n", 7, true, 4, true},
      {"LF . LF is no end", mode::data, "a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 10, true, 7, true},
      {"CRLF . LF is no end", mode::data, "a\r\n.\nb\r\n.\r\n", "a\r\n.\nb\r\n", 11, true, 7, true},
      {"LF . CRLF is no end", mode::data, "a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", 11, true, 8, true},
      {"CR . CRLF is no end", mode::data, "a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", 11, true, 8, true},
      {"dot CR x", mode::data, ".\rx\r\n.\r\n", ".\rx\r\n", 8, true, 4, true},
      {"dot CR CR LF", mode::data, ".\r\r\n.\r\n", ".\r\r\n", 7, true, 3, true},
      {"bare LF at start", mode::data, "\n.\r\n.\r\n", "\n.\r\n", 7, true, 4, true},
      {"high octets", mode::data, "caf\xc3\xa9\r\n.\r\n", "caf\xc3\xa9\r\n", 10, true, 7, false,
       false, true},
      {"pipelined command after the end", mode::data, "a\r\n.\r\nQUIT\r\n", "a\r\n", 6, true, 3},
      {"pipelined dot line after the end", mode::data, ".\r\n.\r\n", "", 3, true, 0},
      {"typical text", mode::data, t + ".\r\n", t, t.size() + 3, true, t_size},
      {"one line over a small limit",
       mode::data,
       line(41) + "abc\r\n",
       line(41) + "abc\r\n",
       48,
       false,
       48,
       false,
       true,
       false,
       false,
       {.max_line = 42}},
      {"short lines within a small limit",
       mode::data,
       text(3) + "abc\r\n.\r\n",
       text(3) + "abc\r\n",
       242,
       true,
       239,
       false,
       false,
       false,
       false,
       {.max_line = 78}},
      {"short lines over a small limit",
       mode::data,
       "abc\r\n" + line(100) + "abc\r\n.\r\n",
       "abc\r\n" + line(100) + "abc\r\n",
       115,
       true,
       112,
       false,
       true,
       false,
       false,
       {.max_line = 5}},
      // Both line ends inside one 64-octet block, 62 octets apart.
      {"block-long line over a small limit",
       mode::data,
       "\r\n" + line(60) + ".\r\n",
       "\r\n" + line(60),
       67,
       true,
       64,
       false,
       true,
       false,
       false,
       {.max_line = 61}},
      {"block-long line within a small limit",
       mode::data,
       "\r\n" + line(60) + ".\r\n",
       "\r\n" + line(60),
       67,
       true,
       64,
       false,
       false,
       false,
       false,
       {.max_line = 62}},
      // Line ends at octets 0 and 63 of the second block: 63 octets.
      {"full-block line over a small limit",
       mode::data,
       lines(31, "") + "x\r\n" + line(61) + ".\r\n",
       lines(31, "") + "x\r\n" + line(61),
       131,
       true,
       128,
       false,
       true,
       false,
       false,
       {.max_line = 62}},
      {"full-block line within a small limit",
       mode::data,
       lines(31, "") + "x\r\n" + line(61) + ".\r\n",
       lines(31, "") + "x\r\n" + line(61),
       131,
       true,
       128,
       false,
       false,
       false,
       false,
       {.max_line = 63}},
      // A stuffed line, one octet shorter than its span, inside one block
      // (both line ends in it: octets 1 and 63).
      {"block-long stuffed line within a small limit",
       mode::data,
       "\r\n" + dot_line(59) + ".\r\n",
       "\r\n" + dot_line(59),
       67,
       true,
       63,
       false,
       false,
       false,
       false,
       {.max_line = 61}},
      {"block-long stuffed line over a small limit",
       mode::data,
       "\r\n" + dot_line(59) + ".\r\n",
       "\r\n" + dot_line(59),
       67,
       true,
       63,
       false,
       true,
       false,
       false,
       {.max_line = 60}},
      // The stuffing dot at octet 0 of the second block, the line end at 63.
      {"full-block stuffed line within a small limit",
       mode::data,
       lines(32, "") + dot_line(61) + ".\r\n",
       lines(32, "") + dot_line(61),
       131,
       true,
       127,
       false,
       false,
       false,
       false,
       {.max_line = 63}},
      {"full-block stuffed line over a small limit",
       mode::data,
       lines(32, "") + dot_line(61) + ".\r\n",
       lines(32, "") + dot_line(61),
       131,
       true,
       127,
       false,
       true,
       false,
       false,
       {.max_line = 62}},
      // The stuffing dot at octet 62 of the first block, the line continues.
      {"stuffed line across blocks within a small limit",
       mode::data,
       lines(31, "") + dot_line(62) + ".\r\n",
       lines(31, "") + dot_line(62),
       130,
       true,
       126,
       false,
       false,
       false,
       false,
       {.max_line = 64}},
      {"stuffed line across blocks over a small limit",
       mode::data,
       lines(31, "") + dot_line(62) + ".\r\n",
       lines(31, "") + dot_line(62),
       130,
       true,
       126,
       false,
       true,
       false,
       false,
       {.max_line = 63}},
      // The stuffing dot is the last octet of the first block.
      {"stuffed line from a block's last octet within a small limit",
       mode::data,
       "x\r\n" + lines(30, "") + dot_line(62) + ".\r\n",
       "x\r\n" + lines(30, "") + dot_line(62),
       131,
       true,
       127,
       false,
       false,
       false,
       false,
       {.max_line = 64}},
      {"stuffed line from a block's last octet over a small limit",
       mode::data,
       "x\r\n" + lines(30, "") + dot_line(62) + ".\r\n",
       "x\r\n" + lines(30, "") + dot_line(62),
       131,
       true,
       127,
       false,
       true,
       false,
       false,
       {.max_line = 63}},
      // Several stuffed lines in one block, measured one by one.
      {"short stuffed lines within a tiny limit",
       mode::data,
       "..\r\n.a\r\nb\r\n..\r\n.\r\n",
       "..\r\n.a\r\nb\r\n..\r\n",
       18,
       true,
       12,
       false,
       false,
       false,
       false,
       {.max_line = 3}},
      {"short stuffed lines over a tiny limit",
       mode::data,
       "..\r\n.a\r\nb\r\n...\r\n..\r\n.\r\n",
       "..\r\n.a\r\nb\r\n...\r\n..\r\n",
       23,
       true,
       16,
       false,
       true,
       false,
       false,
       {.max_line = 3}},
      {"size at the limit",
       mode::data,
       ".12345678\r\n.\r\n",
       ".12345678\r\n",
       14,
       true,
       10,
       false,
       false,
       false,
       false,
       {.max_size = 10}},
      {"size over the limit, scanned to the end",
       mode::data,
       "123456789\r\n.\r\nX",
       "123456789\r\n",
       14,
       true,
       11,
       false,
       false,
       false,
       true,
       {.max_size = 10}},
      {"bdat keeps dots", mode::bdat, "a\r\n.\r\nb", "a\r\n.\r\nb", 7, false, 7},
      {"bdat trailing CR is bare", mode::bdat, "a\r", "a\r", 2, false, 2, true},
      {"bdat CRLF", mode::bdat, "a\r\n", "a\r\n", 3, false, 3},
      {"bdat bare LF", mode::bdat, "a\nb", "a\nb", 3, false, 3, true},
      {"bdat long line", mode::bdat, line(999), line(999), 1001, false, 1001, false, true},
      {"bdat counts a leading dot", mode::bdat, dot_line(998), dot_line(998), 1001, false, 1001,
       false, true},
      {"bdat leading dot within the limit", mode::bdat, dot_line(997), dot_line(997), 1000, false,
       1000},
      {"bdat high octet", mode::bdat, "\xff", "\xff", 1, false, 1, false, false, true},
  };
}

outcome expected(const scanner_case& c) {
  return {c.body, c.consumed,  c.end,       c.size,   c.body.size(),
          c.bare, c.long_line, c.eight_bit, c.too_big};
}

TEST(data_scanner, crafted_inputs_at_every_split) {
  for (const scanner_case& c : cases()) {
    SCOPED_TRACE(c.name);
    const outcome want = expected(c);
    for (scan_impl impl : impls()) {
      SCOPED_TRACE(scan_impl_name(impl));
      ASSERT_EQ(run(impl, c.m, c.limits, c.in, {}), want);
      for (std::size_t a = 0; a <= c.in.size(); ++a) {
        ASSERT_EQ(run(impl, c.m, c.limits, c.in, {a}), want) << "cut at " << a;
        if (c.in.size() > 24) continue;
        for (std::size_t b = a; b <= c.in.size(); ++b) {
          ASSERT_EQ(run(impl, c.m, c.limits, c.in, {a, b}), want) << "cuts at " << a << "," << b;
        }
      }
    }
  }
}

TEST(data_scanner, feed_after_the_end_consumes_nothing) {
  for (scan_impl impl : impls()) {
    set_scan_impl(impl);
    data_scanner sc;
    sc.reset(mode::data);
    ASSERT_TRUE(sc.feed(std::string_view(".\r\n")).end);
    const scan_result r = sc.feed(std::string_view("MAIL FROM:<>\r\n"));
    EXPECT_TRUE(r.end) << scan_impl_name(impl);
    EXPECT_EQ(r.consumed, 0u);
    EXPECT_EQ(r.body, 0u);
  }
}

TEST(data_scanner, reset_starts_a_new_message) {
  for (scan_impl impl : impls()) {
    set_scan_impl(impl);
    data_scanner sc;
    sc.reset(mode::data);
    sc.feed(std::string_view("\xff\n.\r\n.\r"));
    sc.reset(mode::data);
    const scan_result r = sc.feed(std::string_view("\r\n"));
    EXPECT_FALSE(r.end) << scan_impl_name(impl);
    EXPECT_EQ(sc.size(), 2u);
    EXPECT_FALSE(sc.bare_cr_or_lf());
    EXPECT_FALSE(sc.eight_bit());
  }
}

// SPEC.md §5 at its real scale: exactly 50 MiB is allowed, one octet more is
// too big; the stuffing dot is not counted.
TEST(data_scanner, fifty_mib_boundary) {
  for (std::size_t last : {798u, 799u}) {
    std::string msg;
    msg.reserve(52428800 + 1024);
    const std::string full = line(998);
    for (int i = 0; i < 52428; ++i) msg += full;
    msg += dot_line(last) + ".\r\n";
    for (scan_impl impl : impls()) {
      set_scan_impl(impl);
      data_scanner sc;
      sc.reset(mode::data);
      scan_result r{};
      for (std::size_t at = 0; !r.end; at += 16384) {
        r = sc.feed(std::string_view(msg).substr(at, 16384));
      }
      EXPECT_EQ(sc.size(), 52428000 + last + 2) << scan_impl_name(impl);
      EXPECT_EQ(sc.wire_size(), msg.size() - 3);
      EXPECT_EQ(sc.too_big(), last == 799);
      EXPECT_FALSE(sc.line_too_long());
    }
  }
}

// A stuffed line at every offset in a block and every length around the small
// limits, checked against a direct count: its length leaves the dot out.
TEST(data_scanner, stuffed_line_length_at_every_offset) {
  const std::uint32_t max_lines[] = {3, 4, 5, 40, 61, 62, 63, 64, 65, 66};
  for (std::size_t pad = 0; pad < 132; ++pad) {
    if (pad == 1) continue;
    // `pad` octets of lines of 2 or 3 octets, so within every limit here.
    std::string in = pad % 2 == 1 ? "y\r\n" + lines((pad - 3) / 2, "") : lines(pad / 2, "");
    ASSERT_EQ(in.size(), pad);
    for (std::size_t k = 1; k <= 70; ++k) {
      const std::string msg = in + dot_line(k) + "..\r\n" + ".\r\n";
      for (std::uint32_t max_line : max_lines) {
        const outcome want{msg.substr(0, msg.size() - 3),
                           msg.size(),
                           true,
                           pad + k + 2 + 3,
                           msg.size() - 3,
                           false,
                           k + 2 > max_line,
                           false,
                           false};
        for (scan_impl impl : impls()) {
          SCOPED_TRACE(scan_impl_name(impl));
          // Whole, and cut after the dot (held back, then replayed).
          ASSERT_EQ(run(impl, mode::data, {.max_line = max_line}, msg, {}), want)
              << "pad " << pad << " k " << k << " max_line " << max_line;
          ASSERT_EQ(run(impl, mode::data, {.max_line = max_line}, msg, {pad + 1}), want)
              << "pad " << pad << " k " << k << " max_line " << max_line;
        }
      }
    }
  }
}

// Tokens that make the interesting neighbourhoods (line starts, dots, CR/LF
// pairs split and bare) common, plus runs that fill SIMD blocks.
std::string random_input(std::mt19937& rng) {
  static const std::vector<std::string> tokens = {"a",
                                                  "b",
                                                  ".",
                                                  ".",
                                                  "\r",
                                                  "\n",
                                                  "\r\n",
                                                  "\r\n",
                                                  "\r\n.",
                                                  "\r\n.\r",
                                                  "\r\n..",
                                                  "\x80",
                                                  "\xfe",
                                                  std::string(20, 'q'),
                                                  std::string(70, 'w'),
                                                  std::string(130, 'z'),
                                                  "\r\n.\r\n"};
  std::string s;
  const std::size_t n = rng() % 60;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = rng() % tokens.size();
    // The terminator is kept rare so most inputs are scanned a long way.
    if (k + 1 == tokens.size() && rng() % 4 != 0) continue;
    s += tokens[k];
  }
  return s;
}

TEST(data_scanner, random_inputs_match_the_reference) {
  std::mt19937 rng(1870);
  const std::uint32_t max_lines[] = {0, 1, 2, 5, 40, 61, 62, 63, 64, 65, 100, 1000};
  for (int iter = 0; iter < 100000; ++iter) {
    const std::string in = random_input(rng);
    const mode m = rng() % 5 == 0 ? mode::bdat : mode::data;
    const scan_limits limits{.max_size = rng() % 400,
                             .max_line = max_lines[rng() % std::size(max_lines)]};
    std::vector<std::size_t> cuts(rng() % 6);
    for (auto& c : cuts) c = in.empty() ? 0 : rng() % (in.size() + 1);
    std::sort(cuts.begin(), cuts.end());
    const outcome want = run(scan_impl::reference, m, limits, in, cuts);
    for (scan_impl impl : impls()) {
      ASSERT_EQ(run(impl, m, limits, in, cuts), want)
          << scan_impl_name(impl) << " input " << testing::PrintToString(in);
    }
  }
}

// Per feed, not only at the end: same spans, replay and counters.
TEST(data_scanner, random_inputs_match_the_reference_per_feed) {
  std::mt19937 rng(5321);
  for (int iter = 0; iter < 20000; ++iter) {
    const std::string in = random_input(rng);
    const scan_limits limits{.max_size = 100, .max_line = 64};
    std::vector<data_scanner> scanners(impls().size(), data_scanner(limits));
    for (auto& sc : scanners) sc.reset(mode::data);
    for (std::size_t at = 0; at < in.size();) {
      const std::size_t len = rng() % 90;
      const std::string_view piece = std::string_view(in).substr(at, len);
      set_scan_impl(scan_impl::reference);
      const scan_result want = scanners[0].feed(piece);
      for (std::size_t k = 1; k < scanners.size(); ++k) {
        set_scan_impl(impls()[k]);
        const scan_result got = scanners[k].feed(piece);
        ASSERT_EQ(got.body, want.body);
        ASSERT_EQ(got.consumed, want.consumed);
        ASSERT_EQ(got.end, want.end);
        ASSERT_EQ(got.replay, want.replay);
        ASSERT_EQ(scanners[k].size(), scanners[0].size());
        ASSERT_EQ(scanners[k].wire_size(), scanners[0].wire_size());
        ASSERT_EQ(scanners[k].bare_cr_or_lf(), scanners[0].bare_cr_or_lf());
        ASSERT_EQ(scanners[k].line_too_long(), scanners[0].line_too_long());
        ASSERT_EQ(scanners[k].eight_bit(), scanners[0].eight_bit());
      }
      at += len;
    }
  }
}

TEST(data_scanner, size_multiplier_table) {
  constexpr std::uint64_t mib = 1048576;
  const struct {
    std::uint64_t size;
    unsigned want;
  } table[] = {
      {0, 1},        {10 * mib - 1, 1}, {10 * mib, 2}, {20 * mib - 1, 2}, {20 * mib, 3},
      {30 * mib, 4}, {40 * mib - 1, 4}, {40 * mib, 5}, {50 * mib - 1, 5}, {50 * mib, 6},
  };
  for (const auto& row : table) EXPECT_EQ(size_multiplier(row.size), row.want) << row.size;
}

TEST(data_scanner, impl_selection) {
  const scan_impl best = __builtin_cpu_supports("avx2") ? scan_impl::avx2 : scan_impl::sse2;
  EXPECT_EQ(set_scan_impl(scan_impl::best), best);
  EXPECT_EQ(current_scan_impl(), best);
  EXPECT_EQ(set_scan_impl(scan_impl::avx2), best);
  EXPECT_EQ(set_scan_impl(scan_impl::reference), scan_impl::reference);
  EXPECT_EQ(current_scan_impl(), scan_impl::reference);
  EXPECT_STREQ(scan_impl_name(scan_impl::sse2), "sse2");
  set_scan_impl(scan_impl::best);
}

}  // namespace
}  // namespace ringrelay::smtp
