#include <gtest/gtest.h>

#include <random>
#include <ringrelay/spool/envelope.hh>
#include <string>

namespace ringrelay::spool {
namespace {

std::span<const char> span_of(const std::string& s) {
  return {s.data(), s.size()};
}

envelope typical() {
  envelope e;
  e.eight_bit = true;
  e.body_8bitmime = true;
  e.received_at = 1'800'000'000;
  e.size = 12345;
  e.wire_size = 12350;
  e.relays = 3;
  e.day = 20833;
  e.quota_relays = 2;
  e.block_relays = 1;
  e.account = "acme";
  e.helo = "mail.acme.example";
  e.client_address = "[192.0.2.7]:51234";
  e.sender = "news@acme.example";
  e.recipients = {"a@example.com", "b@example.org", "c@example.net"};
  return e;
}

std::vector<envelope> cases() {
  std::vector<envelope> out;
  out.push_back(envelope{});  // every field empty or zero
  out.push_back(typical());
  auto e = typical();
  e.body_is_raw = e.smtputf8 = e.helo_greeting = true;
  e.eight_bit = e.body_8bitmime = false;
  e.sender.clear();  // null sender: a bounce
  e.received_at = -1;
  e.size = e.wire_size = ~0ull;
  e.relays = e.day = e.quota_relays = e.block_relays = ~0u;
  e.recipients = {"", "ünïcode@exämple.com", std::string(300, 'x')};
  e.tls_info = "TLS1.3 TLS_AES_256_GCM_SHA384";
  e.auth_info = "acme";
  out.push_back(e);
  e = typical();
  e.recipients.assign(1000, "r@example.com");
  out.push_back(e);
  return out;
}

TEST(envelope, round_trips) {
  for (const auto& e : cases()) {
    auto bytes = encode(e);
    envelope back;
    ASSERT_TRUE(decode(span_of(bytes), back)) << e.recipients.size();
    EXPECT_EQ(back, e);
    std::string appended = "prefix";
    encode(e, appended);
    EXPECT_EQ(appended, "prefix" + bytes);
  }
}

TEST(envelope, rejects_every_truncation_and_trailing_octets) {
  for (const auto& e : cases()) {
    auto bytes = encode(e);
    envelope back;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      // A fresh copy per length: ASan then sees any read past the end.
      std::string cut = bytes.substr(0, n);
      ASSERT_FALSE(decode(span_of(cut), back)) << n;
    }
    EXPECT_FALSE(decode(span_of(bytes + '\0'), back));
  }
}

TEST(envelope, rejects_unknown_versions_and_flags) {
  auto bytes = encode(typical());
  envelope back;
  struct {
    const char* name;
    std::size_t at;
    char value;
  } cases[] = {
      {"version 1", 0, 1},     {"version 3", 0, 3},       {"version high byte", 1, 1},
      {"flag bit 5", 2, 0x20}, {"flag bit 7", 2, '\x80'},
  };
  for (const auto& c : cases) {
    auto bad = bytes;
    bad[c.at] = c.value;
    EXPECT_FALSE(decode(span_of(bad), back)) << c.name;
  }
}

TEST(envelope, a_huge_recipient_count_is_refused_before_allocating) {
  envelope e;
  auto bytes = encode(e);
  // The count follows 2+1+8+8+8+4+4+4+4 octets and four empty strings.
  std::size_t at = 43 + 16;
  ASSERT_EQ(bytes.substr(at, 4), std::string(4, '\0'));
  bytes.replace(at, 4, "\xff\xff\xff\xff");
  envelope back;
  EXPECT_FALSE(decode(span_of(bytes), back));
}

TEST(envelope, random_corruption_never_crashes) {
  std::mt19937 rng(1870);
  std::size_t accepted = 0;
  for (const auto& e : cases()) {
    auto bytes = encode(e);
    for (int round = 0; round < 2000; ++round) {
      auto bad = bytes;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) {
        bad[rng() % bad.size()] = static_cast<char>(rng());
      }
      bad.resize(rng() % (bad.size() + 1));
      envelope back;
      // Some corruptions still decode (a changed character in a string);
      // what matters is that none reads out of bounds or throws.
      accepted += decode(span_of(bad), back);
    }
  }
  EXPECT_LT(accepted, 4u * 2000u);
}

}  // namespace
}  // namespace ringrelay::spool
