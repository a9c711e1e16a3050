// smtp/session — the server side of one SMTP session, as a pure state machine.
//
// Bytes in, replies and events out; no I/O, no ring, no clock. The
// connection glue (smtp/connection) feeds it what the socket received and
// performs the events it returns:
//
//   feed(bytes)  in command mode, consumes at most one command line and acts
//                on it. Replies accumulate in `output()`; the glue sends them
//                once per loop turn, so a pipelined group (RFC 2920) is
//                answered in order with one write.
//   event::body  the session now expects message body octets (after DATA's
//                354, or a BDAT command): the glue passes them through
//                `scan`, which finds the end of data without copying and
//                tells which octets are body (for the spool).
//   event::commit the message ended well: the glue stores the message and
//                calls `committed(id)` once the spool's fdatasync covering it
//                has completed, or `commit_failed(err)`; the session replies.
//   event::discard the message ended with an error already answered (bare
//                LF, too big, ...): the glue drops what it spooled.
//   event::close the glue flushes the output and closes.
//
// Policy hooks that later modules fill (AUTH, sender verification at MAIL,
// quota reservation at RCPT, settlement at commit) are the check steps of
// the command table. Only authenticated sessions and clients in
// trusted_networks may send mail (530 5.7.0 otherwise): ringrelay is never
// an open relay.
//
// Errors inside a message are sticky and reported once, after the end of
// data (RFC 5321 4.1.1.4). One session per connection; the shard that owns
// the connection owns the session.
#pragma once

#include <cstdint>
#include <functional>
#include <ringrelay/auth/sasl.hh>
#include <ringrelay/smtp/command.hh>
#include <ringrelay/smtp/data_scanner.hh>
#include <ringrelay/smtp/hop_counter.hh>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::smtp {

struct session_limits {
  std::uint32_t command_line = 512;       // octets including CRLF
  std::uint32_t text_line = 1000;         // octets including CRLF
  std::uint32_t recipients = 1000;        // per message
  std::uint64_t message_size = 52428800;  // RFC 1870 size
  std::uint32_t hops = 50;                // Received: headers a message may carry
};

struct session_config {
  std::string hostname;
  session_limits limits;
  bool starttls = false;          // STARTTLS offered on this listener (a certificate is loaded)
  bool auth = false;              // AUTH offered (accounts are configured)
  bool auth_require_tls = false;  // AUTH only inside TLS (538 5.7.11 before)
  // Account policy at MAIL FROM: returns the refusal reply ("451 4.7.0
  // ...", "550 5.7.1 ...") or "" to accept. `account` is the authenticated
  // one, or "" for a trusted-network session without AUTH (the policy then
  // applies to the account those networks map to, if any).
  std::function<std::string(std::string_view account, std::string_view sender)> mail_policy;
  // Sender verification (SPEC.md §4): a MAIL FROM with a non-null sender
  // that passes every local check waits for event::verify_sender's answer.
  bool verify_sender = false;
};

struct peer_info {
  std::string address;   // "192.0.2.1" or "2001:db8::1"
  bool trusted = false;  // in trusted_networks: may relay without AUTH
  bool tls = false;      // implicit TLS: the session starts encrypted
};

enum class state : std::uint8_t {
  fresh,             // greeted, waiting for EHLO/HELO
  ready,             // after EHLO/HELO or RSET: waiting for MAIL
  mail,              // MAIL accepted: waiting for RCPT
  rcpt,              // at least one RCPT accepted: RCPT, DATA or BDAT
  data,              // DATA body streaming
  bdat,              // BDAT chunk streaming
  bdat_next,         // a non-LAST chunk was received: BDAT (or RSET) next
  committing,        // end of message: waiting for the spool
  auth,              // a SASL exchange: the next line is a response, not a command
  authenticating,    // credentials given: waiting for their verification
  verifying_sender,  // MAIL FROM given: waiting for the sender domain's check
  closing,           // QUIT or a fatal error: no more input is read
};

const char* state_name(state s);

enum class event : std::uint8_t {
  need_more,      // all input consumed without completing a command line
  none,           // a command was handled; feed the rest
  body,           // body octets expected: use scan()
  commit,         // store the message, then committed() / commit_failed()
  discard,        // drop the current message's spooled octets
  close,          // flush output, then close the connection
  starttls,       // send the 220 in plaintext, drop the rest of the input, and
                  // start a TLS handshake; then call tls_started()
  authenticate,   // verify credentials(), then auth_succeeded() / auth_failed()
  verify_sender,  // check sender_domain(), then sender_verified()
};

struct feed_result {
  std::size_t consumed;
  event ev;
};

// What `scan` found in one piece of body input.
struct body_step {
  std::size_t consumed;  // octets of the input used (body, terminator, chunk)
  std::size_t body;      // of those, octets of message body from the start
  std::uint8_t replay;   // emit this many octets of held_back_text first
  bool store;            // false when the message is being refused anyway
  event ev;              // need_more (more body expected), commit, discard,
                         // or none (a BDAT chunk ended: commands next)
};

enum class commit_error { io, no_space };

// Charges the relays of a session's messages (SPEC.md §5). The glue
// implements it over the account's lock-free counters; the session calls it
// at RCPT (`reserve` what one more recipient costs), at the end of data
// (`settle` to the exact charge), and when a transaction ends: `committed`
// once the message is stored (the charge stays), `release` otherwise.
// `reserve`/`settle` return "" or the refusal reply (452 4.7.1 ...).
class charger {
 public:
  virtual std::string reserve(std::uint64_t relays) = 0;
  virtual std::string settle(std::uint64_t relays) = 0;
  virtual void committed() = 0;
  virtual void release() = 0;

 protected:
  ~charger() = default;
};

class session {
 public:
  session(const session_config& cfg, peer_info peer);

  // Queues the 220 greeting.
  void greet();
  // Queues "421 4.3.2" (the spool cannot write) and closes.
  void refuse_busy(std::string_view why);
  // Queues the idle-timeout 421 4.4.2 and closes.
  void timeout();
  // Queues "421 4.3.2 shutting down" and closes (graceful stop).
  void shutdown();

  feed_result feed(std::string_view in);
  body_step scan(std::span<const char> in);

  // The TLS handshake finished (after STARTTLS, or for implicit TLS before
  // the greeting). After STARTTLS the session starts over: EHLO again
  // (RFC 3207 4.2).
  void tls_started(std::string_view version, std::string_view cipher);
  bool tls() const { return !_tls_info.empty(); }
  const std::string& tls_info() const { return _tls_info; }

  // AUTH: the credentials to verify after event::authenticate.
  const auth::sasl_credentials& credentials() const { return _sasl.credentials(); }
  void auth_succeeded(std::string_view account);
  // 535 5.7.8; `login_hint` adds that the login is the username, not an
  // email address (SPEC.md §3).
  void auth_failed(bool login_hint);
  // 454 4.7.0: the credentials could not be checked now (RFC 4954 6).
  void auth_temporary_failure();
  // 421 4.7.0 after too many failures from this address; the session closes.
  void auth_blocked();
  const std::string& account() const { return _account; }

  // Sender verification: after event::verify_sender, sender() is the
  // address to check. `sender_verified` with "" accepts the MAIL (250);
  // with a refusal reply ("451 4.1.8 ...", "550 5.7.27 ...") sends it and
  // ends the transaction.
  void sender_verified(std::string_view refusal);

  // The glue's charger, or none (nothing is charged). Set once, before input.
  void set_charger(charger* c) { _charger = c; }

  void committed(std::string_view queue_id);
  void commit_failed(commit_error e);

  // Replies waiting to be sent. The glue sends and clears them.
  std::string& output() { return _out; }

  state current() const { return _state; }
  bool in_body() const { return _state == state::data || _state == state::bdat; }
  // True from the first body octet of a message until commit/discard: the
  // glue has an open spool message.
  bool message_open() const { return _message_open; }

  // The envelope of the message being received (valid until the next MAIL).
  std::string_view helo() const { return _helo; }
  bool esmtp() const { return _esmtp; }
  const peer_info& peer() const { return _peer; }
  std::string_view sender() const { return _sender; }
  const std::vector<std::string>& recipients() const { return _recipients; }
  bool body_is_raw() const { return _bdat_used; }
  bool smtputf8() const { return _smtputf8; }
  body_type declared_body() const { return _body; }
  const data_scanner& scanner() const { return _scanner; }

 private:
  struct command_entry;
  static const command_entry commands[];

  void enter(state s);
  void reply(std::string_view line);  // one line, CRLF added
  // What EHLO advertises and HELP lists, as the session stands now.
  bool starttls_offered() const { return _cfg.starttls && !tls(); }
  bool auth_offered() const { return _cfg.auth && (tls() || !_cfg.auth_require_tls); }
  void reset_transaction();
  feed_result execute(std::string_view line);
  event end_of_message();
  event finish_chunk();

  event on_helo(const command& c);
  event on_ehlo(const command& c);
  event on_mail(const command& c);
  event on_rcpt(const command& c);
  event on_data(const command& c);
  event on_bdat(const command& c);
  event on_rset(const command& c);
  event on_noop(const command& c);
  event on_quit(const command& c);
  event on_vrfy(const command& c);
  event on_help(const command& c);
  event on_starttls(const command& c);
  event on_auth(const command& c);
  event sasl_result(const auth::sasl_exchange::result& r);

  const session_config& _cfg;
  peer_info _peer;
  state _state = state::fresh;
  std::string _out;
  std::string _line;  // a command line split across inputs
  bool _line_overflow = false;
  bool _overflow_auth = false;  // the over-long line is an AUTH command

  std::string _helo;
  bool _esmtp = false;
  std::string _tls_info;  // "TLSv1.3 TLS_AES_128_GCM_SHA256"; empty: plaintext
  auth::sasl_exchange _sasl;
  std::string _account;  // the authenticated account; empty before AUTH
  std::string _sender;
  std::vector<std::string> _recipients;
  bool _smtputf8 = false;
  body_type _body = body_type::unspecified;

  data_scanner _scanner;
  hop_counter _hops;
  bool _message_open = false;
  bool _bdat_used = false;
  bool _bdat_last = false;
  bool _bdat_refused = false;  // chunk is read and thrown away (RFC 3030 §4.2)
  std::uint64_t _chunk_left = 0;
  state _resume = state::ready;      // where a refused BDAT chunk returns to
  std::uint64_t _declared_size = 0;  // MAIL SIZE=, 0 when not given
  charger* _charger = nullptr;
};

}  // namespace ringrelay::smtp
