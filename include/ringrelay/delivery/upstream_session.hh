// delivery/upstream_session — the SMTP client side of one upstream connection.
//
// A pure protocol core: upstream replies go in as bytes, commands come out
// as bytes, and events tell the glue (the dialer) what to do. It does no
// I/O, owns no socket or timer, and never touches the message body: the
// glue sends the body itself (spliced from the spool) when told to.
//
// Dialogue (RFC 5321, 2920, 1870, 6152, 6531, 3030):
//   greeting 220 → EHLO (HELO when EHLO gets 5xx) → `ready`;
//   then per message: MAIL, RCPT..., DATA / body / "." or BDAT n LAST / body,
//   and `message_done` with one result per recipient; `ready` again for the
//   next message on the same connection (after an RSET when the transaction
//   ended early). With PIPELINING, MAIL, every RCPT and DATA go out as one
//   batch (DATA last, RFC 2920 3.1) and the replies are matched in order;
//   without it, one command at a time. BDAT is used only for bodies stored
//   raw (received by BDAT) when the upstream offers CHUNKING, and is sent
//   only once some RCPT was accepted, so a refused message never costs its
//   body's bandwidth.
//
// Local refusals, decided before anything is sent (the whole message fails
// permanently with a synthesized reply, never downgraded or sent raw):
//   - SMTPUTF8 needed, upstream lacks it (RFC 6531 3.5): 554 5.6.7 when an
//     address is non-ASCII, otherwise (UTF-8 headers) 554 5.6.9;
//   - 8-bit body, upstream lacks 8BITMIME (RFC 6152 3): 554 5.6.3
//     (conversion required but not supported: we do not convert to 7 bit);
//   - size above the upstream's SIZE limit (RFC 1870 6.1): 552 5.3.4;
//   - sender with CR, LF or NUL: 550 5.1.7; such a recipient (or an empty
//     one): 550 5.1.3 for that recipient only (no command injection).
//
// Events. Every call that can raise events (`feed`, `start_message`,
// `abort`) queues them in order and returns the next queued one; the glue
// then calls `next_event()` until it returns `event::none`, before it feeds
// more input.
// `feed` always consumes all of its input.
//   ready         `start_message` may be called (after the greeting and
//                 EHLO/HELO, and after every `message_done`: at once, or once
//                 the RSET is answered; not when a transaction was queued
//                 behind it with `queue_next`, which then goes on);
//   send_body     send `output()`, then the body as `framing()` says, then
//                 call `body_sent()` and send `output()` again;
//   message_done  `results()` holds one result per recipient of the message;
//   closed        orderly end: the reply to QUIT, or a 421 after `ready`
//                 (RFC 5321 3.8); `reason()` has the reply;
//   failed        the connection is unusable: greeting/EHLO/HELO refused
//                 (421 included: the connection never became usable, so the
//                 glue tries the next host), an upstream protocol violation,
//                 or `abort()`; `reason()` says why and whether it is
//                 permanent for this host.
// A transaction cut short by `closed` or `failed` first gets `message_done`,
// with every recipient not yet settled marked temporary. After `closed` or
// `failed` the glue stops sending (a body too) and closes the socket; input
// fed after that is ignored. No QUIT is queued after a refused greeting:
// the glue just closes.
//
// Body framing and the glue's loop at `send_body`:
//   data_as_stored        the stored body is already the dot-stuffed wire
//                         form (received by DATA): send [Received][body];
//   data_stuffing_needed  raw body (received by BDAT), no CHUNKING upstream:
//                         send [Received] then the body through `dot_stuff`;
//   bdat                  `output()` holds "BDAT n LAST\r\n" with n the
//                         envelope's `size`; send it, then [Received][body]
//                         unchanged, exactly n octets.
// Then `body_sent(at_line_start)`; for DATA `output()` now holds the
// terminating ".\r\n" (RFC 5321 4.1.1.4), preceded by CRLF when the body did
// not end with one (only possible for raw bodies: pass dot_stuff's flag).
//
// Errors: protocol violations become `event::failed`, never exceptions.
// Calling a method in the wrong state is a bug in the glue and aborts.
// One session per connection, used by its shard only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <ringrelay/delivery/reply.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::delivery {

// Appends `in` to `out`, dot-stuffed (RFC 5321 4.5.2: a line that starts with
// "." gets one more). `at_line_start` carries the position across calls:
// start with true (a body follows the DATA line or the Received header) and
// hand the final value to `upstream_session::body_sent`.
void dot_stuff(std::string_view in, bool& at_line_start, std::string& out);

// What the upstream offered in its EHLO reply (all false after HELO).
struct extensions {
  bool pipelining = false;             // RFC 2920
  bool chunking = false;               // RFC 3030
  bool eight_bit_mime = false;         // RFC 6152
  bool smtputf8 = false;               // RFC 6531
  bool starttls = false;               // RFC 3207, recorded only
  bool enhanced_status_codes = false;  // RFC 2034
  bool size = false;                   // RFC 1870
  std::uint64_t max_size = 0;          // the SIZE limit; 0: none announced
};

struct envelope {
  // Addresses without angle brackets, as accepted; "" is the null sender.
  std::string sender;
  std::vector<std::string> recipients;
  // Octets that will be sent (Received header included): SIZE= (RFC 1870),
  // and the exact BDAT chunk size when the body goes by BDAT.
  std::uint64_t size = 0;
  bool eight_bit = false;    // the body has octets above 0x7f
  bool smtputf8 = false;     // non-ASCII addresses, or the client asked
  bool body_is_raw = false;  // stored unstuffed (received by BDAT)
};

enum class outcome : std::uint8_t { delivered, temporary, permanent };

struct recipient_result {
  outcome status = outcome::temporary;
  // The upstream's reply that decided it (RCPT refusal, MAIL or DATA
  // refusal, reply to the end of data, 421), or a synthesized one.
  reply response;
};

// Why the connection ended (`closed` or `failed`).
struct close_reason {
  // permanent only for a 5xx greeting, or a 5xx HELO after a 5xx EHLO.
  outcome status = outcome::temporary;
  reply response;           // the upstream's reply, or a synthesized one
  std::string description;  // one line for the log
};

// start_tls: the upstream accepted STARTTLS (220): the glue runs the TLS
// handshake over the connection, then calls tls_established() (EHLO again,
// RFC 3207 4.2), or abort() when the handshake fails.
enum class event : std::uint8_t { none, ready, send_body, message_done, closed, failed, start_tls };

enum class body_framing : std::uint8_t { data_as_stored, data_stuffing_needed, bdat };

enum class session_state : std::uint8_t {
  greeting,     // connected, waiting for the 220
  ehlo,         // EHLO sent
  helo,         // HELO sent (EHLO got 5xx)
  ready,        // idle between transactions
  mail,         // waiting for the reply to MAIL
  rcpt,         // waiting for the reply to an RCPT
  data,         // waiting for the reply to DATA
  body,         // the glue is sending the body
  body_reply,   // waiting for the reply to the end of data / BDAT LAST
  data_cancel,  // 354 with no accepted recipient: sent "." alone, waiting
  rset,         // RSET sent after a transaction that ended early
  quit,         // QUIT sent
  starttls,     // STARTTLS sent
  handshake,    // the glue runs the TLS handshake
  closed,       // orderly end; terminal
  failed,       // unusable; terminal
};

const char* to_string(session_state s);
const char* to_string(event e);

class upstream_session {
 public:
  // `hostname`: our name, sent in EHLO/HELO.
  // `starttls`: use STARTTLS when the upstream offers it (opportunistic,
  // RFC 7435). Without the offer the session goes on in plaintext; a
  // refused STARTTLS (4xx/5xx) too. A failed handshake is the glue's abort.
  explicit upstream_session(std::string hostname, bool starttls = false);

  // Bytes to send upstream. The glue sends them and clears the string or
  // calls `consume(n)` with the octets it sent.
  std::string& output() { return _out; }
  void consume(std::size_t n) { _out.erase(0, n); }

  // Upstream bytes, any split. Returns the first event raised.
  event feed(std::string_view bytes);
  event next_event();

  // Starts a transaction; only in `ready`.
  event start_message(envelope env);
  // Pipelines the next transaction behind the end of data just sent (RFC
  // 2920 3.1): MAIL, RCPT and DATA go to `output()` now, and the
  // transaction starts when the previous one's reply arrives: its
  // `message_done`, then the new one's events (no `ready` between). Only in
  // `body_reply` with PIPELINING offered, one at a time, for a DATA body
  // behind a DATA body, and for a message start_message would not refuse
  // locally. False, with nothing written, otherwise: start it after `ready`.
  bool queue_next(envelope env);
  bool next_queued() const { return _next_queued; }
  // The glue has sent the whole body; only in `body`.
  void body_sent(bool at_line_start = true);
  // Sends QUIT; only in `ready` (elsewhere the glue just closes). Returns
  // false in any other state.
  bool quit();
  // The glue lost the connection or timed out: recipients not yet settled
  // become temporary with "451 4.4.2 <why> while <what we were doing>".
  // Raises `failed` (`closed` while QUIT was pending).
  event abort(std::string_view why);
  // The TLS handshake after start_tls succeeded: EHLO is sent again.
  void tls_established();
  bool tls() const { return _tls; }

  session_state state() const { return _state; }
  const extensions& offered() const { return _ext; }
  body_framing framing() const { return _framing; }
  // The results of the transaction whose `message_done` `next_event()` (or
  // `feed`) handed out last, parallel to its envelope's recipients; valid
  // until the next `message_done` is handed out.
  const std::vector<recipient_result>& results() const { return _reported; }
  const close_reason& reason() const { return _reason; }

 private:
  enum class rcpt_phase : std::uint8_t { waiting, accepted, settled };

  void enter(session_state to);
  void push(event e);
  event pop_first();

  void on_reply(reply& r);
  void on_greeting(reply& r);
  void on_ehlo(reply& r);
  void on_helo(reply& r);
  void on_mail(reply& r);
  void on_rcpt(reply& r);
  void on_data(reply& r);
  void on_body_reply(reply& r);
  void on_after_cancel(reply& r);
  void on_rset(reply& r);
  void on_starttls(reply& r);

  bool refuse_locally();
  bool refused_locally(const envelope& env) const;
  body_framing framing_for(const envelope& env) const;
  void begin_transaction(envelope env);
  void start_next();
  void done();
  void write_mail(const envelope& env);
  void write_rcpt(const std::string& recipient);
  void write_rcpt();
  void after_last_rcpt();
  void start_body();
  void settle(std::size_t i, outcome o, const reply& r);
  void settle_pending(outcome o, const reply& r);
  void finish(bool needs_rset);
  void end_connection(session_state to, outcome o, reply r, std::string description);
  void protocol_error(std::string_view what);

  std::string _hostname;
  bool _try_starttls = false;
  bool _tls = false;
  std::string _out;
  reply_parser _parser;
  session_state _state = session_state::greeting;
  extensions _ext;

  // The current transaction.
  envelope _env;
  std::vector<recipient_result> _results;
  std::vector<rcpt_phase> _phase;
  std::vector<std::size_t> _to_send;  // recipients that get an RCPT, in order
  std::size_t _rcpt_written = 0;
  std::size_t _rcpt_answered = 0;
  std::size_t _accepted = 0;
  bool _mail_ok = false;
  bool _pipelined = false;
  body_framing _framing = body_framing::data_as_stored;
  // The transaction queued behind the end of data (queue_next).
  envelope _next;
  bool _next_queued = false;
  // Results of ended transactions whose message_done is not handed out
  // yet, and of the one handed out last.
  std::deque<std::vector<recipient_result>> _finished;
  std::vector<recipient_result> _reported;

  close_reason _reason;

  // Raised events not yet handed out. One reply raises at most four
  // (message_done, then ready / closed / failed, or with a queued
  // transaction a second message_done before closed / failed), and the
  // glue drains them before it feeds more; overflow is a glue bug.
  std::array<event, 8> _events{};
  std::size_t _event_head = 0;
  std::size_t _event_count = 0;
};

}  // namespace ringrelay::delivery
