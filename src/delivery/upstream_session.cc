#include <algorithm>
#include <cstdlib>
#include <limits>
#include <ringrelay/delivery/upstream_session.hh>
#include <ringrelay/log/log.hh>
#include <utility>

namespace ringrelay::delivery {
namespace {

constexpr std::string_view crlf = "\r\n";

// A CR or LF would end our command line early and let the rest of the
// address run as a command of its own; NUL is cut by some servers.
bool has_forbidden_octet(std::string_view address) {
  return address.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool non_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return true;
  }
  return false;
}

outcome outcome_of(std::uint16_t code) {
  if (code < 300) return outcome::delivered;
  return code < 500 ? outcome::temporary : outcome::permanent;
}

bool positive(const reply& r) {
  return r.code / 100 == 2;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'a' && a[i] <= 'z' ? static_cast<char>(a[i] - 32) : a[i];
    if (x != b[i]) return false;
  }
  return true;
}

// RFC 1870 4: "SIZE" [SP 1*20DIGIT]; absent or 0 means no fixed limit.
// Saturates instead of overflowing on absurd values.
std::uint64_t parse_size(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') break;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
      return std::numeric_limits<std::uint64_t>::max();
    }
    v = v * 10 + d;
  }
  return v;
}

extensions parse_extensions(const reply& r) {
  extensions ext;
  // RFC 5321 4.1.1.1: the first line is the greeting, each further line
  // one keyword with optional parameters.
  const std::size_t lines = r.line_count();
  for (std::size_t i = 1; i < lines; ++i) {
    std::string_view text = r.line_text(i);
    const std::size_t sp = text.find(' ');
    const std::string_view keyword = text.substr(0, sp);
    const std::string_view params = sp == std::string_view::npos ? "" : text.substr(sp + 1);
    if (iequals(keyword, "PIPELINING")) {
      ext.pipelining = true;
    } else if (iequals(keyword, "CHUNKING")) {
      ext.chunking = true;
    } else if (iequals(keyword, "8BITMIME")) {
      ext.eight_bit_mime = true;
    } else if (iequals(keyword, "SMTPUTF8")) {
      ext.smtputf8 = true;
    } else if (iequals(keyword, "STARTTLS")) {
      ext.starttls = true;
    } else if (iequals(keyword, "ENHANCEDSTATUSCODES")) {
      ext.enhanced_status_codes = true;
    } else if (iequals(keyword, "SIZE")) {
      ext.size = true;
      ext.max_size = parse_size(params);
    }
  }
  return ext;
}

// What we were doing, for texts that explain a lost connection.
const char* activity(session_state s) {
  switch (s) {
    case session_state::greeting:
      return "waiting for the greeting";
    case session_state::ehlo:
      return "waiting for the reply to EHLO";
    case session_state::helo:
      return "waiting for the reply to HELO";
    case session_state::ready:
      return "idle";
    case session_state::mail:
      return "waiting for the reply to MAIL FROM";
    case session_state::rcpt:
      return "waiting for the reply to RCPT TO";
    case session_state::data:
      return "waiting for the reply to DATA";
    case session_state::body:
      return "sending the message body";
    case session_state::body_reply:
      return "waiting for the reply to the end of the message";
    case session_state::data_cancel:
      return "waiting for the reply to an empty DATA";
    case session_state::rset:
      return "waiting for the reply to RSET";
    case session_state::quit:
      return "waiting for the reply to QUIT";
    case session_state::starttls:
      return "waiting for the reply to STARTTLS";
    case session_state::handshake:
      return "in the TLS handshake";
    case session_state::closed:
      return "closed";
    case session_state::failed:
      return "failed";
  }
  return "?";
}

[[noreturn]] void misuse(const char* call, session_state s) {
  RR_ERROR("upstream_session: %s called in state %s", call, to_string(s));
  std::abort();
}

}  // namespace

void dot_stuff(std::string_view in, bool& at_line_start, std::string& out) {
  while (!in.empty()) {
    if (at_line_start && in.front() == '.') out.push_back('.');
    // Stored bodies never hold a bare LF (refused at acceptance, SPEC §2),
    // so every LF ends a CRLF line.
    const std::size_t nl = in.find('\n');
    const std::size_t n = nl == std::string_view::npos ? in.size() : nl + 1;
    out.append(in.data(), n);
    at_line_start = nl != std::string_view::npos;
    in.remove_prefix(n);
  }
}

const char* to_string(session_state s) {
  switch (s) {
    case session_state::greeting:
      return "greeting";
    case session_state::ehlo:
      return "ehlo";
    case session_state::helo:
      return "helo";
    case session_state::ready:
      return "ready";
    case session_state::mail:
      return "mail";
    case session_state::rcpt:
      return "rcpt";
    case session_state::data:
      return "data";
    case session_state::body:
      return "body";
    case session_state::body_reply:
      return "body_reply";
    case session_state::data_cancel:
      return "data_cancel";
    case session_state::rset:
      return "rset";
    case session_state::quit:
      return "quit";
    case session_state::starttls:
      return "starttls";
    case session_state::handshake:
      return "handshake";
    case session_state::closed:
      return "closed";
    case session_state::failed:
      return "failed";
  }
  return "?";
}

const char* to_string(event e) {
  switch (e) {
    case event::none:
      return "none";
    case event::ready:
      return "ready";
    case event::send_body:
      return "send_body";
    case event::message_done:
      return "message_done";
    case event::closed:
      return "closed";
    case event::failed:
      return "failed";
    case event::start_tls:
      return "start_tls";
  }
  return "?";
}

upstream_session::upstream_session(std::string hostname, bool starttls)
    : _hostname(std::move(hostname)), _try_starttls(starttls) {}

void upstream_session::enter(session_state to) {
  RR_DEBUG("upstream session %s -> %s", to_string(_state), to_string(to));
  _state = to;
}

void upstream_session::push(event e) {
  if (_event_count == _events.size()) {
    RR_ERROR("upstream_session: event queue full; the glue must drain next_event()");
    std::abort();
  }
  _events[(_event_head + _event_count) % _events.size()] = e;
  ++_event_count;
}

event upstream_session::next_event() {
  if (_event_count == 0) return event::none;
  const event e = _events[_event_head];
  _event_head = (_event_head + 1) % _events.size();
  --_event_count;
  if (e == event::message_done) {
    _reported = std::move(_finished.front());
    _finished.pop_front();
  }
  return e;
}

void upstream_session::done() {
  _finished.push_back(_results);
  push(event::message_done);
}

event upstream_session::feed(std::string_view bytes) {
  while (!bytes.empty() && _state != session_state::closed && _state != session_state::failed) {
    const reply_parser::result r = _parser.feed(bytes);
    if (r.st == reply_parser::status::error) {
      protocol_error("malformed reply (" + std::string(_parser.error()) + ")");
      break;
    }
    bytes.remove_prefix(r.consumed);
    if (r.st == reply_parser::status::need_more) break;
    on_reply(_parser.current());
  }
  return next_event();
}

void upstream_session::on_reply(reply& r) {
  // RFC 5321 3.8: 421 may come in reply to any command and means the server
  // is closing. Before `ready` it is a refused connection like any 4xx.
  const bool usable = _state != session_state::greeting && _state != session_state::ehlo &&
                      _state != session_state::helo && _state != session_state::quit &&
                      _state != session_state::starttls;
  if (r.code == 421 && usable) {
    std::string why = "upstream is closing the connection: " + r.one_line();
    end_connection(session_state::closed, outcome::temporary, std::move(r), std::move(why));
    return;
  }
  switch (_state) {
    case session_state::greeting:
      return on_greeting(r);
    case session_state::ehlo:
      return on_ehlo(r);
    case session_state::helo:
      return on_helo(r);
    case session_state::mail:
      return on_mail(r);
    case session_state::rcpt:
      return on_rcpt(r);
    case session_state::data:
      return on_data(r);
    case session_state::body_reply:
      return on_body_reply(r);
    case session_state::data_cancel:
      return on_after_cancel(r);
    case session_state::rset:
      return on_rset(r);
    case session_state::quit: {
      std::string why = "closed after QUIT: " + r.one_line();
      return end_connection(session_state::closed, outcome::temporary, std::move(r),
                            std::move(why));
    }
    case session_state::ready:
      return protocol_error("reply while no command was pending");
    case session_state::body:
      return protocol_error("reply before the end of the message");
    case session_state::starttls:
      return on_starttls(r);
    case session_state::handshake:
      return protocol_error("plaintext reply during the TLS handshake");
    case session_state::closed:
    case session_state::failed:
      return;
  }
}

void upstream_session::on_greeting(reply& r) {
  // RFC 5321 4.3.2: CONNECTION ESTABLISHMENT S: 220 E: 554.
  if (r.code == 220) {
    _out.append("EHLO ").append(_hostname).append(crlf);
    return enter(session_state::ehlo);
  }
  if (r.code >= 400) {
    std::string why = "greeting refused: " + r.one_line();
    return end_connection(session_state::failed, outcome_of(r.code), std::move(r), std::move(why));
  }
  protocol_error("unexpected greeting");
}

void upstream_session::on_ehlo(reply& r) {
  if (positive(r)) {
    _ext = parse_extensions(r);
    if (_try_starttls && _ext.starttls && !_tls) {
      _out.append("STARTTLS").append(crlf);
      return enter(session_state::starttls);
    }
    enter(session_state::ready);
    return push(event::ready);
  }
  // RFC 5321 3.2: a server that does not know EHLO answers 5xx (typically
  // 500 or 502); the client then falls back to HELO.
  if (r.code >= 500) {
    _out.append("HELO ").append(_hostname).append(crlf);
    return enter(session_state::helo);
  }
  if (r.code >= 400) {
    std::string why = "EHLO refused: " + r.one_line();
    return end_connection(session_state::failed, outcome::temporary, std::move(r), std::move(why));
  }
  protocol_error("unexpected reply to EHLO");
}

// RFC 3207 4: 220 starts the handshake; a refusal leaves the session as it
// was, in plaintext (the offer was there but is not usable now).
void upstream_session::on_starttls(reply& r) {
  if (r.code == 220) {
    enter(session_state::handshake);
    return push(event::start_tls);
  }
  if (r.code >= 400) {
    enter(session_state::ready);
    return push(event::ready);
  }
  protocol_error("unexpected reply to STARTTLS");
}

void upstream_session::tls_established() {
  if (_state != session_state::handshake) misuse("tls_established", _state);
  _tls = true;
  // RFC 3207 4.2: forget what the server said before; ask again.
  _ext = {};
  _out.append("EHLO ").append(_hostname).append(crlf);
  enter(session_state::ehlo);
}

void upstream_session::on_helo(reply& r) {
  if (positive(r)) {
    _ext = {};
    enter(session_state::ready);
    return push(event::ready);
  }
  if (r.code >= 400) {
    std::string why = "HELO refused: " + r.one_line();
    return end_connection(session_state::failed, outcome_of(r.code), std::move(r), std::move(why));
  }
  protocol_error("unexpected reply to HELO");
}

// RFC 3030 3: BDAT carries the body as is, so a body stored unstuffed goes
// by BDAT when offered; otherwise DATA, which needs the stuffed form.
body_framing upstream_session::framing_for(const envelope& env) const {
  if (!env.body_is_raw) return body_framing::data_as_stored;
  return _ext.chunking ? body_framing::bdat : body_framing::data_stuffing_needed;
}

void upstream_session::begin_transaction(envelope env) {
  _env = std::move(env);
  const std::size_t n = _env.recipients.size();
  _results.assign(n, recipient_result{});
  _phase.assign(n, rcpt_phase::waiting);
  _to_send.clear();
  _rcpt_written = 0;
  _rcpt_answered = 0;
  _accepted = 0;
  _mail_ok = false;
  _pipelined = _ext.pipelining;
  _framing = framing_for(_env);
}

event upstream_session::start_message(envelope env) {
  if (_state != session_state::ready) misuse("start_message", _state);
  begin_transaction(std::move(env));
  if (refuse_locally()) return next_event();

  enter(session_state::mail);
  write_mail(_env);
  // RFC 2920 3.1: MAIL and RCPT may be grouped; DATA must be the last
  // command of a group. BDAT waits for the RCPT replies (see the header).
  if (_pipelined) {
    while (_rcpt_written < _to_send.size()) write_rcpt();
    if (_framing != body_framing::bdat) _out.append("DATA").append(crlf);
  }
  return next_event();
}

// RFC 2920 3.1: the message content may be the first "command" of a group,
// so the next MAIL, its RCPTs and DATA go right behind the end of data.
bool upstream_session::queue_next(envelope env) {
  if (_state != session_state::body_reply || !_ext.pipelining || _next_queued ||
      _framing == body_framing::bdat || framing_for(env) == body_framing::bdat ||
      refused_locally(env))
    return false;
  _next = std::move(env);
  _next_queued = true;
  write_mail(_next);
  for (const std::string& r : _next.recipients) write_rcpt(r);
  _out.append("DATA").append(crlf);
  return true;
}

// The queued transaction becomes the current one: its commands are out.
void upstream_session::start_next() {
  _next_queued = false;
  begin_transaction(std::move(_next));
  for (std::size_t i = 0; i < _env.recipients.size(); ++i) _to_send.push_back(i);
  _rcpt_written = _to_send.size();
  enter(session_state::mail);
}

// What refuse_locally would refuse, without settling anything.
bool upstream_session::refused_locally(const envelope& env) const {
  if (has_forbidden_octet(env.sender) || (env.smtputf8 && !_ext.smtputf8) ||
      (env.eight_bit && !_ext.eight_bit_mime) ||
      (_ext.size && _ext.max_size != 0 && env.size > _ext.max_size))
    return true;
  return env.recipients.empty() ||
         std::any_of(env.recipients.begin(), env.recipients.end(),
                     [](const std::string& r) { return r.empty() || has_forbidden_octet(r); });
}

bool upstream_session::refuse_locally() {
  const auto refuse_all = [this](reply r) {
    settle_pending(outcome::permanent, r);
    done();
    push(event::ready);
    return true;
  };
  if (has_forbidden_octet(_env.sender)) {
    return refuse_all(make_reply(
        550, "5.1.7", "Sender address contains CR, LF or NUL; it was not sent upstream"));
  }
  // RFC 6531 3.2: without SMTPUTF8 upstream, the message must not be sent
  // (there is no downgrade); 5.6.7 is for non-ASCII addresses, 5.6.9 for
  // UTF-8 headers (RFC 6531 3.5, IANA enhanced status codes).
  if (_env.smtputf8 && !_ext.smtputf8) {
    bool address = non_ascii(_env.sender);
    for (const std::string& r : _env.recipients) address = address || non_ascii(r);
    if (address) {
      return refuse_all(make_reply(554, "5.6.7",
                                   "The receiving server does not support internationalized "
                                   "addresses (no SMTPUTF8, RFC 6531); use an ASCII address"));
    }
    return refuse_all(make_reply(554, "5.6.9",
                                 "The receiving server does not support SMTPUTF8 (RFC 6531), "
                                 "which this message's UTF-8 headers need; send it without them"));
  }
  // RFC 6152 3: 8-bit data goes only to a server that offers 8BITMIME;
  // converting to 7 bit would change the stored bytes, so we refuse.
  if (_env.eight_bit && !_ext.eight_bit_mime) {
    return refuse_all(make_reply(554, "5.6.3",
                                 "The receiving server does not accept 8-bit messages (no "
                                 "8BITMIME, RFC 6152); send it as quoted-printable or base64"));
  }
  // RFC 1870 6.1: do not send a message the server has declared too big.
  if (_ext.size && _ext.max_size != 0 && _env.size > _ext.max_size) {
    return refuse_all(make_reply(552, "5.3.4",
                                 "Message of " + std::to_string(_env.size) +
                                     " octets exceeds the receiving server's limit of " +
                                     std::to_string(_ext.max_size) + " octets; send less"));
  }
  for (std::size_t i = 0; i < _env.recipients.size(); ++i) {
    const std::string& r = _env.recipients[i];
    if (r.empty() || has_forbidden_octet(r)) {
      settle(i, outcome::permanent,
             make_reply(550, "5.1.3",
                        "Recipient address is empty or contains CR, LF or NUL; it was not sent "
                        "upstream"));
    } else {
      _to_send.push_back(i);
    }
  }
  if (!_to_send.empty()) return false;
  done();
  push(event::ready);
  return true;
}

void upstream_session::write_mail(const envelope& env) {
  _out.append("MAIL FROM:<").append(env.sender).append(">");
  // RFC 1870 6, RFC 6152 2, RFC 6531 3.4: parameters only when offered.
  if (_ext.size) _out.append(" SIZE=").append(std::to_string(env.size));
  if (env.eight_bit && _ext.eight_bit_mime) _out.append(" BODY=8BITMIME");
  if (env.smtputf8) _out.append(" SMTPUTF8");
  _out.append(crlf);
}

void upstream_session::write_rcpt(const std::string& recipient) {
  _out.append("RCPT TO:<").append(recipient).append(">").append(crlf);
}

void upstream_session::write_rcpt() {
  write_rcpt(_env.recipients[_to_send[_rcpt_written]]);
  ++_rcpt_written;
}

void upstream_session::on_mail(reply& r) {
  if (positive(r)) {
    _mail_ok = true;
  } else if (r.code >= 400) {
    // RFC 5321 4.1.1.2: a refused MAIL refuses the whole message.
    settle_pending(outcome_of(r.code), r);
  } else {
    return protocol_error("unexpected reply to MAIL FROM");
  }
  if (_pipelined) return enter(session_state::rcpt);
  if (!_mail_ok) return finish(true);
  write_rcpt();
  enter(session_state::rcpt);
}

void upstream_session::on_rcpt(reply& r) {
  if (r.code / 100 == 3) return protocol_error("unexpected reply to RCPT TO");
  const std::size_t i = _to_send[_rcpt_answered++];
  // After a refused MAIL the pipelined RCPTs get 503s that say nothing
  // about the recipients: they keep the MAIL reply.
  if (_mail_ok) {
    if (positive(r)) {
      _phase[i] = rcpt_phase::accepted;
      ++_accepted;
    } else {
      settle(i, outcome_of(r.code), r);
    }
  }
  if (_rcpt_answered < _to_send.size()) {
    if (!_pipelined) write_rcpt();
    return;
  }
  after_last_rcpt();
}

void upstream_session::after_last_rcpt() {
  if (_pipelined && _framing != body_framing::bdat) return enter(session_state::data);
  if (_accepted == 0) return finish(true);
  if (_framing == body_framing::bdat) return start_body();
  _out.append("DATA").append(crlf);
  enter(session_state::data);
}

void upstream_session::on_data(reply& r) {
  if (r.code == 354) {
    if (_accepted > 0) return start_body();
    // RFC 2920 3.1: with no recipient accepted a pipelined DATA should get
    // 503 or 554; a server that says 354 anyway gets an empty message,
    // which it will refuse for want of recipients.
    _out.append(".").append(crlf);
    return enter(session_state::data_cancel);
  }
  if (r.code >= 400) {
    settle_pending(outcome_of(r.code), r);
    return finish(true);
  }
  protocol_error("unexpected reply to DATA");
}

void upstream_session::start_body() {
  if (_framing == body_framing::bdat) {
    _out.append("BDAT ").append(std::to_string(_env.size)).append(" LAST").append(crlf);
  }
  enter(session_state::body);
  push(event::send_body);
}

void upstream_session::body_sent(bool at_line_start) {
  if (_state != session_state::body) misuse("body_sent", _state);
  // RFC 5321 4.1.1.4: the data ends with CRLF "." CRLF; a raw body that
  // did not end its last line gets the CRLF here.
  if (_framing != body_framing::bdat) _out.append(at_line_start ? ".\r\n" : "\r\n.\r\n");
  enter(session_state::body_reply);
}

void upstream_session::on_body_reply(reply& r) {
  if (r.code / 100 == 3) return protocol_error("unexpected reply to the end of the message");
  // RFC 5321 4.1.1.4 / RFC 3030 3: one reply for the whole message, for
  // every accepted recipient; the transaction is over either way.
  settle_pending(outcome_of(r.code), r);
  if (!_next_queued) return finish(false);
  done();
  start_next();
}

void upstream_session::on_after_cancel(reply& r) {
  if (r.code / 100 == 3) return protocol_error("unexpected reply to an empty DATA");
  finish(true);
}

void upstream_session::on_rset(reply& r) {
  if (positive(r)) {
    enter(session_state::ready);
    return push(event::ready);
  }
  std::string why = "RSET refused: " + r.one_line();
  end_connection(session_state::failed, outcome::temporary, std::move(r), std::move(why));
}

bool upstream_session::quit() {
  if (_state != session_state::ready) return false;
  _out.append("QUIT").append(crlf);
  enter(session_state::quit);
  return true;
}

event upstream_session::abort(std::string_view why) {
  if (_state == session_state::closed || _state == session_state::failed) return next_event();
  std::string text = std::string(why) + " while " + activity(_state);
  const session_state to =
      _state == session_state::quit ? session_state::closed : session_state::failed;
  end_connection(to, outcome::temporary, make_reply(451, "4.4.2", text), text);
  return next_event();
}

void upstream_session::settle(std::size_t i, outcome o, const reply& r) {
  _results[i].status = o;
  _results[i].response = r;
  _phase[i] = rcpt_phase::settled;
}

void upstream_session::settle_pending(outcome o, const reply& r) {
  for (std::size_t i = 0; i < _phase.size(); ++i) {
    if (_phase[i] != rcpt_phase::settled) settle(i, o, r);
  }
}

void upstream_session::finish(bool needs_rset) {
  done();
  // RFC 5321 4.1.1.5: RSET clears a transaction that ended early, so the
  // connection can carry the next message.
  if (needs_rset) {
    _out.append("RSET").append(crlf);
    return enter(session_state::rset);
  }
  enter(session_state::ready);
  push(event::ready);
}

void upstream_session::end_connection(session_state to, outcome o, reply r,
                                      std::string description) {
  const bool in_transaction = _state == session_state::mail || _state == session_state::rcpt ||
                              _state == session_state::data || _state == session_state::body ||
                              _state == session_state::body_reply ||
                              _state == session_state::data_cancel;
  if (in_transaction) {
    settle_pending(outcome::temporary, r);
    done();
  }
  // A transaction queued behind the end of data ends with it.
  if (_next_queued) {
    start_next();
    settle_pending(outcome::temporary, r);
    done();
  }
  _reason = {o, std::move(r), std::move(description)};
  enter(to);
  push(to == session_state::closed ? event::closed : event::failed);
}

void upstream_session::protocol_error(std::string_view what) {
  std::string text = "Upstream protocol error: " + std::string(what) + " while " + activity(_state);
  end_connection(session_state::failed, outcome::temporary, make_reply(451, "4.5.0", text), text);
}

}  // namespace ringrelay::delivery
