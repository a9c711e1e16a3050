#include <gtest/gtest.h>

#include <random>
#include <ringrelay/util/crc32c.hh>
#include <string>
#include <vector>

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

// Inputs of 768 octets and more go three blocks at a time (3 x 256, 3 x 4096)
// and are joined by the zero-shift tables: every length around those block
// edges, from unaligned starts too, must still give the portable value.
TEST(crc32c, interleaved_blocks_match_portable_around_every_block_edge) {
  std::mt19937 rng(11);
  std::string data(3 * 3 * 4096 + 64, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::vector<size_t> lengths;
  for (size_t edge : {size_t{768}, size_t{2 * 768}, size_t{12288}, size_t{12288 + 768},
                      size_t{2 * 12288}, size_t{3 * 12288}})
    for (size_t d = 0; d <= 18; ++d) {
      lengths.push_back(edge + d);
      lengths.push_back(edge - d);
    }
  for (int i = 0; i < 200; ++i) lengths.push_back(rng() % (data.size() - 8));
  for (size_t len : lengths)
    for (size_t start : {0, 1, 3, 7}) {
      if (start + len > data.size()) continue;
      const char* p = data.data() + start;
      auto whole = crc32c(0, p, len);
      ASSERT_EQ(whole, crc32c_portable(0, p, len)) << len << " from " << start;
      size_t split = len / 2 + 5 < len ? len / 2 + 5 : len;
      ASSERT_EQ(whole, crc32c(crc32c(0, p, split), p + split, len - split)) << len;
    }
}

}  // namespace
}  // namespace ringrelay::util
