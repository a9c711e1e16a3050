#include <algorithm>
#include <ringrelay/log/log.hh>
#include <ringrelay/smtp/session.hh>
#include <string>

namespace ringrelay::smtp {
namespace {

constexpr std::uint16_t bit(state s) {
  return std::uint16_t(1u << static_cast<unsigned>(s));
}

// States in which the client is between transactions or building one.
constexpr std::uint16_t any_command_state = bit(state::fresh) | bit(state::ready) |
                                            bit(state::mail) | bit(state::rcpt) |
                                            bit(state::bdat_next);

// "AUTH " at the start of a line, in any case: the one command whose line
// may exceed the command-line limit (RFC 4954 4).
bool is_auth_command(std::string_view line) {
  return line.size() >= 5 && (line[0] | 0x20) == 'a' && (line[1] | 0x20) == 'u' &&
         (line[2] | 0x20) == 't' && (line[3] | 0x20) == 'h' && line[4] == ' ';
}

bool has_non_ascii(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) > 0x7f; });
}

}  // namespace

// The command table (CONVENTIONS.md §5): the states a verb is allowed in are
// the check step; the member function is the act step. Out-of-sequence
// replies come from `sequence_error`, which knows what the client missed.
struct session::command_entry {
  verb v;
  std::uint16_t allowed;
  event (session::*act)(const command&);
};

const session::command_entry session::commands[] = {
    {verb::ehlo, any_command_state, &session::on_ehlo},
    {verb::helo, any_command_state, &session::on_helo},
    {verb::mail, bit(state::ready), &session::on_mail},
    {verb::rcpt, bit(state::mail) | bit(state::rcpt), &session::on_rcpt},
    {verb::data, bit(state::rcpt), &session::on_data},
    // BDAT is allowed everywhere a command is: a refused chunk must still
    // be read and thrown away (RFC 3030 §4.2), which on_bdat handles.
    {verb::bdat, any_command_state, &session::on_bdat},
    {verb::rset, any_command_state, &session::on_rset},
    {verb::noop, any_command_state, &session::on_noop},
    {verb::quit, any_command_state, &session::on_quit},
    {verb::vrfy, any_command_state, &session::on_vrfy},
    {verb::help, any_command_state, &session::on_help},
    // RFC 3207 4: not inside a transaction.
    {verb::starttls, bit(state::fresh) | bit(state::ready), &session::on_starttls},
    // RFC 4954 4: not inside a transaction.
    {verb::auth, bit(state::fresh) | bit(state::ready), &session::on_auth},
};

const char* state_name(state s) {
  switch (s) {
    case state::fresh:
      return "fresh";
    case state::ready:
      return "ready";
    case state::mail:
      return "mail";
    case state::rcpt:
      return "rcpt";
    case state::data:
      return "data";
    case state::bdat:
      return "bdat";
    case state::bdat_next:
      return "bdat_next";
    case state::auth:
      return "auth";
    case state::authenticating:
      return "authenticating";
    case state::verifying_sender:
      return "verifying_sender";
    case state::committing:
      return "committing";
    case state::closing:
      return "closing";
  }
  return "?";
}

session::session(const session_config& cfg, peer_info peer)
    : _cfg(cfg),
      _peer(std::move(peer)),
      _scanner(scan_limits{cfg.limits.message_size, cfg.limits.text_line}) {}

void session::enter(state s) {
  if (s == _state) return;
  RR_DEBUG("smtp state client=%s %s -> %s", _peer.address.c_str(), state_name(_state),
           state_name(s));
  _state = s;
}

void session::reply(std::string_view line) {
  _out.append(line);
  _out.append("\r\n");
}

void session::greet() {
  reply("220 " + _cfg.hostname + " ESMTP ringrelay ready");
}

void session::refuse_busy(std::string_view why) {
  reply("421 4.3.2 " + _cfg.hostname + " " + std::string(why) + "; try again later");
  enter(state::closing);
}

void session::timeout() {
  reply("421 4.4.2 " + _cfg.hostname + " Error: idle timeout exceeded, closing connection");
  enter(state::closing);
}

void session::shutdown() {
  reply("421 4.3.2 " + _cfg.hostname + " Service shutting down, try again later");
  enter(state::closing);
}

void session::reset_transaction() {
  // Whatever the transaction reserved and did not commit goes back.
  if (_charger) _charger->release();
  _declared_size = 0;
  _sender.clear();
  _recipients.clear();
  _smtputf8 = false;
  _body = body_type::unspecified;
  _hops.reset();
  _message_open = false;
  _bdat_used = false;
  _bdat_last = false;
  _bdat_refused = false;
  _chunk_left = 0;
}

feed_result session::feed(std::string_view in) {
  if (_state == state::closing || _state == state::committing || _state == state::authenticating ||
      _state == state::verifying_sender || in_body())
    return {0, event::need_more};
  auto nl = in.find('\n');
  // AUTH lines may be longer than commands (RFC 4954 4: 12288 octets); the
  // command limit is applied per line below.
  std::size_t limit =
      std::max<std::size_t>(_cfg.limits.command_line, auth::sasl_exchange::max_line);
  if (nl == std::string_view::npos) {
    // Keep at most one command line; beyond the limit drop bytes until the
    // end of the line and answer then, so the reply stays in sequence.
    if (_line_overflow || _line.size() + in.size() > limit) {
      if (!_line_overflow) _overflow_auth = is_auth_command(_line.empty() ? in : _line);
      _line_overflow = true;
      _line.clear();
    } else {
      _line.append(in);
    }
    return {in.size(), event::need_more};
  }
  std::size_t consumed = nl + 1;
  if (_line_overflow || _line.size() + consumed > limit) {
    if (!_line_overflow) _overflow_auth = is_auth_command(_line.empty() ? in : _line);
    _line_overflow = false;
    _line.clear();
    if (_state == state::auth || _overflow_auth) {
      bool auth_command = _state != state::auth;
      _overflow_auth = false;
      if (auth_command) {
        // RFC 4954 4: an AUTH line over 12288 octets.
        reply("500 5.5.6 Error: authentication exchange line is too long");
        return {consumed, event::none};
      }
      return {consumed, sasl_result(_sasl.line_too_long())};
    }
    reply("500 5.5.2 Error: command line too long (the limit is " +
          std::to_string(_cfg.limits.command_line) + " octets including CRLF)");
    return {consumed, event::none};
  }
  std::size_t line_octets = _line.size() + consumed;  // CRLF included
  std::string_view line;
  if (_line.empty()) {
    line = in.substr(0, nl);
  } else {
    _line.append(in.substr(0, nl));
    line = _line;
  }
  // RFC 5321 2.3.8 wants CRLF; a bare LF ending a command line is accepted
  // as most servers do (it cannot smuggle anything outside a message).
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (_state == state::auth) {
    event ev = sasl_result(_sasl.step(line));
    _line.clear();
    return {consumed, ev};
  }
  if (!is_auth_command(line) && line_octets > _cfg.limits.command_line) {
    _line.clear();
    reply("500 5.5.2 Error: command line too long (the limit is " +
          std::to_string(_cfg.limits.command_line) + " octets including CRLF)");
    return {consumed, event::none};
  }
  auto r = execute(line);
  _line.clear();
  return {consumed, r.ev};
}

feed_result session::execute(std::string_view line) {
  command cmd;
  parse_reply err;
  if (!parse_command(line, parse_options{_cfg.limits.message_size}, cmd, err)) {
    reply(std::to_string(err.code) + " " + std::string(err.enhanced) + " " + std::string(err.text));
    return {0, event::none};
  }
  for (const auto& e : commands) {
    if (e.v != cmd.v) continue;
    if (!(e.allowed & bit(_state))) {
      if (cmd.v == verb::starttls || cmd.v == verb::auth) {
        reply(std::string("503 5.5.1 Error: ") + (cmd.v == verb::auth ? "AUTH" : "STARTTLS") +
              " is not allowed inside a transaction; RSET first");
      } else if (_state == state::fresh) {
        reply("503 5.5.1 Error: send HELO or EHLO first");
      } else if (cmd.v == verb::data && _state == state::bdat_next) {
        reply("503 5.5.1 Error: DATA cannot follow BDAT in one message");
      } else if (_state == state::bdat_next) {
        // A MAIL exists and a message is half transferred, so MAIL and RCPT
        // alike are answered with what the client must do next.
        reply("503 5.5.1 Error: finish the BDAT transfer or RSET first");
      } else if (cmd.v == verb::mail) {
        reply("503 5.5.1 Error: nested MAIL command");
      } else if (cmd.v == verb::data && _state == state::mail) {
        reply("503 5.5.1 Error: need RCPT command");
      } else {
        reply("503 5.5.1 Error: need MAIL command");
      }
      return {0, event::none};
    }
    return {0, (this->*e.act)(cmd)};
  }
  reply("500 5.5.1 Error: command not recognized");
  return {0, event::none};
}

event session::on_ehlo(const command& c) {
  event ev = _message_open ? event::discard : event::none;
  reset_transaction();
  _helo.assign(c.arg);
  _esmtp = true;
  reply("250-" + _cfg.hostname);
  reply("250-PIPELINING");
  reply("250-SIZE " + std::to_string(_cfg.limits.message_size));
  reply("250-8BITMIME");
  reply("250-SMTPUTF8");
  reply("250-ENHANCEDSTATUSCODES");
  if (starttls_offered()) reply("250-STARTTLS");
  if (auth_offered()) reply("250-AUTH PLAIN LOGIN");
  reply("250 CHUNKING");
  enter(state::ready);
  return ev;
}

event session::on_helo(const command& c) {
  event ev = _message_open ? event::discard : event::none;
  reset_transaction();
  _helo.assign(c.arg);
  _esmtp = false;
  reply("250 " + _cfg.hostname);
  enter(state::ready);
  return ev;
}

event session::on_mail(const command& c) {
  // Only authenticated accounts and trusted networks may send: ringrelay
  // is never an open relay.
  if (!_peer.trusted && _account.empty()) {
    reply("530 5.7.0 Authentication required");
    return event::none;
  }
  if (_cfg.mail_policy) {
    std::string refusal = _cfg.mail_policy(_account, c.address);
    if (!refusal.empty()) {
      reply(refusal);
      return event::none;
    }
  }
  if (has_non_ascii(c.address) && !c.smtputf8) {
    reply("553 5.6.7 Error: a non-ASCII sender address needs the SMTPUTF8 parameter");
    return event::none;
  }
  // BINARYMIME (RFC 3030) is not advertised: binary bodies could not be
  // forwarded to upstreams that lack it without conversion, which we never do.
  if (c.body == body_type::binary_mime) {
    reply("555 5.5.4 Error: BODY=BINARYMIME is not supported here; send the message as 8BITMIME");
    return event::none;
  }
  _sender.assign(c.address);
  _declared_size = c.has_size ? c.size : 0;
  _smtputf8 = c.smtputf8;
  _body = c.body;
  // The null sender (bounces) has no domain to verify.
  if (_cfg.verify_sender && !_sender.empty()) {
    enter(state::verifying_sender);
    return event::verify_sender;
  }
  reply("250 2.1.0 Ok");
  enter(state::mail);
  return event::none;
}

void session::sender_verified(std::string_view refusal) {
  if (_state != state::verifying_sender) return;
  if (refusal.empty()) {
    reply("250 2.1.0 Ok");
    enter(state::mail);
    return;
  }
  reply(refusal);
  reset_transaction();
  enter(state::ready);
}

event session::on_rcpt(const command& c) {
  if (_recipients.size() >= _cfg.limits.recipients) {
    reply("452 4.5.3 Error: too many recipients (the limit is " +
          std::to_string(_cfg.limits.recipients) + " per message; send the rest in another one)");
    return event::none;
  }
  if (has_non_ascii(c.address) && !_smtputf8) {
    reply("553 5.6.7 Error: a non-ASCII recipient address needs SMTPUTF8 on MAIL FROM");
    return event::none;
  }
  if (_charger) {
    // One relay per recipient, or what MAIL's SIZE= implies; settled to the
    // exact charge at the end of data.
    std::string refusal = _charger->reserve(size_multiplier(_declared_size));
    if (!refusal.empty()) {
      RR_INFO("recipient refused client=%s account=%s from=<%s> to=<%s> rcpts=%zu reason=\"%s\"",
              _peer.address.c_str(), _account.empty() ? "-" : _account.c_str(), _sender.c_str(),
              std::string(c.address).c_str(), _recipients.size(), refusal.c_str());
      reply(refusal);
      return event::none;
    }
  }
  _recipients.emplace_back(c.address);
  reply("250 2.1.5 Ok");
  enter(state::rcpt);
  return event::none;
}

event session::on_data(const command&) {
  _scanner.reset(data_scanner::mode::data);
  _message_open = true;
  reply("354 End data with <CR><LF>.<CR><LF>");
  enter(state::data);
  return event::body;
}

event session::on_bdat(const command& c) {
  _chunk_left = c.chunk_size;
  if (_state == state::rcpt || _state == state::bdat_next) {
    if (_state == state::rcpt) {
      _scanner.reset(data_scanner::mode::bdat);
      _message_open = true;
      _bdat_used = true;
    }
    _bdat_last = c.last;
    _bdat_refused = false;
  } else {
    reply(_state == state::mail    ? "503 5.5.1 Error: need RCPT command"
          : _state == state::fresh ? "503 5.5.1 Error: send HELO or EHLO first"
                                   : "503 5.5.1 Error: need MAIL command");
    _bdat_refused = true;
    _bdat_last = false;
  }
  _resume = _state;
  enter(state::bdat);
  if (_chunk_left == 0) return finish_chunk();
  return event::body;
}

event session::finish_chunk() {
  if (_bdat_refused) {
    _bdat_refused = false;
    enter(_resume);
    return event::none;
  }
  if (_bdat_last) return end_of_message();
  reply("250 2.0.0 Ok: " + std::to_string(_scanner.wire_size()) + " octets received");
  enter(state::bdat_next);
  return event::none;
}

body_step session::scan(std::span<const char> in) {
  body_step step{};
  if (_state == state::data) {
    auto r = _scanner.feed(in);
    step.consumed = r.consumed;
    step.body = r.body;
    step.replay = r.replay;
    if (!_hops.done()) {
      _hops.feed({held_back_text, r.replay});
      _hops.feed({in.data(), r.body});
    }
    // Past the size limit the rest is read but not stored: the message is
    // refused at its end and memory and disk stay bounded.
    step.store = !_scanner.too_big();
    step.ev = r.end ? end_of_message() : event::need_more;
    return step;
  }
  if (_state != state::bdat) return {0, 0, 0, false, event::need_more};
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), _chunk_left));
  step.consumed = n;
  _chunk_left -= n;
  if (!_bdat_refused) {
    _scanner.feed(in.first(n));
    if (!_hops.done()) _hops.feed({in.data(), n});
    step.body = n;
    step.store = !_scanner.too_big();
  }
  step.ev = _chunk_left == 0 ? finish_chunk() : event::need_more;
  return step;
}

event session::end_of_message() {
  std::string why;
  if (_scanner.too_big()) {
    why = "552 5.3.4 Error: message size exceeds the limit of " +
          std::to_string(_cfg.limits.message_size) + " octets";
  } else if (_scanner.bare_cr_or_lf()) {
    why =
        "550 5.6.0 Error: message contains a bare CR or LF; every line must end with CRLF "
        "(RFC 5321 2.3.8)";
  } else if (_scanner.line_too_long()) {
    why = "550 5.6.0 Error: message has a line longer than " +
          std::to_string(_cfg.limits.text_line) +
          " octets including CRLF (RFC 5321 4.5.3.1.6); wrap it or use a transfer encoding";
  } else if (_hops.count() > _cfg.limits.hops) {
    why = "554 5.4.6 Error: too many hops: the message has " + std::to_string(_hops.count()) +
          " Received headers (the limit is " + std::to_string(_cfg.limits.hops) +
          "); it is probably in a mail loop";
  }
  if (!why.empty()) {
    RR_INFO("message refused client=%s from=<%s> rcpts=%zu size=%llu reason=\"%s\"",
            _peer.address.c_str(), _sender.c_str(), _recipients.size(),
            static_cast<unsigned long long>(_scanner.size()), why.c_str());
    reply(why);
    reset_transaction();
    enter(state::ready);
    return event::discard;
  }
  if (_charger) {
    std::string refusal =
        _charger->settle(_recipients.size() * std::uint64_t{size_multiplier(_scanner.size())});
    if (!refusal.empty()) {
      RR_INFO(
          "message refused client=%s account=%s from=<%s> rcpts=%zu size=%llu multiplier=%u "
          "relays=%llu reason=\"%s\"",
          _peer.address.c_str(), _account.empty() ? "-" : _account.c_str(), _sender.c_str(),
          _recipients.size(), static_cast<unsigned long long>(_scanner.size()),
          size_multiplier(_scanner.size()),
          static_cast<unsigned long long>(_recipients.size() * size_multiplier(_scanner.size())),
          refusal.c_str());
      reply(refusal);
      reset_transaction();
      enter(state::ready);
      return event::discard;
    }
  }
  enter(state::committing);
  return event::commit;
}

void session::committed(std::string_view queue_id) {
  if (_charger) _charger->committed();
  reply("250 2.0.0 Ok: queued as " + std::string(queue_id));
  reset_transaction();
  enter(state::ready);
}

void session::commit_failed(commit_error e) {
  reply(e == commit_error::no_space
            ? "452 4.3.1 Error: insufficient system storage, message not accepted; try again later"
            : "451 4.3.0 Error: local error while storing the message, not accepted; try again "
              "later");
  reset_transaction();
  enter(state::ready);
}

event session::on_rset(const command&) {
  event ev = _message_open ? event::discard : event::none;
  reset_transaction();
  reply("250 2.0.0 Ok");
  if (_state != state::fresh) enter(state::ready);
  return ev;
}

event session::on_noop(const command&) {
  reply("250 2.0.0 Ok");
  return event::none;
}

event session::on_quit(const command&) {
  reply("221 2.0.0 Bye");
  enter(state::closing);
  return event::close;
}

event session::on_vrfy(const command&) {
  reply("252 2.5.0 Cannot verify the user; send the message and delivery will be attempted");
  return event::none;
}

event session::on_help(const command&) {
  std::string text = "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP";
  if (starttls_offered()) text += " STARTTLS";
  if (auth_offered()) text += " AUTH";
  reply(text);
  return event::none;
}

event session::on_starttls(const command&) {
  if (tls()) {
    reply("503 5.5.1 Error: TLS is already active");
    return event::none;
  }
  if (!_cfg.starttls) {
    reply("502 5.5.1 Error: STARTTLS is not offered on this port");
    return event::none;
  }
  reply("220 2.0.0 Ready to start TLS");
  return event::starttls;
}

void session::tls_started(std::string_view version, std::string_view cipher) {
  _tls_info.assign(version);
  _tls_info += ' ';
  _tls_info += cipher;
  // RFC 3207 4.2: the client must discard what it knew; so does the server,
  // including a login made in the clear.
  reset_transaction();
  _helo.clear();
  _account.clear();
  _esmtp = false;
  _line.clear();
  _line_overflow = false;
  enter(state::fresh);
}

event session::on_auth(const command& c) {
  if (!_cfg.auth) {
    reply("502 5.5.1 Error: AUTH is not offered here");
    return event::none;
  }
  if (!_account.empty()) {
    reply("503 5.5.1 Error: already authenticated");
    return event::none;
  }
  if (!_esmtp) {
    reply("503 5.5.1 Error: send EHLO before AUTH");
    return event::none;
  }
  if (_cfg.auth_require_tls && !tls()) {
    reply(
        "538 5.7.11 Encryption required for requested authentication mechanism; use STARTTLS "
        "first");
    return event::none;
  }
  std::string_view arg = c.arg;
  auto space = arg.find(' ');
  std::string_view mechanism = arg.substr(0, space);
  std::string_view initial = space == std::string_view::npos ? "" : arg.substr(space + 1);
  return sasl_result(_sasl.start(mechanism, initial));
}

event session::sasl_result(const auth::sasl_exchange::result& r) {
  switch (r.st) {
    case auth::sasl_exchange::status::challenge:
      reply(r.reply);
      enter(state::auth);
      return event::none;
    case auth::sasl_exchange::status::error:
      reply(r.reply);
      enter(_esmtp ? state::ready : state::fresh);
      return event::none;
    case auth::sasl_exchange::status::credentials:
      enter(state::authenticating);
      return event::authenticate;
  }
  return event::none;
}

void session::auth_succeeded(std::string_view account) {
  _account.assign(account);
  reply("235 2.7.0 Authentication successful");
  enter(state::ready);
}

void session::auth_failed(bool login_hint) {
  reply(login_hint ? "535 5.7.8 Authentication credentials invalid; log in with your account's "
                     "username, not an email address"
                   : "535 5.7.8 Authentication credentials invalid");
  enter(state::ready);
}

void session::auth_temporary_failure() {
  reply("454 4.7.0 Temporary authentication failure; try again later");
  enter(state::ready);
}

void session::auth_blocked() {
  reply("421 4.7.0 " + _cfg.hostname +
        " Too many failed authentication attempts from your address; try again later");
  enter(state::closing);
}

}  // namespace ringrelay::smtp
