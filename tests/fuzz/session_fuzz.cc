// Fuzz target: smtp::session driven by arbitrary client octets.
//
// Input: a flags octet, a cut seed (fuzz_input.hh), then what the client
// sends, cut into receive buffers. Flags: bit 0 small limits (so the size,
// line and recipient limits are reached), bits 1-2 the spool's answer to a
// commit (stored, I/O error, no space), bit 3 an untrusted peer, bit 4 an
// idle timeout after the last buffer, bit 5 STARTTLS offered (the handshake
// then succeeds at once, and the rest of the buffer is dropped), bit 6 AUTH
// offered (alice / secret is the account, and it may send from example.com
// only), bit 7 a failed login blocks the address.
//
// The driver plays the connection glue (smtp/server.cc). The session must
// always make progress (the glue would spin otherwise), answer with bounded,
// well-formed replies that carry an enhanced status code (SPEC.md §2), and
// commit only what it may accept: a message with recipients within the
// limit, within the size limit, and whose stored octets are exactly its
// wire form with CRLF line ends only and, for DATA, no end of data inside
// (SPEC.md §2: what is stored is forwarded unchanged).
#include <cstddef>
#include <cstdint>
#include <ringrelay/log/log.hh>
#include <ringrelay/smtp/session.hh>
#include <span>
#include <string>
#include <string_view>

#include "fuzz_input.hh"

namespace ringrelay::smtp {
namespace {

using fuzz::check;

constexpr std::string_view hostname = "mx.test";
// The longest a reply can be for one call: the EHLO reply, or a refusal
// plus the 250 of a commit.
constexpr std::size_t max_output_per_call = 512;

enum class spool_answer { stored, io_error, no_space, stored_too };

bool digit(char c) {
  return c >= '0' && c <= '9';
}

// "X.Y.Z " at the start of `text`, X being the reply's class.
bool has_enhanced_code(char cls, std::string_view text) {
  if (text.size() < 6 || text[0] != cls || text[1] != '.') return false;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const std::size_t from = i;
    while (i < text.size() && digit(text[i])) ++i;
    if (i == from || i >= text.size() || text[i] != (part == 0 ? '.' : ' ')) return false;
    ++i;
  }
  return true;
}

// Checks the replies one call produced. RFC 2034 3 wants an enhanced code in
// every 2xx, 4xx and 5xx reply but the greeting and the replies to HELO and
// EHLO (the only multi-line one); 354 is none of those classes.
void check_replies(std::string_view out) {
  check(out.size() <= max_output_per_call);
  bool multiline = false;
  while (!out.empty()) {
    const std::size_t end = out.find("\r\n");
    check(end != std::string_view::npos);
    const std::string_view line = out.substr(0, end);
    out.remove_prefix(end + 2);
    check(line.size() >= 4 && line[0] >= '2' && line[0] <= '5' && digit(line[1]) &&
          digit(line[2]) && (line[3] == ' ' || line[3] == '-'));
    check(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
    const bool greeting_or_helo = line.substr(4).starts_with(hostname);
    if (!multiline && line[3] == ' ' && !greeting_or_helo && line[0] != '3') {
      check(has_enhanced_code(line[0], line.substr(4)));
    }
    multiline = line[3] == '-';
  }
}

// What may be stored and forwarded: CRLF line ends only, lines within the
// limit, and for a DATA body (still dot-stuffed) no CRLF "." CRLF.
void check_stored_body(std::string_view body, bool raw, std::uint32_t text_line) {
  std::size_t line_len = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    ++line_len;
    if (body[i] == '\r') check(i + 1 < body.size() && body[i + 1] == '\n');
    if (body[i] == '\n') {
      check(i > 0 && body[i - 1] == '\r');
      check(line_len <= text_line);
      line_len = 0;
    }
  }
  check(line_len <= text_line);
  if (!raw) {
    check(!body.starts_with(".\r\n"));
    check(body.find("\r\n.\r\n") == std::string_view::npos);
  }
}

std::string alice_policy(std::string_view account, std::string_view sender) {
  if (account == "alice" && sender.ends_with("@example.com")) return "";
  return "550 5.7.1 Error: not allowed to send as this sender";
}

class driver {
 public:
  driver(const session_config& cfg, bool trusted, spool_answer spool, bool block)
      : _cfg(cfg),
        _s(cfg, peer_info{"192.0.2.1", trusted}),
        _trusted(trusted),
        _spool(spool),
        _block(block) {
    _s.greet();
    take_output();
  }

  void receive(std::string_view in) {
    _drop_input = false;
    while (!in.empty() && _s.current() != state::closing && !_drop_input) {
      check(_s.current() != state::committing);
      const std::size_t consumed = _s.in_body() ? scan(in) : feed(in);
      check(consumed <= in.size());
      check(consumed > 0 || _s.current() == state::closing);
      in.remove_prefix(consumed);
      take_output();
    }
  }

  void timeout() {
    _s.timeout();
    check(_s.current() == state::closing);
    check(_s.output().starts_with("421 4.4.2 "));
    take_output();
  }

 private:
  std::size_t feed(std::string_view in) {
    const feed_result r = _s.feed(in);
    check(r.ev != event::need_more || r.consumed == in.size());
    handle(r.ev);
    return r.consumed;
  }

  std::size_t scan(std::string_view in) {
    const bool was_open = _open;
    const body_step step = _s.scan(std::span<const char>(in.data(), in.size()));
    check(step.body <= step.consumed && step.replay <= 2);
    if (was_open && step.store) {
      _body.append(held_back_text, step.replay);
      _body.append(in.substr(0, step.body));
    }
    handle(step.ev);
    return step.consumed;
  }

  void handle(event ev) {
    check(_s.in_body() == (_s.current() == state::data || _s.current() == state::bdat));
    switch (ev) {
      case event::body:
        check(_s.in_body());
        if (_s.message_open() && !_open) {
          _open = true;
          _body.clear();
        }
        break;
      case event::commit:
        check(_s.current() == state::committing);
        commit();
        break;
      case event::discard:
      case event::close:
        check(ev != event::close || _s.current() == state::closing);
        _open = false;
        _body.clear();
        break;
      case event::starttls:
        check(!_s.tls() && !_open);
        _drop_input = true;
        _s.tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
        check(_s.current() == state::fresh && _s.tls());
        break;
      case event::authenticate:
        check(_s.current() == state::authenticating && _s.account().empty());
        authenticate();
        break;
      case event::verify_sender:
        check(_cfg.verify_sender && _s.current() == state::verifying_sender &&
              !_s.sender().empty());
        // Senders ending in "x" fail, the rest pass.
        _s.sender_verified(_s.sender().ends_with("x")
                               ? "451 4.1.8 Sender verify failed: domain has no MX or A record"
                               : "");
        check(_s.current() == state::mail || _s.current() == state::ready);
        break;
      case event::need_more:
      case event::none:
        break;
    }
  }

  void authenticate() {
    const auto& c = _s.credentials();
    if (c.username == "alice" && c.password == "secret") {
      _s.auth_succeeded("alice");
      check(_s.current() == state::ready && _s.account() == "alice");
    } else if (_block) {
      _s.auth_blocked();
      check(_s.current() == state::closing);
    } else {
      _s.auth_failed(c.username.find('@') != std::string::npos);
      check(_s.current() == state::ready && _s.account().empty());
    }
  }

  void commit() {
    const data_scanner& sc = _s.scanner();
    check(!_s.recipients().empty() && _s.recipients().size() <= _cfg.limits.recipients);
    // Never an open relay: a trusted peer, or an account and its senders.
    check(_trusted || (_s.account() == "alice" && _s.sender().ends_with("@example.com")));
    check(!sc.too_big() && !sc.bare_cr_or_lf() && !sc.line_too_long());
    check(sc.size() <= _cfg.limits.message_size);
    if (!_open) _body.clear();  // BDAT 0 LAST opens no spool message
    check(_body.size() == sc.wire_size());
    check_stored_body(_body, _s.body_is_raw(), _cfg.limits.text_line);
    _open = false;
    _body.clear();
    switch (_spool) {
      case spool_answer::io_error:
        _s.commit_failed(commit_error::io);
        break;
      case spool_answer::no_space:
        _s.commit_failed(commit_error::no_space);
        break;
      case spool_answer::stored:
      case spool_answer::stored_too:
        _s.committed("ID");
        break;
    }
    check(_s.current() == state::ready);
  }

  void take_output() {
    check_replies(_s.output());
    _s.output().clear();
  }

  const session_config& _cfg;
  session _s;
  bool _trusted;
  spool_answer _spool;
  bool _block;
  bool _open = false;
  bool _drop_input = false;
  std::string _body;
};

void play(fuzz::fuzz_input in) {
  const std::uint8_t flags = in.octet();
  const std::uint8_t seed = in.octet();
  session_config cfg{std::string(hostname), {},    (flags & 32) != 0,
                     (flags & 64) != 0,     false, alice_policy};
  if (flags & 1) cfg.limits = {64, 80, 3, 100};
  // The seed's low bit (it also shapes the cuts) turns sender checks on.
  cfg.verify_sender = (seed & 1) != 0;
  driver d(cfg, (flags & 8) == 0, static_cast<spool_answer>((flags >> 1) & 3), (flags & 128) != 0);
  for (std::string_view piece : fuzz::cut(in.rest(), seed)) d.receive(piece);
  if (flags & 16) d.timeout();
}

}  // namespace
}  // namespace ringrelay::smtp

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ringrelay::log::set_level(ringrelay::log::level::error);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::smtp::play(ringrelay::fuzz::fuzz_input(data, size));
  return 0;
}
