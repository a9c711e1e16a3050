// The accounts loader with the real password check: the example in
// docs/accounts.md loads, and its password logs in.
#include <gtest/gtest.h>

#include <fstream>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/config/config.hh>
#include <sstream>
#include <string>

namespace ringrelay::auth {
namespace {

std::string documented_users_json() {
  std::ifstream in(std::string(RR_SOURCE_ROOT) + "/docs/accounts.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const auto start = doc.find("```json\n");
  const auto end = doc.find("```", start + 8);
  EXPECT_NE(start, std::string::npos) << "docs/accounts.md has no ```json block";
  if (start == std::string::npos || end == std::string::npos) return "";
  return doc.substr(start + 8, end - start - 8);
}

TEST(users_file, the_documented_example_loads_and_logs_in) {
  accounts::counter_store store;
  auto t = accounts::from_json(documented_users_json(), "docs/accounts.md", store,
                               password_hash_problem);
  const auto* acme = t->find("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(verify_password("correct horse battery staple", acme->password), verify_result::match);
}

TEST(users_file, a_malformed_hash_is_refused_with_the_user_named) {
  accounts::counter_store store;
  const std::string json = R"({"users": [{"username": "bob", "password": "pbkdf2-sha256$1000$)"
                           R"(c2FsdHNhbHQ=$aGFzaA==", "created_at": "2026-11-28T12:00:00Z", )"
                           R"("daily_quota": 1}]})";
  try {
    accounts::from_json(json, "conf/users.json", store, password_hash_problem);
    FAIL() << "loaded";
  } catch (const config::config_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "conf/users.json: users.0.password: the hash must be 32 octets in base64 (user "
              "\"bob\")");
  }
}

}  // namespace
}  // namespace ringrelay::auth
