#include <gtest/gtest.h>

#include <ringrelay/tls/tls.hh>
#include <string>

namespace ringrelay::tls {
namespace {

// A throwaway self-signed P-256 certificate made for these tests only.
const std::string dir = RR_TEST_DIR;

// Moves pending ciphertext both ways until neither side has any.
void shuttle(session& a, session& b) {
  for (int i = 0; i < 100 && (!a.ciphertext().empty() || !b.ciphertext().empty()); ++i) {
    b.push_ciphertext(a.ciphertext());
    a.ciphertext().clear();
    a.push_ciphertext(b.ciphertext());
    b.ciphertext().clear();
    a.handshake();
    b.handshake();
  }
}

struct pair_fixture : ::testing::Test {
  std::unique_ptr<context> server_ctx =
      context::server(dir + "/test_cert.pem", dir + "/test_key.pem");
  std::unique_ptr<context> client_ctx = context::client();
  session server{*server_ctx};
  session client{*client_ctx};

  void handshake() {
    EXPECT_EQ(client.handshake(), status::want);
    shuttle(client, server);
    ASSERT_TRUE(client.established()) << client.error_text();
    ASSERT_TRUE(server.established()) << server.error_text();
  }
};

TEST_F(pair_fixture, handshake_negotiates_tls13_with_an_aead_suite) {
  handshake();
  EXPECT_EQ(server.version(), "TLSv1.3");
  EXPECT_NE(server.cipher().find("GCM"), std::string::npos) << server.cipher();
}

TEST_F(pair_fixture, plaintext_crosses_both_ways_in_pieces) {
  handshake();
  std::string msg = "EHLO client.example\r\n" + std::string(40000, 'x');
  ASSERT_EQ(client.write(msg), status::ok);
  // Deliver the ciphertext one octet at a time: the session must cope.
  std::string cipher = std::move(client.ciphertext());
  client.ciphertext().clear();
  std::string got;
  char buf[4096];
  for (char c : cipher) {
    server.push_ciphertext({&c, 1});
    std::size_t n;
    while (server.read(buf, sizeof buf, n) == status::ok) got.append(buf, n);
  }
  EXPECT_EQ(got, msg);
  ASSERT_EQ(server.write(std::string("250 ok\r\n")), status::ok);
  client.push_ciphertext(server.ciphertext());
  std::size_t n;
  ASSERT_EQ(client.read(buf, sizeof buf, n), status::ok);
  EXPECT_EQ(std::string(buf, n), "250 ok\r\n");
}

TEST_F(pair_fixture, close_notify_is_reported_as_closed) {
  handshake();
  client.shutdown();
  server.push_ciphertext(client.ciphertext());
  char buf[64];
  std::size_t n;
  EXPECT_EQ(server.read(buf, sizeof buf, n), status::closed);
}

TEST_F(pair_fixture, garbage_instead_of_a_client_hello_is_an_error) {
  std::string junk = "EHLO plaintext.example\r\nMAIL FROM:<a@b>\r\n";
  server.push_ciphertext(junk);
  EXPECT_EQ(server.handshake(), status::error);
  EXPECT_FALSE(server.error_text().empty());
}

TEST(tls_context, missing_files_name_the_key_and_file) {
  try {
    context::server("/nonexistent/cert.pem", "/nonexistent/key.pem");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(
        std::string(e.what()).find("tls.cert /nonexistent/cert.pem: No such file or directory"),
        std::string::npos)
        << e.what();
  }
}

TEST(tls_context, a_missing_key_is_named_with_the_reason) {
  try {
    context::server(dir + "/test_cert.pem", "/nonexistent/key.pem");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tls.key /nonexistent/key.pem: No such file or directory"),
              std::string::npos)
        << e.what();
  }
}

TEST(tls_context, a_readable_file_that_is_no_certificate_says_pem_expected) {
  try {
    context::server(dir + "/test_key.pem", dir + "/test_key.pem");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot load the certificate chain (PEM expected)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ringrelay::tls
