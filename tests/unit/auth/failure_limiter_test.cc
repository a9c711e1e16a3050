// The brute-force limiter: delays, blocks, windows, per-address isolation,
// address keys, and bounded memory under a flood of addresses.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <ringrelay/auth/failure_limiter.hh>
#include <string>

namespace ringrelay::auth {
namespace {

client_key key(const char* text) {
  auto k = client_key::from_string(text);
  EXPECT_TRUE(k) << text;
  return k.value_or(client_key{});
}

TEST(failure_limiter, slows_then_blocks) {
  failure_limiter lim;  // 3 free, doubling from 1 s to 16 s, 10 in 15 min blocks
  const auto a = key("192.0.2.1");
  const failure_verdict expected[] = {{0, false},     {0, false},    {0, false},    {1000, false},
                                      {2000, false},  {4000, false}, {8000, false}, {16000, false},
                                      {16000, false}, {0, true}};
  std::int64_t now = 1000;
  for (const auto& e : expected) {
    EXPECT_FALSE(lim.blocked(a, now));
    const auto v = lim.record_failure(a, now);
    EXPECT_EQ(v.delay_ms, e.delay_ms) << "at " << now;
    EXPECT_EQ(v.blocked, e.blocked) << "at " << now;
    now += 1000;
  }
  const std::int64_t blocked_at = now - 1000;
  EXPECT_TRUE(lim.blocked(a, now));
  EXPECT_TRUE(lim.record_failure(a, now).blocked);
  EXPECT_TRUE(lim.blocked(a, blocked_at + 15 * 60 * 1000 - 1));
  // The block lasts one window from the blocking failure, then the count
  // starts again.
  EXPECT_FALSE(lim.blocked(a, blocked_at + 15 * 60 * 1000));
  const auto after = lim.record_failure(a, blocked_at + 15 * 60 * 1000);
  EXPECT_EQ(after.delay_ms, 0);
  EXPECT_FALSE(after.blocked);
}

TEST(failure_limiter, windows_expire) {
  limiter_config cfg;
  cfg.free_failures = 1;
  cfg.max_failures = 3;
  cfg.window_ms = 10000;
  cfg.first_delay_ms = 500;
  failure_limiter lim(cfg);
  const auto a = key("192.0.2.1");
  struct step {
    std::int64_t now;
    failure_verdict verdict;
  };
  const step steps[] = {
      {0, {0, false}},                             // window 0..10000 opens
      {5000, {500, false}},                        // second in the window
      {10000, {0, false}},                         // the window is over: first again
      {19999, {500, false}},                       // second
      {19999, {0, true}},                          // third: blocked until 29999
      {29998, {0, true}},    {29999, {0, false}},  // the block is over
  };
  for (const auto& s : steps) {
    const auto v = lim.record_failure(a, s.now);
    EXPECT_EQ(v.delay_ms, s.verdict.delay_ms) << "at " << s.now;
    EXPECT_EQ(v.blocked, s.verdict.blocked) << "at " << s.now;
  }
}

TEST(failure_limiter, other_clients_are_unaffected) {
  limiter_config cfg;
  cfg.max_failures = 2;
  failure_limiter lim(cfg);
  const auto bad = key("192.0.2.1");
  lim.record_failure(bad, 0);
  EXPECT_TRUE(lim.record_failure(bad, 0).blocked);
  for (const char* other : {"192.0.2.2", "10.0.0.1", "2001:db8::1", "2001:db8:0:1::1"}) {
    EXPECT_FALSE(lim.blocked(key(other), 1)) << other;
    EXPECT_FALSE(lim.record_failure(key(other), 1).blocked) << other;
  }
  EXPECT_TRUE(lim.blocked(bad, 1));
}

TEST(failure_limiter, address_keys) {
  // IPv6 addresses count by /64; IPv4-mapped IPv6 is IPv4.
  EXPECT_EQ(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  EXPECT_NE(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
  EXPECT_EQ(key("::ffff:192.0.2.1"), key("192.0.2.1"));
  EXPECT_NE(key("192.0.2.1"), key("192.0.2.2"));
  EXPECT_EQ(key("fe80::1%eth0"), key("fe80::2"));
  EXPECT_NE(key("::"), key("0.0.0.0"));
  for (const char* bad : {"", "localhost", "192.0.2", "192.0.2.1:25", "[::1]", "::g"})
    EXPECT_FALSE(client_key::from_string(bad)) << bad;

  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.1", &in.sin_addr);
  EXPECT_EQ(client_key::from_sockaddr(reinterpret_cast<sockaddr*>(&in)), key("192.0.2.1"));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.0.2.1", &in6.sin6_addr);
  EXPECT_EQ(client_key::from_sockaddr(reinterpret_cast<sockaddr*>(&in6)), key("192.0.2.1"));
  inet_pton(AF_INET6, "2001:db8::5", &in6.sin6_addr);
  EXPECT_EQ(client_key::from_sockaddr(reinterpret_cast<sockaddr*>(&in6)), key("2001:db8::9"));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(client_key::from_sockaddr(reinterpret_cast<sockaddr*>(&un)));
  EXPECT_FALSE(client_key::from_sockaddr(nullptr));
}

TEST(failure_limiter, a_flood_of_addresses_keeps_memory_and_blocks) {
  limiter_config cfg;
  cfg.capacity = 8;  // one set: every address competes for the same entries
  cfg.max_failures = 3;
  failure_limiter lim(cfg);
  EXPECT_EQ(lim.config().capacity, 8u);
  const auto attacker = key("198.51.100.7");
  for (int i = 0; i < 3; ++i) lim.record_failure(attacker, 0);
  ASSERT_TRUE(lim.blocked(attacker, 1));
  // Thousands of other addresses fail once each: blocks are evicted last.
  for (int i = 0; i < 5000; ++i) {
    const std::string a =
        "10." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + ".1";
    lim.record_failure(key(a.c_str()), 1 + i);
  }
  EXPECT_TRUE(lim.blocked(attacker, 6000));
  // Capacity rounds up to whole sets.
  limiter_config odd;
  odd.capacity = 100;
  EXPECT_EQ(failure_limiter(odd).config().capacity, 128u);
}

TEST(failure_limiter, idle_entries_are_reused_first) {
  limiter_config cfg;
  cfg.capacity = 8;
  cfg.max_failures = 2;
  cfg.window_ms = 100;
  failure_limiter lim(cfg);
  const auto a = key("192.0.2.1");
  lim.record_failure(a, 0);
  // Eight others in a later window fill the set; a's window is over, so a
  // is the one replaced, and the others keep their counts.
  for (int i = 0; i < 8; ++i)
    lim.record_failure(key(("10.0.0." + std::to_string(i + 1)).c_str()), 200);
  for (int i = 0; i < 7; ++i) {
    EXPECT_TRUE(lim.record_failure(key(("10.0.0." + std::to_string(i + 2)).c_str()), 201).blocked)
        << i;
  }
}

}  // namespace
}  // namespace ringrelay::auth
