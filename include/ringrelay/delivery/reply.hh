// delivery/reply — SMTP replies from an upstream server, and their parser.
//
// `reply_parser` turns the bytes an upstream server sends into whole replies
// (RFC 5321 4.2): "250-text" continuation lines, then "250 text" (or a bare
// "250") as the last line, every line with the same code. It keeps its state
// across calls, so the input may be split anywhere, one byte at a time too.
// Lines end with CRLF; a bare LF is accepted as a line end as well (replies
// are only read by us, and Postfix's client is as lenient).
//
// Bounded: a line longer than `max_line` octets (line end included), a reply
// longer than `max_reply` octets, a code that is not three digits from 200 to
// 599, a separator other than "-" or " " after the code, or a code that
// differs from the first line's is a protocol error. The error is sticky
// until `reset()`: the connection cannot be resynchronised.
//
// The enhanced status code (RFC 3463, RFC 2034) is taken from the start of
// the first line's text when it is well formed and its class matches the
// reply code's first digit.
//
// Pure: no I/O, no exceptions; allocation only to store the reply text. One
// parser per upstream connection, used by that connection's shard only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringrelay::delivery {

struct reply {
  std::uint16_t code = 0;
  // "5.1.1", or empty when the upstream sent none.
  std::string enhanced;
  // Every line exactly as received, line ends included.
  std::string raw;

  // Number of lines in `raw`.
  std::size_t line_count() const;
  // The text of line `i` (what follows "250-" or "250 "), without line end.
  std::string_view line_text(std::size_t i) const;
  // The reply as one line for logs and bounces: "550 5.1.1 text more text".
  // Continuation lines are joined with a space, the enhanced code they
  // repeat (RFC 2034) is dropped, and every control octet (CR and LF
  // included) becomes a space so the line cannot be split or forged.
  std::string one_line() const;
};

// A reply we make up ourselves (a refusal decided locally, a synthesized
// reason for a lost connection): "code enhanced text\r\n" in `raw`.
reply make_reply(std::uint16_t code, std::string_view enhanced, std::string_view text);

struct reply_limits {
  std::size_t max_line = 4096;    // octets of one line, line end included
  std::size_t max_reply = 65536;  // octets of all lines of one reply
};

class reply_parser {
 public:
  enum class status : std::uint8_t { need_more, complete, error };

  struct result {
    status st;
    // Octets of the input used. On `complete` the input after `consumed`
    // belongs to the next reply (pipelining); on `need_more` it is all of it.
    std::size_t consumed;
  };

  explicit reply_parser(reply_limits limits = {}) : _limits(limits) {}

  // Parses up to the end of one reply. After `complete`, `current()` holds
  // it until the next call to `feed`, which starts a new reply.
  result feed(std::string_view in);

  // The reply just completed; the caller may move it out.
  reply& current() { return _reply; }
  // What was wrong, once `feed` returned `error`.
  std::string_view error() const { return _error; }

  void reset();

 private:
  // Validates the line that starts at `_line_start` in `_reply.raw`.
  // Returns false (and sets `_error`) when it is malformed.
  bool end_line(bool& last);
  result fail(std::string_view why);

  reply_limits _limits;
  reply _reply;
  std::size_t _line_start = 0;
  bool _done = false;
  bool _failed = false;
  std::string_view _error;
};

}  // namespace ringrelay::delivery
