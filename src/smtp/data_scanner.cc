#include <algorithm>
#include <atomic>
#include <limits>
#include <ringrelay/smtp/data_scanner.hh>

#include "data_scanner_simd.hh"

namespace ringrelay::smtp {
namespace {

constexpr std::uint64_t size_step = 10 * 1048576;  // SPEC.md §5: MB = 1,048,576 octets

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

scan_impl resolve(scan_impl want) {
  if (want == scan_impl::best || want == scan_impl::avx2) {
    return have_avx2() ? scan_impl::avx2 : scan_impl::sse2;
  }
  return want;
}

// `best` until the first use resolves it. Relaxed: every value stored is a
// complete choice, and scanners need no ordering with anything else.
std::atomic<scan_impl> selected{scan_impl::best};

}  // namespace

scan_impl set_scan_impl(scan_impl want) {
  const scan_impl got = resolve(want);
  selected.store(got, std::memory_order_relaxed);
  return got;
}

scan_impl current_scan_impl() {
  const scan_impl s = selected.load(std::memory_order_relaxed);
  return s == scan_impl::best ? set_scan_impl(scan_impl::best) : s;
}

const char* scan_impl_name(scan_impl impl) {
  switch (impl) {
    case scan_impl::reference:
      return "reference";
    case scan_impl::sse2:
      return "sse2";
    case scan_impl::avx2:
      return "avx2";
    case scan_impl::best:
      break;
  }
  return "best";
}

unsigned size_multiplier(std::uint64_t size) {
  return static_cast<unsigned>(size / size_step) + 1;
}

void data_scanner::reset(mode m) {
  *this = data_scanner(_limits);
  _mode = m;
}

scan_result data_scanner::feed(std::span<const char> in) {
  const scan_impl impl = current_scan_impl();
  return impl == scan_impl::reference ? feed_reference(in) : feed_blocks(in, impl);
}

// The reference walks one octet at a time through the automaton exactly as
// the contract words it. It is the oracle the SIMD walkers are tested against.
scan_result data_scanner::feed_reference(std::span<const char> in) {
  if (_state == ended) return {0, 0, true, 0};
  // Held-back octets that came from the previous input, until resolved.
  std::uint8_t held_before = _state == held_dot ? 1 : _state == held_dot_cr ? 2 : 0;
  std::uint8_t replay = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (_mode == mode::data) {
      if (_state == line_start && c == '.') {
        _state = held_dot;
        continue;
      }
      if (_state == held_dot && c == '\r') {
        _state = held_dot_cr;
        continue;
      }
      if (_state == held_dot_cr && c == '\n') {
        // CRLF "." CRLF (RFC 5321 4.1.1.4): the dot is at i - 2, which is
        // before this input when it was held back.
        _state = ended;
        return {i >= 2 ? i - 2 : 0, i + 1, true, replay};
      }
      if (_state == held_dot || _state == held_dot_cr) {
        // Not the terminator: the dot was a stuffing dot (RFC 5321 4.5.2),
        // body in wire form but counted neither in the RFC 1870 size nor in
        // the line length (RFC 5321 4.5.3.1.6).
        const bool cr = _state == held_dot_cr;
        replay += held_before;
        held_before = 0;
        _state = mid_line;
        ++_wire;
        if (cr) reference_octet('\r');
      }
    }
    reference_octet(c);
  }
  const std::uint8_t held = _state == held_dot ? 1 : _state == held_dot_cr ? 2 : 0;
  return {in.size() - (held - held_before), in.size(), false, replay};
}

// One body octet through the line automaton; dots are the caller's concern.
void data_scanner::reference_octet(unsigned char c) {
  ++_wire;
  ++_size;
  if (++_line_len > _limits.max_line) _long_line = true;
  if (c >= 0x80) _eight_bit = true;
  if (_state == after_cr && c == '\n') {
    _line_len = 0;
    _state = line_start;
    return;
  }
  if (_state == after_cr || c == '\n') _bare = true;
  _state = c == '\r' ? after_cr : mid_line;
}

// Resolves octets held back by the previous input, which needs at most two
// octets of this one, then hands the rest to a SIMD block walker.
scan_result data_scanner::feed_blocks(std::span<const char> in, scan_impl impl) {
  if (_state == ended) return {0, 0, true, 0};
  std::uint8_t replay = 0;
  if (_state == held_dot || _state == held_dot_cr) {
    if (in.empty()) return {0, 0, false, 0};
    if (_state == held_dot_cr || in[0] == '\r') {
      const std::size_t lf_at = _state == held_dot_cr ? 0 : 1;
      if (lf_at == in.size()) {
        _state = held_dot_cr;
        return {0, in.size(), false, 0};
      }
      if (in[lf_at] == '\n') {
        _state = ended;
        return {0, lf_at + 1, true, 0};
      }
    }
    // Body after all: a stuffing dot, and the CR when it was held too (then
    // the walker sees this input's first octet after a CR: a bare CR). The
    // dot counts in neither the size nor the line length. The walker checks
    // the line length, a replayed CR included, as this input has at least
    // one more octet of that line.
    replay = _state == held_dot ? 1 : 2;
    _wire += replay;
    _size += replay - 1u;
    _line_len += replay - 1u;
    _state = replay == 2 ? after_cr : mid_line;
  }
  detail::block_scan s{};
  s.data = in.data();
  s.size = in.size();
  s.max_line = _limits.max_line;
  s.dots = _mode == mode::data;
  s.after_cr = _state == after_cr;
  s.line_start = _state == line_start;
  s.line_len = _line_len;
  (impl == scan_impl::avx2 ? detail::scan_avx2 : detail::scan_sse2)(s);
  _wire += s.body;
  _size += s.body - s.stuffed;
  _line_len = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(s.line_len, std::numeric_limits<std::uint32_t>::max()));
  _bare |= s.bare;
  _long_line |= s.long_line;
  _eight_bit |= s.eight_bit;
  if (s.end) {
    _state = ended;
  } else if (s.held != 0) {
    _state = s.held == 1 ? held_dot : held_dot_cr;
  } else {
    _state = s.after_cr ? after_cr : s.line_start ? line_start : mid_line;
  }
  return {s.body, s.consumed, s.end, replay};
}

}  // namespace ringrelay::smtp
