#include <gtest/gtest.h>

#include <random>
#include <ringrelay/util/crc32c.hh>
#include <string>

namespace ringrelay::util {
namespace {

TEST(crc32c, known_vectors) {
  // RFC 3720 B.4 test vectors.
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(0, zeros.data(), zeros.size()), 0x8a9136aau);
  std::string ones(32, '\xff');
  EXPECT_EQ(crc32c(0, ones.data(), ones.size()), 0x62a8ab43u);
  EXPECT_EQ(crc32c(0, "123456789", 9), 0xe3069283u);
}

TEST(crc32c, hardware_matches_portable_at_every_length_and_split) {
  std::mt19937 rng(7);
  std::string data(300, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  for (size_t len = 0; len <= data.size(); ++len) {
    auto whole = crc32c(0, data.data(), len);
    ASSERT_EQ(whole, crc32c_portable(0, data.data(), len)) << len;
    size_t split = len / 3;
    ASSERT_EQ(whole, crc32c(crc32c(0, data.data(), split), data.data() + split, len - split));
  }
}

}  // namespace
}  // namespace ringrelay::util
