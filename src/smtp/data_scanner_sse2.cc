// SSE2 block walker: part of baseline x86-64, so it needs no target flag.
#include <emmintrin.h>

#include "data_scanner_blocks.hh"

namespace ringrelay::smtp::detail {
namespace {

struct sse2_classify {
  static std::uint64_t quarter(__m128i v, char c) {
    return static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c))));
  }

  static block_masks classify(const char* p) {
    block_masks m{};
    for (unsigned q = 0; q < 4; ++q) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * q));
      const unsigned shift = 16 * q;
      m.cr |= quarter(v, '\r') << shift;
      m.lf |= quarter(v, '\n') << shift;
      m.dot |= quarter(v, '.') << shift;
      m.high |= static_cast<std::uint64_t>(static_cast<std::uint16_t>(_mm_movemask_epi8(v)))
                << shift;
    }
    return m;
  }
};

}  // namespace

void scan_sse2(block_scan& s) {
  block_walker<sse2_classify>(s).run();
}

}  // namespace ringrelay::smtp::detail
