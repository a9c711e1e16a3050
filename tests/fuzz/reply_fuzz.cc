// Fuzz target: delivery::reply_parser and delivery::upstream_session, fed
// what a hostile or broken upstream server might send.
//
// Input: a flags octet, a parser limits octet (0: the defaults), a cut seed
// (fuzz_input.hh), then the upstream's octets.
//
// The parser is run on the octets whole and cut into pieces: it must find
// the same replies and fail in the same place either way, and every reply it
// completes stays within its limits, has a code from 200 to 599 on every
// line, and turns into a log line without control octets.
//
// The upstream session is then driven by a glue that starts a message at
// every `ready` (a few times, then QUIT) and sends the body at once. Flags
// choose the envelope: bits 0-3 which recipients from a pool that holds a
// non-ASCII one, an empty one and one with CRLF in it; bit 4 a sender with
// CRLF; bit 5 an 8-bit body; bit 6 SMTPUTF8; bit 7 a raw (BDAT) body. The
// session must never abort (the glue calls it only as its header allows),
// and what it writes upstream is bounded and only ever our own commands: no
// octet of an address can start a command line of its own.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <ringrelay/delivery/reply.hh>
#include <ringrelay/delivery/upstream_session.hh>
#include <ringrelay/log/log.hh>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.hh"

namespace ringrelay::delivery {
namespace {

using fuzz::check;

constexpr std::size_t max_output_per_call = 4096;
constexpr int messages_per_connection = 3;

bool clean_log_line(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

void check_reply(reply& r, const reply_limits& limits) {
  check(r.code >= 200 && r.code <= 599);
  check(!r.raw.empty() && r.raw.size() <= limits.max_reply && r.raw.back() == '\n');
  check(r.line_count() >= 1);
  const std::string code = std::to_string(r.code);
  std::string_view rest = r.raw;
  while (!rest.empty()) {
    check(rest.starts_with(code));
    rest.remove_prefix(rest.find('\n') + 1);
  }
  check(r.enhanced.empty() || r.enhanced[0] == code[0]);
  check(clean_log_line(r.one_line()));
}

struct parse_run {
  std::vector<std::string> replies;  // raw text of each complete reply
  bool failed = false;

  bool operator==(const parse_run&) const = default;
};

parse_run parse(const std::vector<std::string_view>& pieces, const reply_limits& limits) {
  reply_parser p(limits);
  parse_run run;
  for (std::string_view piece : pieces) {
    while (!run.failed) {
      const reply_parser::result r = p.feed(piece);
      check(r.consumed <= piece.size());
      if (r.st == reply_parser::status::error) {
        run.failed = true;
        check(!p.error().empty());
      } else if (r.st == reply_parser::status::complete) {
        check_reply(p.current(), limits);
        run.replies.push_back(p.current().raw);
        piece.remove_prefix(r.consumed);
        if (!piece.empty()) continue;
      } else {
        check(r.consumed == piece.size());
      }
      break;
    }
  }
  return run;
}

// Lines we may send upstream (RFC 5321 4.1.1, RFC 3030 2): a command, or the
// lone "." that ends data.
bool our_line(std::string_view line) {
  static constexpr std::string_view commands[] = {"EHLO ", "HELO ", "MAIL FROM:<", "RCPT TO:<",
                                                  "DATA",  "BDAT ", "RSET",        "QUIT"};
  if (line == ".") return true;
  for (std::string_view c : commands) {
    if (line.starts_with(c)) return true;
  }
  return false;
}

void check_output(std::string_view out) {
  check(out.size() <= max_output_per_call);
  while (!out.empty()) {
    const std::size_t end = out.find("\r\n");
    check(end != std::string_view::npos);
    const std::string_view line = out.substr(0, end);
    check(line.find_first_of("\r\n") == std::string_view::npos && our_line(line));
    out.remove_prefix(end + 2);
  }
}

class glue {
 public:
  explicit glue(std::uint8_t flags) : _flags(flags) {}

  bool done() const { return _done; }

  void receive(std::string_view in) {
    run(_s.feed(in));
    check_output(_s.output());
    _s.output().clear();
  }

 private:
  envelope make_envelope() const {
    static const std::string pool[] = {"a@example.net", "j\xc3\xb6rg@example.net", "",
                                       "c@example.net>\r\nX-INJECTED: yes"};
    envelope env;
    env.sender = _flags & 16 ? "s@example.com>\r\nX-INJECTED: yes" : "s@example.com";
    for (int i = 0; i < 4; ++i) {
      if (_flags & (1 << i)) env.recipients.push_back(pool[i]);
    }
    env.size = 1000;
    env.eight_bit = _flags & 32;
    env.smtputf8 = _flags & 64;
    env.body_is_raw = _flags & 128;
    return env;
  }

  void run(event ev) {
    while (ev != event::none) ev = handle(ev);
  }

  // Acts on one event and returns the next one.
  event handle(event ev) {
    switch (ev) {
      case event::ready:
        // As the dialer does: only an idle, usable connection gets work.
        if (_s.state() != session_state::ready) break;
        if (_started < messages_per_connection) {
          ++_started;
          const envelope env = make_envelope();
          _expected.push_back(env.recipients.size());
          return _s.start_message(env);
        }
        check(_s.quit());
        break;
      case event::send_body:
        // A reply that came with the 354 may have ended the connection
        // already (a later event says so): then the glue sends nothing.
        if (_s.state() != session_state::body) break;
        check_output(_s.output());
        _s.output().clear();
        _s.body_sent(true);
        // As the dialer does when more work waits: the next transaction
        // goes right behind the end of data, when the session takes it.
        if (_started < messages_per_connection) {
          const envelope env = make_envelope();
          if (_s.queue_next(env)) {
            ++_started;
            _expected.push_back(env.recipients.size());
          }
        }
        break;
      case event::message_done:
        check(!_expected.empty() && _s.results().size() == _expected.front());
        _expected.pop_front();
        for (const auto& r : _s.results()) check(clean_log_line(r.response.one_line()));
        break;
      case event::closed:
      case event::failed:
        check(clean_log_line(_s.reason().response.one_line()));
        _done = true;
        break;
      case event::none:
        break;
    }
    return _s.next_event();
  }

  upstream_session _s{"relay.test"};
  std::uint8_t _flags;
  int _started = 0;
  std::deque<std::size_t> _expected;  // recipients of each transaction started
  bool _done = false;
};

void play(fuzz::fuzz_input in) {
  const std::uint8_t flags = in.octet();
  reply_limits limits;
  if (const std::uint8_t l = in.octet()) limits = {8u + l, 4u * (8u + l)};
  const std::uint8_t seed = in.octet();
  const std::vector<std::string_view> pieces = fuzz::cut(in.rest(), seed);

  const std::vector<std::string_view> whole{in.rest()};
  check(parse(pieces, limits) == parse(whole, limits));

  glue g(flags);
  for (std::string_view piece : pieces) {
    if (g.done()) break;
    g.receive(piece);
  }
}

}  // namespace
}  // namespace ringrelay::delivery

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ringrelay::log::set_level(ringrelay::log::level::error);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::delivery::play(ringrelay::fuzz::fuzz_input(data, size));
  return 0;
}
