// Private to smtp/data_scanner: the interface between the scanner's state
// machine (data_scanner.cc) and its vectorised block walkers, one translation
// unit per instruction set (data_scanner_sse2.cc, data_scanner_avx2.cc).
//
// A walker scans one input from a plain line state (no held-back octets: the
// caller resolves those first) and stops at the end of data, at octets to hold
// back, or at the end of the input. It only fills `block_scan`; the caller
// turns that into the scanner's counters. Plain data and builtins only, so
// the AVX2 unit never emits an inline function the rest of the program links.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringrelay::smtp::detail {

struct block_scan {
  // In.
  const char* data;
  std::size_t size;
  std::uint32_t max_line;
  bool dots;  // DATA mode: look for stuffing dots and the terminator
  // In and out: the line state at the start / end of the input.
  bool after_cr;
  bool line_start;
  std::uint64_t line_len;
  // Out.
  std::size_t body;
  std::size_t consumed;
  std::uint64_t stuffed;  // stuffing dots within `body`
  std::uint8_t held;      // 1: "." held back, 2: ".\r" held back
  bool end;
  bool bare;
  bool long_line;
  bool eight_bit;
};

void scan_sse2(block_scan& s);
void scan_avx2(block_scan& s);

}  // namespace ringrelay::smtp::detail
