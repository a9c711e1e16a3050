// Strict base64: RFC 4648's test vectors, and every way an input can fail
// to be the one canonical encoding.
#include <gtest/gtest.h>

#include <ringrelay/auth/base64.hh>
#include <string>
#include <string_view>

namespace ringrelay::auth {
namespace {

using namespace std::string_literals;

TEST(base64, rfc4648_vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    std::string out;
    EXPECT_TRUE(base64_decode(encoded, out)) << encoded;
    EXPECT_EQ(out, plain);
  }
}

TEST(base64, refuses_everything_but_the_canonical_form) {
  const std::string_view bad[] = {
      "Zg",        // no padding
      "Zg=",       // short padding
      "Zm9",       // length not a multiple of 4
      "Zh==",      // non-zero bits in the padding (canonical: Zg==)
      "Zm9=",      // Zm8= is canonical
      "Zm9vY",     // a lone character
      "=Zm9",      // padding first
      "Z=9v",      // padding inside
      "Zg==Zg==",  // padding inside (two encodings concatenated)
      "Zg===",     // three pads
      "====",      // nothing but padding
      "Zm9 v",     // whitespace
      "Zm9v\r\n",  // a line break
      " Zm9v",     // leading space
      "Zm9v ",     // trailing space
      "Zm-v",      // base64url alphabet
      "Zm_v",
  };
  for (auto in : bad) {
    std::string out;
    EXPECT_FALSE(base64_decode(in, out)) << '"' << in << '"';
  }
  std::string out;
  EXPECT_FALSE(base64_decode("Zm9\0"s, out));  // a NUL
  EXPECT_FALSE(base64_decode("Zg=\0"s, out));
  EXPECT_FALSE(base64_decode("Zm9v\xff\xff\xff\xff"s, out));
}

TEST(base64, round_trips_every_octet_and_length) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  for (std::size_t n = 0; n <= all.size(); ++n) {
    const std::string plain = all.substr(all.size() - n) + all.substr(0, n % 7);
    const std::string encoded = base64_encode(plain);
    EXPECT_EQ(encoded.size() % 4, 0u);
    std::string out = "prefix";
    ASSERT_TRUE(base64_decode(encoded, out)) << encoded;
    EXPECT_EQ(out, "prefix" + plain);  // decode appends
    const std::size_t pad = encoded.empty() ? 0
                                            : (encoded.ends_with("==")  ? 2
                                               : encoded.ends_with('=') ? 1
                                                                        : 0);
    EXPECT_EQ(base64_decoded_size(encoded.size(), pad), plain.size());
  }
}

}  // namespace
}  // namespace ringrelay::auth
