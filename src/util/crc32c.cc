#include <array>
#include <cstring>
#include <ringrelay/util/crc32c.hh>

namespace ringrelay::util {
namespace {

constexpr std::uint32_t poly_reflected = 0x82f63b78u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ poly_reflected : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr auto table = make_table();

// Advancing a CRC register over n zero bytes is linear in the register, so
// for a fixed n it is four table lookups, one per register byte. The tables
// are built at compile time by running the byte-wise register update over n
// zeros from each register bit.
class zero_shift {
 public:
  constexpr explicit zero_shift(std::size_t n) {
    std::array<std::uint32_t, 32> bit{};
    for (int i = 0; i < 32; ++i) {
      std::uint32_t c = 1u << i;
      for (std::size_t k = 0; k < n; ++k) c = table[c & 0xff] ^ (c >> 8);
      bit[static_cast<std::size_t>(i)] = c;
    }
    for (std::size_t k = 0; k < 4; ++k)
      for (std::uint32_t b = 0; b < 256; ++b) {
        std::uint32_t c = 0;
        for (std::size_t j = 0; j < 8; ++j)
          if (b & (1u << j)) c ^= bit[8 * k + j];
        _by_byte[k][b] = c;
      }
  }

  constexpr std::uint32_t operator()(std::uint32_t c) const {
    return _by_byte[0][c & 0xff] ^ _by_byte[1][(c >> 8) & 0xff] ^ _by_byte[2][(c >> 16) & 0xff] ^
           _by_byte[3][c >> 24];
  }

 private:
  std::array<std::array<std::uint32_t, 256>, 4> _by_byte{};
};

// Spans of 3 x 4 KiB cover most of a 16 KiB receive buffer; 3 x 256 the rest
// of it but for a few bytes.
constexpr std::size_t long_block = 4096;
constexpr std::size_t short_block = 256;
constexpr zero_shift long_shift(long_block);
constexpr zero_shift short_shift(short_block);

// The hardware path. The crc32 instruction takes 8 bytes, with a latency of
// three cycles but one started every cycle, so three independent registers
// run over three consecutive blocks and are joined after: the first is
// advanced over a block of zeros and xored into the second, and that into
// the third. The attribute lets these functions use SSE4.2 while the rest of
// the build targets baseline x86-64.
__attribute__((target("sse4.2"))) std::uint64_t three_blocks(std::uint64_t c,
                                                             const unsigned char*& p,
                                                             std::size_t& len, std::size_t block,
                                                             const zero_shift& shift) {
  while (len >= 3 * block) {
    std::uint64_t c1 = 0;
    std::uint64_t c2 = 0;
    for (std::size_t i = 0; i < block; i += 8) {
      std::uint64_t v0;
      std::uint64_t v1;
      std::uint64_t v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + block + i, 8);
      std::memcpy(&v2, p + 2 * block + i, 8);
      c = __builtin_ia32_crc32di(c, v0);
      c1 = __builtin_ia32_crc32di(c1, v1);
      c2 = __builtin_ia32_crc32di(c2, v2);
    }
    c = shift(shift(static_cast<std::uint32_t>(c)) ^ static_cast<std::uint32_t>(c1)) ^
        static_cast<std::uint32_t>(c2);
    p += 3 * block;
    len -= 3 * block;
  }
  return c;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(std::uint32_t crc, const void* data,
                                                          std::size_t len) {
  auto p = static_cast<const unsigned char*>(data);
  std::uint64_t c = ~crc;
  c = three_blocks(c, p, len, long_block, long_shift);
  c = three_blocks(c, p, len, short_block, short_shift);
  while (len >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    len -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

bool have_sse42() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}

}  // namespace

std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t len) {
  auto p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (len--) c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t len) {
  return have_sse42() ? crc32c_hw(crc, data, len) : crc32c_portable(crc, data, len);
}

}  // namespace ringrelay::util
