// The SASL exchange's specification: scripted AUTH dialogues as tables,
// every placement of PLAIN's separators, and hostile input.
#include <gtest/gtest.h>

#include <optional>
#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/sasl.hh>
#include <string>
#include <vector>

namespace ringrelay::auth {
namespace {

using namespace std::string_literals;
using status = sasl_exchange::status;

constexpr std::string_view plain_prompt = "334 ";
constexpr std::string_view username_prompt = "334 VXNlcm5hbWU6";
constexpr std::string_view password_prompt = "334 UGFzc3dvcmQ6";
constexpr std::string_view cancelled = "501 5.7.0 Authentication cancelled";
constexpr std::string_view bad_base64 =
    "501 5.5.2 Cannot Base64-decode client response: send RFC 4648 base64 without spaces";
constexpr std::string_view unknown =
    "504 5.5.4 Unrecognized authentication type: use PLAIN or LOGIN";
constexpr std::string_view too_long = "500 5.5.6 Authentication exchange line is too long";
constexpr std::string_view malformed_plain =
    "501 5.5.2 Malformed PLAIN response: expected [authzid] NUL username NUL password";
constexpr std::string_view malformed_login = "501 5.5.2 Malformed LOGIN response: NUL octet";
constexpr std::string_view foreign_authzid =
    "535 5.7.8 Authentication credentials invalid: the authorization identity must be empty "
    "or your username";

std::string b64(std::string_view s) {
  return base64_encode(s);
}

// One AUTH dialogue: the command's mechanism and initial response, the
// client lines that follow, and what must come of it.
struct dialogue {
  const char* name;
  std::string mechanism;
  std::string initial_response;
  std::vector<std::string> lines;
  std::vector<std::string_view> replies;        // one per call; "" for credentials
  std::optional<sasl_credentials> credentials;  // set when the last reply is ""
};

void play(const dialogue& d) {
  SCOPED_TRACE(d.name);
  sasl_exchange x;
  std::vector<std::string_view> got;
  auto r = x.start(d.mechanism, d.initial_response);
  got.push_back(r.reply);
  for (const auto& line : d.lines) {
    ASSERT_EQ(r.st, status::challenge) << "the exchange ended before the script";
    ASSERT_TRUE(x.awaiting_line());
    r = x.step(line);
    got.push_back(r.reply);
  }
  EXPECT_EQ(got, d.replies);
  EXPECT_FALSE(x.awaiting_line() && r.st != status::challenge);
  if (d.credentials) {
    ASSERT_EQ(r.st, status::credentials);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(x.credentials().username, d.credentials->username);
    EXPECT_EQ(x.credentials().password, d.credentials->password);
    EXPECT_FALSE(x.awaiting_line());
  } else if (r.st == status::error) {
    EXPECT_EQ(r.code, std::stoi(std::string(r.reply.substr(0, 3))));
    EXPECT_EQ(x.current(), sasl_exchange::state::idle);
    EXPECT_TRUE(x.credentials().username.empty());
    EXPECT_TRUE(x.credentials().password.empty());
  }
}

TEST(sasl, dialogues) {
  const std::string alice = b64("\0alice\0s3cret"s);
  const dialogue dialogues[] = {
      {"PLAIN with initial response",
       "PLAIN",
       alice,
       {},
       {""},
       sasl_credentials{"alice", "s3cret"}},
      {"PLAIN without",
       "PLAIN",
       "",
       {alice},
       {plain_prompt, ""},
       sasl_credentials{"alice", "s3cret"}},
      {"mechanism in lower case", "plain", alice, {}, {""}, sasl_credentials{"alice", "s3cret"}},
      {"authzid equal to authcid",
       "PLAIN",
       b64("alice\0alice\0pw"s),
       {},
       {""},
       sasl_credentials{"alice", "pw"}},
      {"authzid of another", "PLAIN", b64("bob\0alice\0pw"s), {}, {foreign_authzid}, std::nullopt},
      {"LOGIN",
       "LOGIN",
       "",
       {b64("alice"), b64("s3cret")},
       {username_prompt, password_prompt, ""},
       sasl_credentials{"alice", "s3cret"}},
      {"LOGIN with the username up front",
       "Login",
       b64("alice"),
       {b64("s3cret")},
       {password_prompt, ""},
       sasl_credentials{"alice", "s3cret"}},
      {"LOGIN empty initial response",
       "LOGIN",
       "=",
       {b64("pw")},
       {password_prompt, ""},
       sasl_credentials{"", "pw"}},
      {"LOGIN empty answers",
       "LOGIN",
       "",
       {"", ""},
       {username_prompt, password_prompt, ""},
       sasl_credentials{"", ""}},
      {"LOGIN login with @",
       "LOGIN",
       "",
       {b64("alice@acme.example"), b64("pw")},
       {username_prompt, password_prompt, ""},
       sasl_credentials{"alice@acme.example", "pw"}},
      {"PLAIN empty initial response", "PLAIN", "=", {}, {malformed_plain}, std::nullopt},
      {"PLAIN empty line", "PLAIN", "", {""}, {plain_prompt, malformed_plain}, std::nullopt},
      {"cancel PLAIN", "PLAIN", "", {"*"}, {plain_prompt, cancelled}, std::nullopt},
      {"cancel as initial response", "PLAIN", "*", {}, {cancelled}, std::nullopt},
      {"cancel LOGIN username", "LOGIN", "", {"*"}, {username_prompt, cancelled}, std::nullopt},
      {"cancel LOGIN password",
       "LOGIN",
       "",
       {b64("alice"), "*"},
       {username_prompt, password_prompt, cancelled},
       std::nullopt},
      {"bad base64 initial response", "PLAIN", "AGFsaWNlAHB3=", {}, {bad_base64}, std::nullopt},
      {"bad base64 line", "PLAIN", "", {"AGFs aWNl"}, {plain_prompt, bad_base64}, std::nullopt},
      {"bad base64 username",
       "LOGIN",
       "",
       {"YWxpY2U"},
       {username_prompt, bad_base64},
       std::nullopt},
      {"bad base64 password",
       "LOGIN",
       "",
       {b64("alice"), "**"},
       {username_prompt, password_prompt, bad_base64},
       std::nullopt},
      {"NUL in LOGIN username", "LOGIN", b64("ali\0ce"s), {}, {malformed_login}, std::nullopt},
      {"NUL in LOGIN password",
       "LOGIN",
       "",
       {b64("alice"), b64("p\0w"s)},
       {username_prompt, password_prompt, malformed_login},
       std::nullopt},
      {"unknown mechanism", "CRAM-MD5", "", {}, {unknown}, std::nullopt},
      {"no mechanism", "", "", {}, {unknown}, std::nullopt},
      {"mechanism prefix", "PLAINX", alice, {}, {unknown}, std::nullopt},
      {"mechanism cut", "PLAI", alice, {}, {unknown}, std::nullopt},
  };
  for (const auto& d : dialogues) play(d);
}

// Every placement of PLAIN's two NUL separators in "abcab": the result
// must be what RFC 4616's grammar and the authzid rule say.
TEST(sasl, every_split_of_a_plain_message) {
  const std::string text = "abcab";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    for (std::size_t j = i; j <= text.size(); ++j) {
      const std::string authzid = text.substr(0, i);
      const std::string authcid = text.substr(i, j - i);
      const std::string passwd = text.substr(j);
      const std::string message = authzid + '\0' + authcid + '\0' + passwd;
      SCOPED_TRACE(testing::Message() << "split " << i << "," << j);
      for (bool initial : {true, false}) {
        sasl_exchange x;
        auto r = x.start("PLAIN", initial ? b64(message) : "");
        if (!initial) r = x.step(b64(message));
        if (authcid.empty() || passwd.empty()) {
          EXPECT_EQ(r.reply, malformed_plain);
        } else if (!authzid.empty() && authzid != authcid) {
          EXPECT_EQ(r.reply, foreign_authzid);
        } else {
          ASSERT_EQ(r.st, status::credentials);
          EXPECT_EQ(x.credentials().username, authcid);
          EXPECT_EQ(x.credentials().password, passwd);
        }
      }
    }
  }
}

TEST(sasl, plain_needs_exactly_two_separators) {
  const std::string messages[] = {"",        "alice", "\0alicepw"s, "alicepw\0"s, "\0alice\0p\0w"s,
                                  "\0\0\0"s, "\0\0"s, "a\0b\0c\0"s};
  for (const auto& m : messages) {
    sasl_exchange x;
    EXPECT_EQ(x.start("PLAIN", m.empty() ? "=" : b64(m)).reply, malformed_plain) << b64(m);
  }
}

TEST(sasl, line_length_limits) {
  // RFC 4954 §4: 12288 octets with the CRLF, so 12286 without.
  std::string longest;
  while (longest.size() + 4 <= 12286) longest += "QUFB";  // "AAA"
  sasl_exchange x;
  ASSERT_EQ(x.start("LOGIN", "").st, status::challenge);
  EXPECT_EQ(x.step(longest).reply, password_prompt);
  EXPECT_EQ(x.credentials().username, std::string(longest.size() / 4 * 3, 'A'));
  ASSERT_EQ(x.start("LOGIN", "").st, status::challenge);
  EXPECT_EQ(x.step(std::string(12286, 'A')).reply, bad_base64) << "long enough, not base64";
  ASSERT_EQ(x.start("LOGIN", "").st, status::challenge);
  EXPECT_EQ(x.step(std::string(12287, 'A')).reply, too_long);
  EXPECT_FALSE(x.awaiting_line());

  // "AUTH PLAIN " + response + CRLF: 13 octets around the response.
  EXPECT_EQ(x.start("PLAIN", std::string(12276, 'A')).reply, too_long);
  EXPECT_EQ(x.start("PLAIN", std::string(12275, 'A')).reply, bad_base64);

  ASSERT_EQ(x.start("PLAIN", "").st, status::challenge);
  const auto r = x.line_too_long();
  EXPECT_EQ(r.st, status::error);
  EXPECT_EQ(r.code, 500);
  EXPECT_EQ(r.reply, too_long);
  EXPECT_FALSE(x.awaiting_line());
}

TEST(sasl, hostile_input) {
  // Huge valid base64 of NULs and other binary: refused, never crashes.
  const std::string binary(9000, '\0');
  sasl_exchange x;
  EXPECT_EQ(x.start("PLAIN", b64(binary)).reply, malformed_plain);
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(x.start("PLAIN", all).reply, bad_base64);
  EXPECT_EQ(x.start("LOGIN", all.substr(0, 4)).reply, bad_base64);
  EXPECT_EQ(x.start("PLAIN\0"s, "").reply, unknown);
  // A password holding every octet but NUL goes through unchanged.
  const std::string password = all.substr(1);
  ASSERT_EQ(x.start("PLAIN", b64("\0u\0"s + password)).st, status::credentials);
  EXPECT_EQ(x.credentials().password, password);
}

TEST(sasl, exchanges_are_reusable_and_credentials_can_be_taken) {
  sasl_exchange x;
  ASSERT_EQ(x.start("PLAIN", b64("\0alice\0pw"s)).st, status::credentials);
  auto taken = x.take_credentials();
  EXPECT_EQ(taken.username, "alice");
  EXPECT_EQ(taken.password, "pw");
  EXPECT_TRUE(x.credentials().username.empty());
  EXPECT_TRUE(x.credentials().password.empty());
  // A new AUTH after a failed or finished one starts clean.
  ASSERT_EQ(x.start("LOGIN", "").st, status::challenge);
  EXPECT_EQ(x.current(), sasl_exchange::state::awaiting_username);
  ASSERT_EQ(x.start("PLAIN", "").st, status::challenge);
  EXPECT_EQ(x.current(), sasl_exchange::state::awaiting_plain);
  EXPECT_EQ(x.step(b64("\0bob\0pw2"s)).st, status::credentials);
  EXPECT_EQ(x.credentials().username, "bob");
}

TEST(sasl_death, step_without_an_exchange_aborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  sasl_exchange x;
  EXPECT_DEATH(x.step("AAAA"), "step called in state idle");
  EXPECT_DEATH(x.line_too_long(), "line_too_long called in state idle");
}

}  // namespace
}  // namespace ringrelay::auth
