// Password hashes: the encoding, a published PBKDF2-HMAC-SHA256 vector,
// round trips, wrong passwords and every malformed encoding we can think of.
#include <gtest/gtest.h>

#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/password.hh>
#include <stdexcept>
#include <string>

namespace ringrelay::auth {
namespace {

using namespace std::string_literals;

std::string unhex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string encoded(std::string_view iterations, std::string_view salt, std::string_view hash) {
  return "pbkdf2-sha256$" + std::string(iterations) + "$" + base64_encode(salt) + "$" +
         base64_encode(hash);
}

// The PBKDF2-HMAC-SHA256 vector with c = 4096 and a 36-octet salt (from
// the widely used set that extends RFC 6070 to SHA-256); the first 32
// octets of its 40-octet output are the 32-octet output.
const std::string vector_password = "passwordPASSWORDpassword";
const std::string vector_salt = "saltSALTsaltSALTsaltSALTsaltSALTsalt";
const std::string vector_hash =
    unhex("348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1");

TEST(password, matches_a_published_pbkdf2_vector) {
  const auto stored = encoded("4096", vector_salt, vector_hash);
  EXPECT_EQ(password_hash_problem(stored), "");
  EXPECT_EQ(verify_password(vector_password, stored), verify_result::match);
  EXPECT_EQ(verify_password("passwordPASSWORDpassworD", stored), verify_result::mismatch);
}

TEST(password, round_trip) {
  const std::string passwords[] = {
      "correct horse battery staple", "", "x", "p\0ss"s, "\xff\xfe\x80 utf-8: \xc3\xa9",
      std::string(1000, 'a'),  // longer than an HMAC block: hashed first
  };
  for (const auto& pw : passwords) {
    const auto stored = hash_password(pw, min_iterations);
    SCOPED_TRACE(stored);
    EXPECT_TRUE(stored.starts_with("pbkdf2-sha256$1000$"));
    EXPECT_EQ(password_hash_problem(stored), "");
    EXPECT_EQ(verify_password(pw, stored), verify_result::match);
    EXPECT_EQ(verify_password(pw + "x", stored), verify_result::mismatch);
    EXPECT_EQ(verify_password(pw.substr(0, pw.size() / 2), stored),
              pw.empty() ? verify_result::match : verify_result::mismatch);
  }
}

TEST(password, salts_are_fresh_and_sized) {
  const auto a = hash_password("same", min_iterations);
  const auto b = hash_password("same", min_iterations);
  EXPECT_NE(a, b);
  // pbkdf2-sha256$1000$ + 24 characters of salt + $ + 44 of hash
  EXPECT_EQ(a.size(), 14 + 5 + 24 + 1 + 44);
  std::string salt;
  ASSERT_TRUE(base64_decode(a.substr(19, 24), salt));
  EXPECT_EQ(salt.size(), salt_size);
}

TEST(password, default_iterations) {
  const auto stored = hash_password("pw");
  EXPECT_TRUE(stored.starts_with("pbkdf2-sha256$" + std::to_string(default_iterations) + "$"));
  EXPECT_EQ(verify_password("pw", stored), verify_result::match);
  dummy_verification("pw");  // the same work, no result
}

TEST(password, refuses_iteration_counts_out_of_range) {
  EXPECT_THROW(hash_password("pw", min_iterations - 1), std::invalid_argument);
  EXPECT_THROW(hash_password("pw", max_iterations + 1), std::invalid_argument);
}

TEST(password, reports_malformed_encodings) {
  const std::string salt = base64_encode("0123456789abcdef");
  const std::string hash = base64_encode(std::string(32, 'h'));
  const std::string format =
      "expected pbkdf2-sha256$ITERATIONS$SALT$HASH (ringrelayctl user passwd makes one)";
  const std::string count = "the iteration count must be a number from 1000 to 10000000";
  const std::string salt_size_msg = "the salt must be 8 to 64 octets in base64";
  const std::string hash_size_msg = "the hash must be 32 octets in base64";
  const std::pair<std::string, std::string> cases[] = {
      {"", format},
      {"secret", format},
      {"pbkdf2-sha1$1000$" + salt + "$" + hash, format},
      {"PBKDF2-SHA256$1000$" + salt + "$" + hash, format},
      {"pbkdf2-sha256$1000$" + salt, format},
      {"pbkdf2-sha256$1000$" + salt + "$", format},
      {"pbkdf2-sha256$1000$" + salt + "$" + hash + "$", format},
      {"pbkdf2-sha256$1000$" + salt + "$" + hash + "$x", format},
      {"pbkdf2-sha256$$" + salt + "$" + hash, format},
      {"pbkdf2-sha256$1000$$" + hash, format},
      {"pbkdf2-sha256$999$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$01000$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$+1000$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$1000x$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$10000001$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$99999999999999999999$" + salt + "$" + hash, count},
      {"pbkdf2-sha256$1000$" + base64_encode("1234567") + "$" + hash, salt_size_msg},
      {"pbkdf2-sha256$1000$" + base64_encode(std::string(65, 's')) + "$" + hash, salt_size_msg},
      {"pbkdf2-sha256$1000$" + salt.substr(0, salt.size() - 2) + "$" + hash, salt_size_msg},
      {"pbkdf2-sha256$1000$" + salt + "$" + base64_encode(std::string(31, 'h')), hash_size_msg},
      {"pbkdf2-sha256$1000$" + salt + "$" + base64_encode(std::string(33, 'h')), hash_size_msg},
      {"pbkdf2-sha256$1000$" + salt + "$" + hash.substr(1), hash_size_msg},
      {"pbkdf2-sha256$1000$" + salt + "$" + hash + "\n", hash_size_msg},
  };
  for (const auto& [stored, problem] : cases) {
    EXPECT_EQ(password_hash_problem(stored), problem) << stored;
    EXPECT_EQ(verify_password("pw", stored), verify_result::malformed) << stored;
  }
}

}  // namespace
}  // namespace ringrelay::auth
