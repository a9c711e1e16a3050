// Private to smtp/data_scanner: the block walker the SIMD units share. Each
// unit includes this file after selecting its instruction set (the AVX2 unit
// inside a target pragma) and instantiates the walker with its own
// classifier; internal linkage keeps the per-set copies apart.
//
// A block is 64 octets seen as bit masks (bit i = octet i). Per block the
// common case is a few mask operations: CR, LF and line starts come from
// shifts carried across blocks, bare CR/LF is one XOR, long lines are checked
// by the distance between line ends. Only a "." at a line start, which is
// rare in mail text, is looked at octet by octet; a block with a stuffing dot
// also measures its lines a little more slowly, as such a line is one octet
// shorter than its span (RFC 5321 4.5.3.1.6 does not count the dot).
#pragma once

#include "data_scanner_simd.hh"

namespace ringrelay::smtp::detail {
namespace {

struct block_masks {
  std::uint64_t cr;
  std::uint64_t lf;
  std::uint64_t dot;
  std::uint64_t high;  // octets above 0x7f
};

constexpr unsigned block_size = 64;

inline std::uint64_t low_bits(unsigned n) {
  return n >= block_size ? ~0ull : (1ull << n) - 1;
}

// Classify::classify(p) returns the masks of the 64 octets at p.
template <class Classify>
class block_walker {
 public:
  explicit block_walker(block_scan& s)
      : _s(s), _after_cr(s.after_cr), _line_start(s.line_start), _line_len(s.line_len) {}

  void run() {
    const char* p = _s.data;
    std::size_t left = _s.size;
    bool more = true;
    for (; more && left >= block_size; p += block_size, left -= block_size) {
      more = block(p, block_size, left);
    }
    if (more && left > 0) {
      // The last partial block is copied so the classifier can load 64
      // octets; the zero padding matches none of the octets looked for.
      char tail[block_size] = {};
      __builtin_memcpy(tail, p, left);
      block(tail, static_cast<unsigned>(left), left);
    }
    _s.body = _done;
    _s.consumed = _s.end ? _done + 3 : _s.size;
    _s.stuffed = _stuffed;
    _s.after_cr = _after_cr;
    _s.line_start = _line_start;
    _s.line_len = _line_len;
    _s.bare = _bare != 0;
    _s.long_line = _long_line;
    _s.eight_bit = _high != 0;
  }

 private:
  // Scans the first n octets at p; `avail` octets of input start at p, so
  // octets past the block can be peeked at. Returns false when the walk
  // stops in this block (end of data or octets held back).
  [[gnu::always_inline]] bool block(const char* p, unsigned n, std::size_t avail) {
    const block_masks m = Classify::classify(p);
    const std::uint64_t after_cr = m.cr << 1 | static_cast<std::uint64_t>(_after_cr);
    const std::uint64_t eol = m.lf & after_cr;
    unsigned keep = n;
    std::uint64_t stuffed = 0;  // stuffing dots among the first `keep` octets
    if (_s.dots) {
      const std::uint64_t dot_at_start =
          m.dot & (eol << 1 | static_cast<std::uint64_t>(_line_start));
      if (dot_at_start != 0) keep = line_start_dots(p, dot_at_start, n, avail, stuffed);
    }
    const std::uint64_t valid = low_bits(keep);
    // A LF not after a CR, or an octet after a CR that is not a LF: the bare
    // CR is seen one octet late, which carries across blocks for free.
    _bare |= (m.lf ^ after_cr) & valid;
    _high |= m.high & valid;
    count_lines(keep, eol & valid, stuffed);
    _done += keep;
    if (keep < n) return false;
    _after_cr = (m.cr >> (n - 1)) & 1;
    _line_start = (eol >> (n - 1)) & 1;
    return true;
  }

  // Walks the dots at line starts in order; returns how many octets of the
  // block are body (n unless the walk stops at one of the dots) and sets the
  // bits of the stuffing dots among them in `stuffed`.
  unsigned line_start_dots(const char* p, std::uint64_t dots, unsigned n, std::size_t avail,
                           std::uint64_t& stuffed) {
    for (; dots != 0; dots &= dots - 1) {
      const unsigned i = static_cast<unsigned>(__builtin_ctzll(dots));
      if (i + 1 == avail) return stop_held(i, 1);
      if (p[i + 1] == '\r') {
        if (i + 2 == avail) return stop_held(i, 2);
        if (p[i + 2] == '\n') {
          _s.end = true;
          return i;
        }
      }
      ++_stuffed;
      stuffed |= 1ull << i;
    }
    return n;
  }

  unsigned stop_held(unsigned i, std::uint8_t held) {
    _s.held = held;
    return i;
  }

  // A line is too long once its octets, CRLF included and a stuffing dot
  // not, pass max_line; `_line_len` never counts the dot. Lines that start
  // and end inside one block are shorter than 64 octets, so with the usual
  // limits only the first line end of a block needs a look.
  [[gnu::always_inline]] void count_lines(unsigned n, std::uint64_t eol, std::uint64_t stuffed) {
    if (stuffed != 0) [[unlikely]] {
      count_stuffed_lines(n, eol, stuffed);
      return;
    }
    if (eol != 0) {
      unsigned prev = static_cast<unsigned>(__builtin_ctzll(eol));
      _long_line |= _line_len + prev + 1 > _s.max_line;
      if (_s.max_line < block_size) {
        for (std::uint64_t rest = eol & (eol - 1); rest != 0; rest &= rest - 1) {
          const unsigned i = static_cast<unsigned>(__builtin_ctzll(rest));
          _long_line |= i - prev > _s.max_line;
          prev = i;
        }
      }
      _line_len = n - 1 - (63 - static_cast<unsigned>(__builtin_clzll(eol)));
    } else {
      _line_len += n;
    }
    _long_line |= _line_len > _s.max_line;
  }

  // count_lines for a block with stuffing dots (bit i: the line that starts
  // at octet i starts with one). A line that starts in this block is one
  // octet shorter than its span when its bit is set; one that started in an
  // earlier block had its dot left out of `_line_len` there. Bit 0 can only
  // be set when a line starts at octet 0, with `_line_len` 0.
  void count_stuffed_lines(unsigned n, std::uint64_t eol, std::uint64_t stuffed) {
    if (eol != 0) {
      unsigned prev = static_cast<unsigned>(__builtin_ctzll(eol));
      _long_line |= _line_len + prev + 1 - (stuffed & 1) > _s.max_line;
      if (_s.max_line < block_size) {
        for (std::uint64_t rest = eol & (eol - 1); rest != 0; rest &= rest - 1) {
          const unsigned i = static_cast<unsigned>(__builtin_ctzll(rest));
          // prev < i <= 63, so the shift stays in range.
          _long_line |= i - prev - ((stuffed >> (prev + 1)) & 1) > _s.max_line;
          prev = i;
        }
      }
      const unsigned last = 63 - static_cast<unsigned>(__builtin_clzll(eol));
      // The line after the last line end starts at last + 1, which is 64 (no
      // octet of this block, no dot) when the block ends with the line end.
      _line_len = n - 1 - last - ((stuffed >> last >> 1) & 1);
    } else {
      _line_len += n - (stuffed & 1);
    }
    _long_line |= _line_len > _s.max_line;
  }

  block_scan& _s;
  bool _after_cr;
  bool _line_start;
  std::uint64_t _line_len;
  std::size_t _done = 0;
  std::uint64_t _stuffed = 0;
  std::uint64_t _bare = 0;
  std::uint64_t _high = 0;
  bool _long_line = false;
};

}  // namespace
}  // namespace ringrelay::smtp::detail
