// AVX2 block walker. The target pragmas, rather than a -mavx2 flag for the
// file, limit AVX2 code to what is defined below them: the standard headers
// are included first, so no inline library function compiled for AVX2 can be
// picked by the linker for callers on CPUs without it. Only called after
// __builtin_cpu_supports("avx2") (data_scanner.cc).
#include <immintrin.h>

#include "data_scanner_simd.hh"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

#include "data_scanner_blocks.hh"

namespace ringrelay::smtp::detail {
namespace {

struct avx2_classify {
  static std::uint64_t half(__m256i v, char c) {
    return static_cast<std::uint32_t>(
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c))));
  }

  static block_masks classify(const char* p) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    return {
        .cr = half(lo, '\r') | half(hi, '\r') << 32,
        .lf = half(lo, '\n') | half(hi, '\n') << 32,
        .dot = half(lo, '.') | half(hi, '.') << 32,
        .high = static_cast<std::uint32_t>(_mm256_movemask_epi8(lo)) |
                static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm256_movemask_epi8(hi)))
                    << 32,
    };
  }
};

}  // namespace

void scan_avx2(block_scan& s) {
  block_walker<avx2_classify>(s).run();
}

}  // namespace ringrelay::smtp::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
