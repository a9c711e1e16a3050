// The command parser's specification, as tables: each row is a command line
// and what the parser must make of it.
#include <gtest/gtest.h>

#include <cstdint>
#include <ringrelay/smtp/command.hh>
#include <string>
#include <string_view>
#include <utility>

namespace ringrelay::smtp {
namespace {

using namespace std::string_view_literals;

constexpr std::uint64_t uint64_max = 18446744073709551615u;

struct refusal {
  std::string_view line;
  std::uint16_t code;
  std::string_view enhanced;
  std::string_view text;
};

void expect_refused(const refusal& r, const parse_options& opt = {}) {
  SCOPED_TRACE(testing::Message() << "line: \"" << r.line << '"');
  command cmd;
  parse_reply err{};
  ASSERT_FALSE(parse_command(r.line, opt, cmd, err));
  EXPECT_EQ(err.code, r.code);
  EXPECT_EQ(err.enhanced, r.enhanced);
  EXPECT_EQ(err.text, r.text);
}

command expect_parsed(std::string_view line, const parse_options& opt = {}) {
  command cmd;
  parse_reply err{};
  EXPECT_TRUE(parse_command(line, opt, cmd, err))
      << "line \"" << line << "\" refused: " << err.code << ' ' << err.enhanced << ' ' << err.text;
  return cmd;
}

// A Domain of exactly `n` octets (n >= 1), in labels of at most 63.
std::string domain_of_length(std::size_t n) {
  std::string d;
  while (n - d.size() > 63) d += std::string(62, 'd') + '.';
  d.append(n - d.size(), 'd');
  return d;
}

// Replies, as the client sees them.
constexpr std::string_view unrecognized = "Command unrecognized";
constexpr std::string_view mail_syntax = "Syntax: MAIL FROM:<address>";
constexpr std::string_view rcpt_syntax = "Syntax: RCPT TO:<address>";
constexpr std::string_view bdat_syntax = "Syntax: BDAT chunk-size [LAST]";
constexpr std::string_view control_character = "Syntax error: control character in argument";
constexpr std::string_view param_syntax = "Syntax error in parameters: use KEYWORD[=value]";
constexpr std::string_view duplicate = "Duplicate parameter";
constexpr std::string_view unsupported = "Unsupported parameter";
constexpr std::string_view size_syntax = "Syntax: SIZE=<octets>";
constexpr std::string_view too_big = "Message size exceeds fixed limit";
constexpr std::string_view body_syntax = "Syntax: BODY=7BIT|8BITMIME|BINARYMIME";
constexpr std::string_view value_missing = "Syntax: parameter needs a value";
constexpr std::string_view bad_sender = "Bad sender address syntax";
constexpr std::string_view needs_utf8 = "Non-ASCII sender address requires the SMTPUTF8 parameter";
constexpr std::string_view bad_recipient = "Bad recipient address syntax";

// --- verbs and arguments -------------------------------------------------

struct simple_case {
  std::string_view line;
  verb v;
  std::string_view arg;
};

TEST(parse_command, recognises_every_verb_case_insensitively_and_keeps_its_argument) {
  const simple_case cases[] = {
      {"HELO mail.example.com", verb::helo, "mail.example.com"},
      {"helo mail.example.com", verb::helo, "mail.example.com"},
      {"EHLO mail.example.com", verb::ehlo, "mail.example.com"},
      {"eHlO mail.example.com", verb::ehlo, "mail.example.com"},
      {"MAIL FROM:<a@example.com>", verb::mail, "FROM:<a@example.com>"},
      {"RCPT TO:<b@example.com> NOTIFY=NEVER", verb::rcpt, "TO:<b@example.com> NOTIFY=NEVER"},
      {"DATA", verb::data, ""},
      {"data", verb::data, ""},
      {"BDAT 10 LAST", verb::bdat, "10 LAST"},
      {"RSET", verb::rset, ""},
      {"NOOP", verb::noop, ""},
      {"QUIT", verb::quit, ""},
      {"quit", verb::quit, ""},
      {"VRFY postmaster", verb::vrfy, "postmaster"},
      {"HELP", verb::help, ""},
      {"STARTTLS", verb::starttls, ""},
      {"StartTls", verb::starttls, ""},
      {"AUTH PLAIN", verb::auth, "PLAIN"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, c.v);
    EXPECT_EQ(cmd.arg, c.arg);
  }
}

TEST(parse_command, tolerates_extra_spaces_after_the_verb_and_trailing_blanks) {
  const simple_case cases[] = {
      {"EHLO   mail.example.com", verb::ehlo, "mail.example.com"},
      {"EHLO mail.example.com  ", verb::ehlo, "mail.example.com"},
      {"EHLO mail.example.com\t", verb::ehlo, "mail.example.com"},
      {"EHLO mail.example.com \t ", verb::ehlo, "mail.example.com"},
      {"DATA ", verb::data, ""},
      {"QUIT\t", verb::quit, ""},
      {"RSET   ", verb::rset, ""},
      {"STARTTLS ", verb::starttls, ""},
      {"NOOP  x  ", verb::noop, "x"},
      {"MAIL  FROM:<a@example.com>  ", verb::mail, "FROM:<a@example.com>"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, c.v);
    EXPECT_EQ(cmd.arg, c.arg);
  }
}

TEST(parse_command, refuses_unknown_verbs_and_empty_lines_with_500) {
  const std::string_view lines[] = {
      "",
      " ",
      "   \t",
      "EXPN staff",
      "TURN",
      "ETRN example.com",
      "DAT",
      "DATAX",
      "STARTTL",
      "STARTTLSX",
      "HELOmail.example.com",
      "MAILFROM:<a@example.com>",
      "MAIL\tFROM:<a@example.com>",  // only SP separates the verb (RFC 5321 4.1.1)
      " MAIL FROM:<a@example.com>",
      "\tQUIT",
      "QU IT",
      "GET / HTTP/1.1",
      "\0DATA"sv,
      "D\0TA"sv,
  };
  for (auto line : lines) expect_refused({line, 500, "5.5.1", unrecognized});
}

// --- HELO / EHLO ----------------------------------------------------------

TEST(parse_command, helo_and_ehlo_accept_domains_literals_and_odd_names) {
  const simple_case cases[] = {
      {"EHLO [127.0.0.1]", verb::ehlo, "[127.0.0.1]"},
      {"EHLO [IPv6:2001:db8::1]", verb::ehlo, "[IPv6:2001:db8::1]"},
      {"EHLO [IPv6:::1]", verb::ehlo, "[IPv6:::1]"},
      {"EHLO localhost", verb::ehlo, "localhost"},
      {"HELO my_pc", verb::helo, "my_pc"},
      {"HELO 192.168.1.5", verb::helo, "192.168.1.5"},
      {"EHLO xn--bcher-kva.example", verb::ehlo, "xn--bcher-kva.example"},
      {"EHLO mail.example.com.", verb::ehlo, "mail.example.com."},
      {"HELO [broken", verb::helo, "[broken"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, c.v);
    EXPECT_EQ(cmd.arg, c.arg);
  }
}

TEST(parse_command, helo_and_ehlo_need_one_printable_ascii_name) {
  const refusal cases[] = {
      {"HELO", 501, "5.5.4", "Syntax: HELO hostname"},
      {"HELO   ", 501, "5.5.4", "Syntax: HELO hostname"},
      {"EHLO", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO \t", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO mail example", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"HELO mail.example.com extra", 501, "5.5.4", "Syntax: HELO hostname"},
      {"EHLO mail\texample", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO mail\rexample", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO mail\nexample", 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO mail\0example"sv, 501, "5.5.4", "Syntax: EHLO hostname"},
      {"EHLO mail\x7f", 501, "5.5.4", "Syntax: EHLO hostname"},
      // RFC 6531 3.7.1: EHLO carries ASCII (LDH or A-label) names only.
      {"EHLO bücher.example", 501, "5.5.4", "Syntax: EHLO hostname"},
  };
  for (const auto& c : cases) expect_refused(c);
}

// --- commands without arguments, free-text arguments ---------------------

TEST(parse_command, data_rset_quit_starttls_take_no_argument) {
  const refusal cases[] = {
      {"DATA now", 501, "5.5.4", "Syntax: DATA"},
      {"DATA  x", 501, "5.5.4", "Syntax: DATA"},
      {"RSET all", 501, "5.5.4", "Syntax: RSET"},
      {"QUIT bye", 501, "5.5.4", "Syntax: QUIT"},
      {"STARTTLS please", 501, "5.5.4", "Syntax: STARTTLS"},
  };
  for (const auto& c : cases) expect_refused(c);
}

TEST(parse_command, noop_help_vrfy_auth_keep_free_text) {
  const simple_case cases[] = {
      {"NOOP", verb::noop, ""},
      {"NOOP anything at all", verb::noop, "anything at all"},
      {"NOOP tab\tinside", verb::noop, "tab\tinside"},
      {"HELP", verb::help, ""},
      {"HELP MAIL", verb::help, "MAIL"},
      {"VRFY John Smith", verb::vrfy, "John Smith"},
      {"VRFY <postmaster@example.com> SMTPUTF8", verb::vrfy, "<postmaster@example.com> SMTPUTF8"},
      {"VRFY josé", verb::vrfy, "josé"},
      {"AUTH LOGIN", verb::auth, "LOGIN"},
      {"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", verb::auth, "PLAIN dGVzdAB0ZXN0AHRlc3Q="},
      {"auth plain =", verb::auth, "plain ="},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, c.v);
    EXPECT_EQ(cmd.arg, c.arg);
  }
}

TEST(parse_command, vrfy_and_auth_need_an_argument_and_free_text_has_no_controls) {
  const refusal cases[] = {
      {"VRFY", 501, "5.5.4", "Syntax: VRFY address"},
      {"VRFY  ", 501, "5.5.4", "Syntax: VRFY address"},
      {"AUTH", 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"},
      {"AUTH\t", 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"},
      {"NOOP a\rb", 501, "5.5.4", control_character},
      {"HELP a\nb", 501, "5.5.4", control_character},
      {"VRFY a\0b"sv, 501, "5.5.4", control_character},
      {"VRFY \x1b[31m", 501, "5.5.4", control_character},
      {"AUTH PLAIN abc\x7f", 501, "5.5.4", control_character},
  };
  for (const auto& c : cases) expect_refused(c);
}

// --- MAIL -----------------------------------------------------------------

struct mail_case {
  std::string_view line;
  std::string_view address;
  bool has_size = false;
  std::uint64_t size = 0;
  body_type body = body_type::unspecified;
  bool smtputf8 = false;
};

TEST(parse_command, mail_accepts_reverse_paths_and_parameters) {
  const mail_case cases[] = {
      {"MAIL FROM:<user@example.com>", "user@example.com"},
      {"mail from:<user@example.com>", "user@example.com"},
      {"Mail From:<user@example.com>", "user@example.com"},
      {"MAIL FROM:<>", ""},
      // Many clients put a space after the colon.
      {"MAIL FROM: <user@example.com>", "user@example.com"},
      {"MAIL FROM:   <>", ""},
      {"MAIL FROM:<user@example.com>   ", "user@example.com"},
      // A source route is accepted and dropped (RFC 5321 4.1.1.3, C).
      {"MAIL FROM:<@relay.example:user@example.com>", "user@example.com"},
      {"MAIL FROM:<@a.example,@b.example:user@example.com>", "user@example.com"},
      // A quoted local part may hold ">", "@" and escaped quotes.
      {"MAIL FROM:<\"a>b\"@example.com>", "\"a>b\"@example.com"},
      {"MAIL FROM:<\"a\\\">b\"@example.com>", "\"a\\\">b\"@example.com"},
      {"MAIL FROM:<\"john smith\"@example.com>", "\"john smith\"@example.com"},
      {"MAIL FROM:<user@[192.0.2.1]>", "user@[192.0.2.1]"},
      {"MAIL FROM:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"},
      {"MAIL FROM:<user@example.com> SIZE=1000", "user@example.com", true, 1000},
      {"MAIL FROM:<user@example.com> SIZE=0", "user@example.com", true, 0},
      {"MAIL FROM:<user@example.com> SIZE=52428800", "user@example.com", true, 52428800},
      {"MAIL FROM:<user@example.com> SIZE=00000000000000000042", "user@example.com", true, 42},
      {"MAIL FROM:<> SIZE=100", "", true, 100},
      {"MAIL FROM:<user@example.com> BODY=7BIT", "user@example.com", false, 0,
       body_type::seven_bit},
      {"MAIL FROM:<user@example.com> BODY=8BITMIME", "user@example.com", false, 0,
       body_type::eight_bit_mime},
      {"MAIL FROM:<user@example.com> BODY=BINARYMIME", "user@example.com", false, 0,
       body_type::binary_mime},
      {"MAIL FROM:<user@example.com> size=1000 body=8bitmime", "user@example.com", true, 1000,
       body_type::eight_bit_mime},
      {"MAIL FROM:<user@example.com>   SIZE=1    BODY=7bit", "user@example.com", true, 1,
       body_type::seven_bit},
      {"MAIL FROM:<user@example.com> SMTPUTF8", "user@example.com", false, 0,
       body_type::unspecified, true},
      {"MAIL FROM:<user@example.com> smtputf8", "user@example.com", false, 0,
       body_type::unspecified, true},
      {"MAIL FROM:<josé@example.com> SMTPUTF8", "josé@example.com", false, 0,
       body_type::unspecified, true},
      {"MAIL FROM:<user@bücher.example> SIZE=10 SMTPUTF8 BODY=8BITMIME", "user@bücher.example",
       true, 10, body_type::eight_bit_mime, true},
      {"MAIL FROM:<@relais.bücher.example:josé@example.com> SMTPUTF8", "josé@example.com", false, 0,
       body_type::unspecified, true},
      // RFC 4954 5: AUTH= is accepted and ignored.
      {"MAIL FROM:<user@example.com> AUTH=<>", "user@example.com"},
      {"MAIL FROM:<user@example.com> AUTH=user+40example.com", "user@example.com"},
      // RFC 6531 3.3: esmtp-value =/ UTF8-non-ascii.
      {"MAIL FROM:<user@example.com> AUTH=josé", "user@example.com"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, verb::mail);
    EXPECT_EQ(cmd.address, c.address);
    EXPECT_EQ(cmd.has_size, c.has_size);
    EXPECT_EQ(cmd.size, c.size);
    EXPECT_EQ(cmd.body, c.body);
    EXPECT_EQ(cmd.smtputf8, c.smtputf8);
  }
}

TEST(parse_command, mail_refuses_bad_path_syntax_with_501_5_5_4) {
  const std::string_view lines[] = {
      "MAIL",
      "MAIL FROM:",
      "MAIL FROM:   ",
      "MAIL FROM:user@example.com",
      "MAIL FROM:<user@example.com",
      "MAIL FROM user@example.com",
      "MAIL FROM <user@example.com>",
      "MAIL FROM :<user@example.com>",
      "MAIL FROM=<user@example.com>",
      "MAIL TO:<user@example.com>",
      "MAIL <user@example.com>",
      "MAIL FROM:<user@example.com>SIZE=100",
      "MAIL FROM:<user@example.com>>",
      "MAIL FROM:<<user@example.com>>",
      "MAIL FROM:<\"unterminated@example.com>",
      "MAIL FROM:\t<user@example.com>",
  };
  for (auto line : lines) expect_refused({line, 501, "5.5.4", mail_syntax});
}

TEST(parse_command, mail_refuses_bad_sender_addresses) {
  const refusal cases[] = {
      {"MAIL FROM:<user>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<user@>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<user@exam ple.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<user@example..com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<Postmaster>", 501, "5.1.7", bad_sender},  // only RCPT may omit the domain
      {"MAIL FROM:<user@example.com\r>", 501, "5.1.7", bad_sender},
      // Source routes must still be well-formed.
      {"MAIL FROM:<@relay.example:>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@:user@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@relay..example:user@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@a.example,:user@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@a.example,b.example:user@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<@[192.0.2.1]:user@example.com>", 501, "5.1.7", bad_sender},
      // RFC 6531 3.5: a sender that would be fine with SMTPUTF8 gets 550 5.6.7.
      {"MAIL FROM:<josé@example.com>", 550, "5.6.7", needs_utf8},
      {"MAIL FROM:<user@bücher.example> BODY=8BITMIME", 550, "5.6.7", needs_utf8},
      {"MAIL FROM:<\"josé\"@example.com>", 550, "5.6.7", needs_utf8},
      {"MAIL FROM:<@relais.bücher.example:user@example.com>", 501, "5.1.7", bad_sender},
      // Malformed UTF-8 is bad syntax with or without SMTPUTF8.
      {"MAIL FROM:<jos\xc3(@example.com>", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<jos\xc3(@example.com> SMTPUTF8", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<user@b\xc3\xbc\xbc.example> SMTPUTF8", 501, "5.1.7", bad_sender},
  };
  for (const auto& c : cases) expect_refused(c);
}

TEST(parse_command, mail_refuses_bad_parameters) {
  const refusal cases[] = {
      // esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2)
      {"MAIL FROM:<> SIZE=", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> =1", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> -SIZE=1", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> SI_ZE=1", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> AUTH=a=b", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> SIZE=1\tBODY=7BIT", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> AUTH=jos\xc3(", 501, "5.5.4", param_syntax},
      {"MAIL FROM:<> BODY=", 501, "5.5.4", param_syntax},
      // SIZE (RFC 1870): 1*20DIGIT; a valid value beyond 64 bits is too big.
      {"MAIL FROM:<> SIZE", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=abc", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=-1", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=+1", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=1.5", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=10k", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=18446744073709551616", 552, "5.3.4", too_big},
      {"MAIL FROM:<> SIZE=99999999999999999999", 552, "5.3.4", too_big},
      {"MAIL FROM:<> SIZE=000000000000000000001", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=52428801", 552, "5.3.4", too_big},
      {"MAIL FROM:<> SIZE=18446744073709551615", 552, "5.3.4", too_big},
      // BODY (RFC 6152, RFC 3030)
      {"MAIL FROM:<> BODY", 501, "5.5.4", body_syntax},
      {"MAIL FROM:<> BODY=8BIT", 501, "5.5.4", body_syntax},
      {"MAIL FROM:<> BODY=7BITS", 501, "5.5.4", body_syntax},
      // SMTPUTF8 takes no value (RFC 6531 3.4); AUTH= needs one.
      {"MAIL FROM:<> SMTPUTF8=yes", 501, "5.5.4", "Syntax: SMTPUTF8 (it takes no value)"},
      {"MAIL FROM:<> AUTH", 501, "5.5.4", value_missing},
      // Parameters ringrelay does not offer.
      {"MAIL FROM:<> RET=HDRS", 555, "5.5.4", unsupported},
      {"MAIL FROM:<> ENVID=abc", 555, "5.5.4", unsupported},
      {"MAIL FROM:<> NOTIFY=NEVER", 555, "5.5.4", unsupported},
      {"MAIL FROM:<> X-FOO", 555, "5.5.4", unsupported},
      {"MAIL FROM:<> SIZE=1 HOLDFOR=10", 555, "5.5.4", unsupported},
      // Each parameter once.
      {"MAIL FROM:<> SIZE=1 SIZE=1", 501, "5.5.4", duplicate},
      {"MAIL FROM:<> SIZE=1 size=2", 501, "5.5.4", duplicate},
      {"MAIL FROM:<> BODY=7BIT BODY=8BITMIME", 501, "5.5.4", duplicate},
      {"MAIL FROM:<> SMTPUTF8 SMTPUTF8", 501, "5.5.4", duplicate},
      {"MAIL FROM:<> AUTH=<> AUTH=<>", 501, "5.5.4", duplicate},
  };
  for (const auto& c : cases) expect_refused(c);
}

TEST(parse_command, mail_reports_syntax_before_address_before_size_limit) {
  const refusal cases[] = {
      {"MAIL FROM:<user> X-FOO", 555, "5.5.4", unsupported},
      {"MAIL FROM:<user> SIZE=x", 501, "5.5.4", size_syntax},
      {"MAIL FROM:<> SIZE=99999999999 X-FOO", 555, "5.5.4", unsupported},
      {"MAIL FROM:<user> SIZE=99999999999", 501, "5.1.7", bad_sender},
      {"MAIL FROM:<josé@example.com> SIZE=99999999999", 550, "5.6.7", needs_utf8},
  };
  for (const auto& c : cases) expect_refused(c);
}

TEST(parse_command, mail_size_limit_comes_from_the_options) {
  parse_options opt;
  opt.max_size = 1000;
  EXPECT_EQ(expect_parsed("MAIL FROM:<> SIZE=1000", opt).size, 1000u);
  expect_refused({"MAIL FROM:<> SIZE=1001", 552, "5.3.4", too_big}, opt);
  opt.max_size = uint64_max;
  EXPECT_EQ(expect_parsed("MAIL FROM:<> SIZE=18446744073709551615", opt).size, uint64_max);
}

// --- RCPT -----------------------------------------------------------------

TEST(parse_command, rcpt_accepts_forward_paths_postmaster_and_dsn_parameters) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"RCPT TO:<user@example.com>", "user@example.com"},
      {"rcpt to:<user@example.com>", "user@example.com"},
      {"RCPT To:<user@example.com>", "user@example.com"},
      {"RCPT TO: <user@example.com>", "user@example.com"},
      {"RCPT  TO:<user@example.com>  ", "user@example.com"},
      // RFC 5321 4.1.1.3: "<Postmaster>" needs no domain, in any case.
      {"RCPT TO:<Postmaster>", "Postmaster"},
      {"RCPT TO:<postmaster>", "postmaster"},
      {"RCPT TO:<POSTMASTER>", "POSTMASTER"},
      {"RCPT TO:<Postmaster@example.com>", "Postmaster@example.com"},
      {"RCPT TO:<@relay.example:user@example.com>", "user@example.com"},
      {"RCPT TO:<@a.example,@b.example:user@example.com>", "user@example.com"},
      {"RCPT TO:<\"john smith\"@example.com>", "\"john smith\"@example.com"},
      {"RCPT TO:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"},
      {"RCPT TO:<user@[192.0.2.1]>", "user@[192.0.2.1]"},
      // The session, not the parser, knows whether MAIL had SMTPUTF8.
      {"RCPT TO:<josé@example.com>", "josé@example.com"},
      {"RCPT TO:<用户@例子.广告>", "用户@例子.广告"},
      // RFC 3461: NOTIFY= and ORCPT= are accepted and ignored.
      {"RCPT TO:<user@example.com> NOTIFY=SUCCESS,FAILURE", "user@example.com"},
      {"RCPT TO:<user@example.com> notify=NEVER orcpt=rfc822;user+40example.com",
       "user@example.com"},
  };
  for (const auto& [line, address] : cases) {
    SCOPED_TRACE(line);
    auto cmd = expect_parsed(line);
    EXPECT_EQ(cmd.v, verb::rcpt);
    EXPECT_EQ(cmd.address, address);
  }
}

TEST(parse_command, rcpt_refusals) {
  const refusal cases[] = {
      {"RCPT", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO:", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO:user@example.com", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO <user@example.com>", 501, "5.5.4", rcpt_syntax},
      {"RCPT FROM:<user@example.com>", 501, "5.5.4", rcpt_syntax},
      {"RCPT <user@example.com>", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO:<user@example.com>NOTIFY=NEVER", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO:<user@example.com", 501, "5.5.4", rcpt_syntax},
      {"RCPT TO:<>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<user>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<Postmasterx>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<Post master>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<user@example.com.>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<@relay.example:>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<@relay.example user@example.com>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<jos\xc3(@example.com>", 501, "5.1.3", bad_recipient},
      {"RCPT TO:<user@example.com> SIZE=100", 555, "5.5.4", unsupported},
      {"RCPT TO:<user@example.com> SMTPUTF8", 555, "5.5.4", unsupported},
      {"RCPT TO:<user@example.com> BODY=8BITMIME", 555, "5.5.4", unsupported},
      {"RCPT TO:<user@example.com> NOTIFY=NEVER NOTIFY=NEVER", 501, "5.5.4", duplicate},
      {"RCPT TO:<user@example.com> NOTIFY", 501, "5.5.4", value_missing},
      {"RCPT TO:<user@example.com> ORCPT", 501, "5.5.4", value_missing},
      {"RCPT TO:<user@example.com> ORCPT=", 501, "5.5.4", param_syntax},
  };
  for (const auto& c : cases) expect_refused(c);
}

// --- BDAT -----------------------------------------------------------------

TEST(parse_command, bdat_takes_a_chunk_size_and_an_optional_last) {
  const struct {
    std::string_view line;
    std::uint64_t chunk_size;
    bool last;
  } cases[] = {
      {"BDAT 0", 0, false},
      {"BDAT 0 LAST", 0, true},
      {"BDAT 1000", 1000, false},
      {"BDAT 1000 LAST", 1000, true},
      {"bdat 1000 last", 1000, true},
      {"BDAT 1000 Last", 1000, true},
      {"BDAT   86   LAST  ", 86, true},
      {"BDAT 007", 7, false},
      {"BDAT 18446744073709551615", uint64_max, false},
      {"BDAT 18446744073709551615 LAST", uint64_max, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    auto cmd = expect_parsed(c.line);
    EXPECT_EQ(cmd.v, verb::bdat);
    EXPECT_EQ(cmd.chunk_size, c.chunk_size);
    EXPECT_EQ(cmd.last, c.last);
  }
}

TEST(parse_command, bdat_refuses_anything_else_with_501_5_5_4) {
  const std::string_view lines[] = {
      "BDAT",
      "BDAT   ",
      "BDAT LAST",
      "BDAT -1",
      "BDAT +1",
      "BDAT 1k",
      "BDAT 0x10",
      "BDAT 1 000",
      "BDAT 18446744073709551616",  // 2^64
      "BDAT 99999999999999999999",
      "BDAT 100000000000000000000000",
      "BDAT 100 LAST extra",
      "BDAT 100 FIRST",
      "BDAT 100 LASTX",
      "BDAT 100\tLAST",
  };
  for (auto line : lines) expect_refused({line, 501, "5.5.4", bdat_syntax});
}

// --- results --------------------------------------------------------------

TEST(parse_command, views_point_into_the_line) {
  const std::string line = "MAIL FROM:<@relay.example:user@example.com> SIZE=5";
  command cmd;
  parse_reply err{};
  ASSERT_TRUE(parse_command(line, {}, cmd, err));
  EXPECT_EQ(cmd.arg.data(), line.data() + 5);
  EXPECT_EQ(cmd.address.data(), line.data() + line.find("user@"));
}

TEST(parse_command, every_parse_starts_from_a_fresh_command) {
  command cmd;
  parse_reply err{};
  ASSERT_TRUE(
      parse_command("MAIL FROM:<a@example.com> SIZE=5 BODY=8BITMIME SMTPUTF8", {}, cmd, err));
  ASSERT_TRUE(parse_command("BDAT 9 LAST", {}, cmd, err));
  ASSERT_TRUE(parse_command("RCPT TO:<b@example.com>", {}, cmd, err));
  EXPECT_EQ(cmd.address, "b@example.com");
  EXPECT_FALSE(cmd.has_size);
  EXPECT_EQ(cmd.size, 0u);
  EXPECT_EQ(cmd.body, body_type::unspecified);
  EXPECT_FALSE(cmd.smtputf8);
  EXPECT_EQ(cmd.chunk_size, 0u);
  EXPECT_FALSE(cmd.last);
}

// --- path lengths (RFC 5321 4.5.3.1.3: a path is at most 256 octets) -------

TEST(parse_command, path_of_256_octets_including_route_and_brackets_is_the_limit) {
  const std::string mailbox = "user@example.com";
  // "<@" route ":" mailbox ">" is 4 octets plus the route's domain and the mailbox.
  const std::string route = domain_of_length(256 - 4 - mailbox.size());
  const std::string fits = "<@" + route + ":" + mailbox + ">";
  ASSERT_EQ(fits.size(), 256u);
  EXPECT_EQ(expect_parsed("MAIL FROM:" + fits).address, mailbox);
  EXPECT_EQ(expect_parsed("RCPT TO:" + fits).address, mailbox);

  const std::string too_long = "<@" + route + "d:" + mailbox + ">";
  expect_refused({"MAIL FROM:" + too_long, 501, "5.1.7", bad_sender});
  expect_refused({"RCPT TO:" + too_long, 501, "5.1.3", bad_recipient});
}

// --- valid_mailbox --------------------------------------------------------

struct mailbox_case {
  std::string_view mailbox;
  bool ascii_valid;  // valid_mailbox(mailbox, false)
  bool utf8_valid;   // valid_mailbox(mailbox, true)
};

TEST(valid_mailbox, follows_rfc_5321_and_rfc_6531_grammar) {
  const mailbox_case cases[] = {
      // Dot-string local parts: atext and single dots.
      {"user@example.com", true, true},
      {"first.last@example.com", true, true},
      {"user+tag@example.com", true, true},
      {"!#$%&'*+-/=?^_`{|}~@example.com", true, true},
      {"USER@EXAMPLE.COM", true, true},
      {"a@b", true, true},
      {"user@localhost", true, true},
      {".user@example.com", false, false},
      {"user.@example.com", false, false},
      {"us..er@example.com", false, false},
      {"us er@example.com", false, false},
      {"us(er)@example.com", false, false},
      {"us,er@example.com", false, false},
      {"us[er@example.com", false, false},
      {"us\\er@example.com", false, false},
      {"us\"er\"@example.com", false, false},
      // Quoted-string local parts: qtextSMTP and quoted-pairSMTP.
      {"\"john smith\"@example.com", true, true},
      {"\"\"@example.com", true, true},
      {"\"a\\\"b\"@example.com", true, true},
      {"\"a\\\\b\"@example.com", true, true},
      {"\"a\\ b\"@example.com", true, true},
      {"\"a@b\"@example.com", true, true},
      {"\"a..b\"@example.com", true, true},
      {"\"a>b,c:d\"@example.com", true, true},
      {"\"unterminated@example.com", false, false},
      {"\"a\"b@example.com", false, false},
      {"\"a\".b@example.com", false, false},
      {"\"a\\\"@example.com", false, false},
      {"\"tab\there\"@example.com", false, false},
      {"\"a\\\x01\"@example.com", false, false},
      {"\"a\\\x7f\"@example.com", false, false},
      {"\"a\x7f\"@example.com", false, false},
      // Structure.
      {"", false, false},
      {"user", false, false},
      {"@example.com", false, false},
      {"user@", false, false},
      {"user@@example.com", false, false},
      {"user@example.com@example.com", false, false},
      {"us\0er@example.com"sv, false, false},
      {"user\r@example.com", false, false},
      {"user@example.com\n", false, false},
      // Domain: Let-dig [Ldh-str] labels.
      {"user@a-b.example", true, true},
      {"user@123.example", true, true},
      {"user@xn--bcher-kva.example", true, true},
      {"user@example..com", false, false},
      {"user@.example.com", false, false},
      {"user@example.com.", false, false},
      {"user@-example.com", false, false},
      {"user@example-.com", false, false},
      {"user@exa_mple.com", false, false},
      {"user@exa mple.com", false, false},
      {"user@exa\"mple.com", false, false},
      // IPv4 address literals: four Snum of 0-255.
      {"user@[127.0.0.1]", true, true},
      {"user@[0.0.0.0]", true, true},
      {"user@[255.255.255.255]", true, true},
      {"user@[001.02.3.040]", true, true},  // Snum = 1*3DIGIT
      {"user@[127.0.0.256]", false, false},
      {"user@[127.0.0]", false, false},
      {"user@[127.0.0.1.5]", false, false},
      {"user@[0127.0.0.1]", false, false},
      {"user@[127.0.0.]", false, false},
      {"user@[127..0.1]", false, false},
      {"user@[ 127.0.0.1]", false, false},
      {"user@[127.0.0.1", false, false},
      {"user@127.0.0.1]", false, false},
      {"user@[]", false, false},
      {"user@[a.b.c.d]", false, false},
      // IPv6 address literals ("IPv6:" tag, case-insensitive in ABNF).
      {"user@[IPv6:::1]", true, true},
      {"user@[ipv6:2001:db8::1]", true, true},
      {"user@[IPV6:2001:db8:0:0:0:0:0:1]", true, true},
      {"user@[IPv6:::ffff:192.0.2.1]", true, true},
      {"user@[IPv6:2001:DB8::A]", true, true},
      {"user@[IPv6:0000:0000:0000:0000:0000:ffff:255.255.255.255]", true, true},
      {"user@[::1]", false, false},
      {"user@[IPv6:]", false, false},
      {"user@[IPv6:::1%eth0]", false, false},
      {"user@[IPv6:12345::]", false, false},
      {"user@[IPv6:1:2:3:4:5:6:7:8:9]", false, false},
      {"user@[IPv6:1::2::3]", false, false},
      {"user@[IPv6:127.0.0.1]", false, false},
      {"user@[IPv6: ::1]", false, false},
      {"user@[IPv6:0000:0000:0000:0000:0000:ffff:255.255.255.255:0]", false, false},
      // General address literals name nothing deliverable.
      {"user@[x-tag:anything]", false, false},
      // UTF-8 (RFC 6531 3.3): only with SMTPUTF8, and only well-formed.
      {"josé@example.com", false, true},
      {"user@bücher.example", false, true},
      {"\"josé smith\"@example.com", false, true},
      {"用户@例子.广告", false, true},
      {"Ω.π@example.com", false, true},
      {"user@é", false, true},
      {"😀@example.com", false, true},
      {"user@-é.example", false, false},
      {"user@é-.example", false, false},
      {"\x80@example.com", false, false},     // lone continuation octet
      {"jos\xc3@example.com", false, false},  // truncated 2-octet sequence
      {"jos\xc3"
       "a@example.com",
       false, false},                                  // lead without continuation
      {"\xc0\xaf@example.com", false, false},          // overlong "/"
      {"\xc1\xbf@example.com", false, false},          // overlong
      {"\xe0\x80\xaf@example.com", false, false},      // overlong 3-octet
      {"\xf0\x80\x80\xaf@example.com", false, false},  // overlong 4-octet
      {"\xed\xa0\x80@example.com", false, false},      // UTF-16 surrogate U+D800
      {"\xf4\x90\x80\x80@example.com", false, false},  // above U+10FFFF
      {"\xf5\x80\x80\x80@example.com", false, false},
      {"\xff@example.com", false, false},
      {"\xe2\x82@example.com", false, false},         // truncated 3-octet
      {"user@b\xc3\xbc\xbc.example", false, false},   // stray continuation in a label
      {"user@example.\xe2\x82", false, false},        // truncated at the very end
      {"\"jos\xc3\"@example.com", false, false},      // truncated inside quotes
      {"\"a\\\xc3\xa9\"@example.com", false, false},  // quoted-pairSMTP stays ASCII
      {"user@[IPv6:::\xc3\xa9]", false, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "mailbox: \"" << c.mailbox << '"');
    EXPECT_EQ(valid_mailbox(c.mailbox, false), c.ascii_valid);
    EXPECT_EQ(valid_mailbox(c.mailbox, true), c.utf8_valid);
  }
}

TEST(valid_mailbox, local_part_is_at_most_64_octets) {
  EXPECT_TRUE(valid_mailbox(std::string(64, 'l') + "@example.com", false));
  EXPECT_FALSE(valid_mailbox(std::string(65, 'l') + "@example.com", false));
  // The quotes count: the limit is on the local part as sent.
  EXPECT_TRUE(valid_mailbox('"' + std::string(62, 'l') + "\"@example.com", false));
  EXPECT_FALSE(valid_mailbox('"' + std::string(63, 'l') + "\"@example.com", false));
  // Octets, not characters: 32 two-octet "é" fill it.
  std::string accents;
  for (int i = 0; i < 32; ++i) accents += "é";
  EXPECT_TRUE(valid_mailbox(accents + "@example.com", true));
  EXPECT_FALSE(valid_mailbox(accents + "e@example.com", true));
}

TEST(valid_mailbox, mailbox_is_at_most_254_octets_so_its_path_fits_256) {
  const std::string local(64, 'l');
  EXPECT_TRUE(valid_mailbox(local + "@" + domain_of_length(189), false));
  EXPECT_FALSE(valid_mailbox(local + "@" + domain_of_length(190), false));
  // A one-octet local part leaves the domain 252 octets, under its own 255.
  EXPECT_TRUE(valid_mailbox("l@" + domain_of_length(252), false));
  EXPECT_FALSE(valid_mailbox("l@" + domain_of_length(253), false));
}

TEST(valid_mailbox, ascii_labels_are_at_most_63_octets_u_labels_are_not_measured) {
  EXPECT_TRUE(valid_mailbox("user@" + std::string(63, 'x') + ".example", false));
  EXPECT_FALSE(valid_mailbox("user@" + std::string(64, 'x') + ".example", false));
  // 35 "é" are 70 octets but an A-label of well under 63.
  std::string label;
  for (int i = 0; i < 35; ++i) label += "é";
  EXPECT_TRUE(valid_mailbox("user@" + label + ".example", true));
}

}  // namespace
}  // namespace ringrelay::smtp
