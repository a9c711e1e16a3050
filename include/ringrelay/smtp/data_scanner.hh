// smtp/data_scanner — the streaming DATA/BDAT body scanner.
//
// Walks each receive buffer once, in place, and never copies or buffers the
// message. For DATA bodies it finds the end of data (CRLF "." CRLF, and only
// that: a bare LF or CR never ends data) across buffer boundaries. For both
// DATA and BDAT it computes the RFC 1870 size (octets including CRLFs,
// excluding stuffing dots and the terminating "." CRLF), tracks text line
// length (also without stuffing dots), and notes bare CR / bare LF. The body
// it yields is the wire form: still dot-stuffed for DATA (so it can be stored
// and forwarded unchanged).
//
// Errors are sticky and reported once, after the end of data, as the session
// must (RFC 5321 4.1.1.4: a reply only after the final "."). Pure: no I/O, no
// allocation; one scanner per session, used by the session's shard only.
//
// SIMD: the implementation picks AVX2, SSE2 or the plain reference version
// at first use (runtime dispatch); `set_impl` forces one (tests, benches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ringrelay::smtp {

enum class scan_impl { reference, sse2, avx2, best };

// Selects the implementation all scanners use from now on; `best` picks the
// fastest the CPU supports. Returns the one actually selected (a request the
// CPU cannot run falls back to the next best).
scan_impl set_scan_impl(scan_impl want);
scan_impl current_scan_impl();
const char* scan_impl_name(scan_impl);

// The size multiplier of SPEC.md §5 for a message of `size` octets:
// floor(size / 10 MiB) + 1, i.e. 1..5 below 50 MiB and 6 at exactly 50 MiB.
// Sizes above 50 MiB are refused before this is asked.
unsigned size_multiplier(std::uint64_t size);

struct scan_limits {
  std::uint64_t max_size = 52428800;  // RFC 1870 size; above it: too_big
  // Octets of a text line including its CRLF but not a stuffing dot (RFC
  // 5321 4.5.3.1.6); a longer line: line_too_long.
  std::uint32_t max_line = 1000;
};

struct scan_result {
  // Octets of the input that are message body, from the start of the input.
  // For DATA this stops before the terminating "." CRLF (the CRLF that
  // precedes the "." is body: it ends the last line).
  std::size_t body;
  // Octets of the input consumed: body plus, at the end of data, the
  // terminator, or else plus the octets held back at its end (see `replay`):
  // without `end` it is the whole input. Input after `consumed` is not part
  // of the message (pipelined commands) and is left to the caller.
  std::size_t consumed;
  bool end;  // the end of data was found (DATA mode only)
  // Octets held back at the end of the previous input because they might
  // have begun the terminator (a "." or "." CR at the start of a line) and
  // that turned out to be body. The caller emits the first `replay` octets
  // of `held_back_text` before this input's body. Always 0 when `end`
  // consumed the held-back octets as the terminator.
  std::uint8_t replay;
};

// The octets `replay` refers to.
inline constexpr char held_back_text[] = ".\r";

class data_scanner {
 public:
  enum class mode { data, bdat };

  explicit data_scanner(scan_limits limits = {}) : _limits(limits) {}

  // Starts a new message. DATA starts at the beginning of a line (just after
  // the DATA command's CRLF). BDAT chunks of one message are fed with
  // mode::bdat; their line tracking continues across chunks.
  void reset(mode m);

  // Scans the next piece of the stream. May be called with any split of the
  // input, including empty spans and splits inside CRLF "." CRLF. Once the
  // end of data was found, further calls consume nothing and report `end`
  // again until `reset`.
  scan_result feed(std::span<const char> in);

  // RFC 1870 size of the message so far (exact once `end`, or after the last
  // BDAT chunk).
  std::uint64_t size() const { return _size; }
  // Body octets in wire form so far (dot-stuffed for DATA).
  std::uint64_t wire_size() const { return _wire; }

  // Lines end with CRLF only: a bare CR or LF does not start a new line, so
  // it neither resets the line length nor allows a stuffing dot or the end of
  // data after it. A CR that ends the BDAT chunks fed so far counts as bare:
  // no LF can follow it once that chunk was the LAST one (the flags are read
  // after the end of data or the last chunk).
  bool bare_cr_or_lf() const { return _bare || (_mode == mode::bdat && _state == after_cr); }
  // A line whose octets, CRLF included, exceed max_line; a line still without
  // its CRLF once its octets so far do. A stuffing dot is not counted (RFC
  // 5321 4.5.3.1.6: "not counting the leading dot duplicated for
  // transparency"), so a DATA line may be max_line + 1 octets on the wire.
  // BDAT has no stuffing: every octet counts.
  bool line_too_long() const { return _long_line; }
  bool too_big() const { return _size > _limits.max_size; }
  // Any octet above 0x7f (so BODY=8BITMIME / SMTPUTF8 matter upstream).
  bool eight_bit() const { return _eight_bit; }

 private:
  friend struct data_scanner_access;  // white-box unit tests

  // Position in the line / terminator automaton, carried across buffers.
  // `held_dot` and `held_dot_cr` hold back "." / ".\r" at a line start.
  enum state : std::uint8_t { line_start, mid_line, after_cr, held_dot, held_dot_cr, ended };

  scan_result feed_reference(std::span<const char> in);
  void reference_octet(unsigned char c);
  scan_result feed_blocks(std::span<const char> in, scan_impl impl);

  scan_limits _limits;
  mode _mode = mode::data;
  state _state = line_start;
  std::uint32_t _line_len = 0;
  std::uint64_t _size = 0;
  std::uint64_t _wire = 0;
  bool _bare = false;
  bool _long_line = false;
  bool _eight_bit = false;
};

}  // namespace ringrelay::smtp
