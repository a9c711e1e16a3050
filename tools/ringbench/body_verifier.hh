// ringbench/body_verifier — checks one received message against the
// X-Ringbench-Sum header that `ringbench send` put in it.
//
// Fed the message octets as they arrive (any split, in wire form: still
// dot-stuffed for DATA, raw for BDAT), it reads the header block line by
// line for X-Ringbench-Id and X-Ringbench-Sum, and computes the CRC-32C of
// everything after the first empty line, with the stuffing dots removed:
// the same octets the sender summed. Headers that a relay prepends
// (Received, ...) are not covered, so a relayed message still verifies.
//
// Pure: no I/O, no allocation after construction. One verifier per
// connection, used by its thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringrelay::ringbench {

class body_verifier {
 public:
  enum class framing { stuffed, raw };
  enum class verdict { ok, mismatch, unverified };

  // Starts a message. DATA bodies are `stuffed`, BDAT bodies `raw`.
  void reset(framing f);
  void feed(std::string_view wire);
  // The verdict for the message fed since `reset`: `unverified` when it had
  // no well-formed X-Ringbench-Sum header or no header/body separator.
  verdict finish() const;

  // The X-Ringbench-Id value (empty when absent), for reports.
  std::string_view id() const { return {_id, _id_len}; }
  std::uint32_t computed() const { return _crc; }
  std::uint32_t expected() const { return _expected; }

 private:
  void feed_header(std::string_view& in);
  void end_header_line();
  void feed_body(std::string_view in);

  static constexpr std::size_t keep = 64;  // octets of a header line we look at

  framing _framing = framing::stuffed;
  bool _in_body = false;
  bool _line_start = true;
  // The start of the current header line (stuffing removed), and its length.
  char _line[keep];
  std::size_t _line_len = 0;
  bool _have_sum = false;
  std::uint32_t _expected = 0;
  std::uint32_t _crc = 0;
  char _id[32];
  std::size_t _id_len = 0;
};

}  // namespace ringrelay::ringbench
