#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ringrelay/delivery/bounce.hh>
#include <ringrelay/delivery/service.hh>
#include <ringrelay/delivery/upstream_session.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/tls/tls.hh>
#include <ringrelay/util/clock.hh>
#include <ringrelay/util/id.hh>

namespace ringrelay::delivery {
namespace {

enum op : std::uint8_t {
  op_socket = 1,
  op_connect = 2,
  op_connect_timeout = 3,
  op_recv = 4,
  op_send = 5,
  op_splice = 6,
  op_read = 7,
  op_ignore = 8,
};

// Splice pairs (file -> pipe -> socket) per linked chain: enough to keep
// the socket busy, few enough to bound the submission queue use of one
// connection.
constexpr std::size_t splice_window = 32;
// The pipe a connection splices through: one pair of splices moves a whole
// body record, or a full one (spool::max_body_payload, which touches one
// page more than the pipe has slots unless page-aligned) in two. This is
// the default /proc/sys/fs/pipe-max-size, so it works unprivileged; when
// refused, the pipe keeps its default size and records go in more parts.
constexpr int pipe_size = 1 << 20;
// A pipe holds one page (or part of one) per slot.
const std::uint32_t page_size = static_cast<std::uint32_t>(sysconf(_SC_PAGESIZE));
// Octets read per step on the copying paths (TLS, dot-stuffing): bounds a
// connection's memory (the plaintext, its ciphertext or stuffed copy).
constexpr std::uint32_t copy_chunk = 64 << 10;
// An idle upstream connection is closed after this long without work.
constexpr std::int64_t idle_close_ms = 5000;

// Keeps client-supplied text inside one header line and its syntax:
// control octets become spaces, and the characters that delimit the
// Received fields ("(", ")", ";", "<", ">") are replaced.
std::string neutralise(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f)
      out.push_back(' ');
    else if (c == '(' || c == ')' || c == ';' || c == '<' || c == '>')
      out.push_back('_');
    else
      out.push_back(c);
  }
  return out;
}

}  // namespace

// The host of a relay host as configured: "[smtp.example.net]:587" →
// "smtp.example.net".
static std::string relayhost_name(std::string_view text) {
  if (text.starts_with('[')) return std::string(text.substr(1, text.find(']') - 1));
  return std::string(text.substr(0, text.find(':')));
}

// A message shared by its jobs (one per destination).
struct message_state {
  spool::stored_message msg;  // msg.pending: every recipient not yet finished
  std::size_t jobs = 0;       // jobs not finished
  std::size_t reading = 0;    // bounces still reading its header section
  std::uint32_t bounces = 0;  // bounces sent for it, numbering the next
};

// One message's recipients for one destination.
struct queued {
  std::shared_ptr<message_state> state;
  std::string destination;             // the key of its destination
  std::vector<std::uint32_t> rcpts;    // recipient indexes still pending here
  std::vector<std::uint32_t> attempt;  // the recipients sent in this attempt
  std::uint32_t attempts = 0;
  std::int64_t next_attempt = 0;  // wall seconds

  spool::stored_message& msg() { return state->msg; }
};

// Where a set of jobs goes: a recipient domain, or the relay host ("").
struct destination {
  std::string key;
  bool fixed = false;  // the relay host: its route never changes
  std::deque<std::unique_ptr<queued>> ready;
  std::vector<std::unique_ptr<upstream>> connections;
  bool resolving = false;
  bool routed = false;
  route current;
  std::int64_t route_expires_ms = 0;
  std::size_t cursor = 0;  // the target new connections go to
  std::int64_t down_until_ms = 0;
  std::uint32_t failures = 0;
  std::int64_t plaintext_until_ms = 0;  // tls_fallback after a failed handshake
};

// A route is looked up again after this long (the DNS cache answers it).
constexpr std::int64_t route_lifetime_ms = 60 * 1000;

std::string received_header(const spool::stored_message& m, std::string_view hostname) {
  const auto& e = m.env;
  char id[17];
  util::format_queue_id(m.id, id);
  char date[40];
  util::format_rfc5322_date(e.received_at, date);
  std::string h = "Received: from ";
  h += neutralise(e.helo.empty() ? std::string_view("unknown") : std::string_view(e.helo));
  h += " ([";
  h += neutralise(e.client_address);
  h += "])\r\n\tby ";
  h += hostname;
  // RFC 3848 (and RFC 6531 for UTF8): S for TLS, A for an authenticated
  // client; the TLS parameters go in a comment as Postfix and others do.
  h += " (ringrelay)";
  if (!e.tls_info.empty()) {
    auto space = e.tls_info.find(' ');
    h += "\r\n\t(using ";
    h += neutralise(e.tls_info.substr(0, space));
    if (space != std::string::npos) {
      h += " with cipher ";
      h += neutralise(e.tls_info.substr(space + 1));
    }
    h += ")";
  }
  // RFC 3848: ESMTP after EHLO (UTF8SMTP with SMTPUTF8), then S for TLS and
  // A for AUTH; SMTP after HELO, which has no such variants (AUTH needs
  // EHLO; the TLS comment above still tells an implicit-TLS session).
  h += "\r\n\twith ";
  if (e.helo_greeting) {
    h += "SMTP";
  } else {
    h += e.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (!e.tls_info.empty()) h += 'S';
    if (!e.auth_info.empty()) h += 'A';
  }
  h += " id ";
  h += id;
  if (e.recipients.size() == 1) {
    h += "\r\n\tfor <";
    h += neutralise(e.recipients[0]);
    h += ">";
  }
  h += "; ";
  h += date;
  h += "\r\n";
  return h;
}

// One connection to the upstream host.
class upstream final : public reactor::owner {
 public:
  upstream(service& svc, destination& d, std::size_t target)
      : _svc(svc),
        _dest(d),
        _target(target),
        _relay(d.fixed ? svc._cfg.delivery.relayhost : d.current.targets[target].describe()),
        _remote(d.fixed ? relayhost_name(svc._cfg.delivery.relayhost)
                        : d.current.targets[target].host),
        _slot(svc._loop.add_owner(this)),
        _session(svc._cfg.hostname, svc.use_starttls(d)) {}
  ~upstream() {
    _svc._loop.remove_owner(_slot);
    if (_pipe[0] >= 0) ::close(_pipe[0]);
    if (_pipe[1] >= 0) ::close(_pipe[1]);
  }

  destination& dest() { return _dest; }

  void connect() {
    _addr = _dest.current.targets[_target].addr;
    _addr_len = _dest.current.targets[_target].addr_len;
    _last_activity = _svc._loop.now_ms();
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_socket(s, _addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_socket));
    ++_inflight;
  }

  bool usable_idle() const {
    return !_closing && !_current && _session.state() == session_state::ready;
  }
  bool busy() const { return _current != nullptr; }
  bool closing() const { return _closing; }
  // QUIT sent (idle, or its message quota used): it takes no more work.
  bool quitting() const { return _session.state() == session_state::quit; }

  void start(std::unique_ptr<queued> q) {
    _current = std::move(q);
    ++_messages;
    _header = received_header(_current->msg(), _svc._cfg.hostname);
    run_events(_session.start_message(envelope_for(*_current, _header)));
    flush();
  }

  // What the session sends for a job: this attempt's recipients, and the
  // size with our Received header.
  static envelope envelope_for(queued& q, const std::string& header) {
    const auto& m = q.msg();
    envelope env;
    env.sender = m.env.sender;
    q.attempt = q.rcpts;
    for (auto i : q.attempt) env.recipients.push_back(m.env.recipients[i]);
    env.size = header.size() + m.env.size;
    env.eight_bit = m.env.eight_bit;
    env.smtputf8 = m.env.smtputf8;
    env.body_is_raw = m.env.body_is_raw;
    return env;
  }

  // Right after an end of data, the destination's next waiting job goes out
  // behind it in the same send (upstream_session::queue_next): one send and
  // one reply round a message instead of two when the pool is busy.
  void queue_next() {
    if (_next || _closing || _svc._stopping || _dest.ready.empty() ||
        _messages >= _svc._cfg.delivery.messages_per_connection)
      return;
    auto q = std::move(_dest.ready.front());
    _dest.ready.pop_front();
    std::string header = received_header(q->msg(), _svc._cfg.hostname);
    if (!_session.queue_next(envelope_for(*q, header))) {
      _dest.ready.push_front(std::move(q));
      return;
    }
    _next = std::move(q);
    _next_header = std::move(header);
    ++_messages;
    RR_DEBUG("upstream id=%s pipelined behind id=%s",
             util::format_queue_id(_next->msg().id).c_str(),
             util::format_queue_id(_current->msg().id).c_str());
  }

  void tick(std::int64_t now) {
    if (_closing) return;
    const auto& d = _svc._cfg.delivery;
    bool waiting_reply =
        _session.state() != session_state::ready && _session.state() != session_state::body;
    if (waiting_reply && now - _last_activity > std::int64_t{d.command_timeout} * 1000) {
      run_events(_session.abort("timeout waiting for the upstream's reply"));
      return;
    }
    if (!_current && _session.state() == session_state::ready &&
        (now - _last_activity > idle_close_ms || _svc._stopping ||
         _messages >= d.messages_per_connection)) {
      _session.quit();
      _last_activity = now;
      flush();
    }
  }

  void force_close() {
    if (_closing) return;
    run_events(_session.abort("shutting down"));
  }

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override {
    --_inflight;
    switch (op) {
      case op_socket:
        on_socket(cqe.res);
        break;
      case op_connect:
        on_connect(cqe.res);
        break;
      case op_connect_timeout:
        break;
      case op_recv:
        on_recv(cqe.res);
        break;
      case op_send:
        on_send(cqe.res);
        break;
      case op_splice:
        on_splice(cqe.res);
        break;
      case op_read:
        on_read(cqe.res);
        break;
      default:
        break;
    }
    maybe_destroy();
  }

 private:
  void on_socket(int res) {
    if (res < 0) return fail_connect(std::string("socket: ") + strerror(-res));
    _fd = res;
    const auto& d = _svc._cfg.delivery;
    _svc._loop.reserve(2);
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_connect(s, _fd, reinterpret_cast<const sockaddr*>(&_addr), _addr_len);
    s->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_connect));
    _connect_ts.tv_sec = d.connect_timeout;
    _connect_ts.tv_nsec = 0;
    s = _svc._loop.sqe();
    io_uring_prep_link_timeout(s, &_connect_ts, 0);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_connect_timeout));
    _inflight += 2;
  }

  void on_connect(int res) {
    if (res < 0)
      return fail_connect(res == -ECANCELED ? "connect timed out"
                                            : std::string("connect: ") + strerror(-res));
    if (pipe2(_pipe, O_CLOEXEC) < 0) return fail_connect("pipe: " + std::string(strerror(errno)));
    fcntl(_pipe[1], F_SETPIPE_SZ, pipe_size);
    int size = fcntl(_pipe[1], F_GETPIPE_SZ);
    _pipe_slots = size > 0 ? static_cast<std::uint32_t>(size) / page_size : 1;
    // The end of data (".\r\n") is a small send right after the body: with
    // Nagle on it would wait for the peer's delayed ACK (~40 ms a message).
    int one = 1;
    setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    _connected = true;
    _last_activity = _svc._loop.now_ms();
    arm_recv();
  }

  void fail_connect(std::string why) {
    _reported = true;
    _svc.target_failed(_dest, _target, why);
    _closing = true;
  }

  void arm_recv() {
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_recv(s, _fd, _rbuf, sizeof _rbuf, 0);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_recv));
    ++_inflight;
  }

  void on_recv(int res) {
    if (_closing) return;
    if (res <= 0) {
      run_events(_session.abort(res == 0 ? "connection closed by the upstream"
                                         : std::string("receive error: ") + strerror(-res)));
      return;
    }
    _last_activity = _svc._loop.now_ms();
    if (_tls) {
      _tls->push_ciphertext({_rbuf, static_cast<std::size_t>(res)});
      tls_input();
    } else {
      run_events(_session.feed({_rbuf, static_cast<std::size_t>(res)}));
    }
    if (!_closing) arm_recv();
    flush();
  }

  // Opportunistic STARTTLS: the handshake, then plaintext replies.
  void tls_input() {
    if (!_tls->established()) {
      tls::status st = _tls->handshake();
      if (st == tls::status::want) return;
      if (st != tls::status::ok) {
        _svc.tls_failed(_dest, _tls->error_text());
        run_events(_session.abort("TLS handshake failed (" + _tls->error_text() + ")"));
        return;
      }
      RR_DEBUG("upstream TLS %s %s", _tls->version().c_str(), _tls->cipher().c_str());
      _session.tls_established();
    }
    char plain[4096];
    for (;;) {
      std::size_t n = 0;
      tls::status st = _tls->read(plain, sizeof plain, n);
      if (st == tls::status::ok && n > 0) {
        run_events(_session.feed({plain, n}));
        if (_closing) return;
        continue;
      }
      if (st == tls::status::closed || st == tls::status::error)
        run_events(_session.abort(st == tls::status::closed ? "TLS closed by the upstream"
                                                            : "TLS error: " + _tls->error_text()));
      return;
    }
  }

  // Appends plaintext to what goes out next, encrypted once TLS is up.
  bool queue(std::string_view plain) {
    if (!_tls) {
      _sending.append(plain);
      return true;
    }
    if (!plain.empty() && _tls->write({plain.data(), plain.size()}) != tls::status::ok) {
      run_events(_session.abort("TLS write failed (" + _tls->error_text() + ")"));
      return false;
    }
    _sending.append(_tls->ciphertext());
    _tls->ciphertext().clear();
    return true;
  }

  void run_events(event ev) {
    for (; ev != event::none; ev = _session.next_event()) {
      switch (ev) {
        case event::ready:
          _was_ready = true;
          _dest.failures = 0;
          _dest.down_until_ms = 0;
          if (!_current) _svc.dispatch(_dest);
          break;
        case event::start_tls:
          _tls = std::make_unique<tls::session>(*_svc._tls_client);
          tls_input();  // produces the ClientHello
          break;
        case event::send_body:
          // The pipelined commands may still be going out (the 354 can
          // overtake our own send completion): the body waits for them.
          if (_send_inflight)
            _body_pending = true;
          else
            begin_body();
          break;
        case event::message_done:
          _svc.finished(std::move(_current), _session.results(), _relay, _remote);
          // The queued transaction's replies come next.
          if (_next) {
            _current = std::move(_next);
            _header = std::move(_next_header);
          }
          break;
        case event::closed:
        case event::failed: {
          const auto& r = _session.reason();
          // Before the greeting and EHLO went through, the next target
          // gets a chance (RFC 5321 5.1).
          if (!_reported && !_was_ready) _svc.target_failed(_dest, _target, r.description);
          _reported = true;
          RR_DEBUG("upstream %s: %s", ev == event::closed ? "closed" : "failed",
                   r.description.c_str());
          _closing = true;
          break;
        }
        default:
          break;
      }
    }
  }

  void flush() {
    if (_closing || _send_inflight || _in_body || _fd < 0) return;
    std::string out = std::move(_session.output());
    _session.output().clear();
    _sending.clear();
    // During the handshake only TLS records go out; commands wait for it.
    if (_tls && !_tls->established()) {
      _session.output() = std::move(out);
      out.clear();
    }
    if (!queue(out) || _sending.empty()) return;
    _sent = 0;
    submit_send();
  }

  void submit_send() {
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_send(s, _fd, _sending.data() + _sent, _sending.size() - _sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_send));
    _send_inflight = true;
    ++_inflight;
  }

  void on_send(int res) {
    _send_inflight = false;
    if (_closing) return;
    if (res < 0) {
      run_events(_session.abort(std::string("send error: ") + strerror(-res)));
      return;
    }
    _sent += static_cast<std::size_t>(res);
    if (_sent < _sending.size()) return submit_send();
    _sending.clear();
    if (_in_body) return body_step();
    if (_body_pending) {
      _body_pending = false;
      return begin_body();
    }
    flush();
  }

  // The body: [output (BDAT line)][Received header], then the stored
  // extents, then body_sent() and the terminator from output(). A body kept
  // in memory goes in the same send as the header and the terminator.
  void begin_body() {
    _in_body = true;
    _extent = 0;
    _extent_done = 0;
    _at_line_start = true;
    std::string out = std::move(_session.output());
    _session.output().clear();
    _sending.clear();
    if (!queue(out) || !queue(_header)) return;
    _sent = 0;
    const auto& m = _current->msg();
    if (m.body_copy) return send_body_copy(*m.body_copy);
    RR_DEBUG("upstream body from the spool id=%s records=%zu", util::format_queue_id(m.id).c_str(),
             m.body.size());
    _body_phase = body_phase::header;
    submit_send();
  }

  void send_body_copy(const std::string& body) {
    if (!queue_body(body)) return;
    body_done();
    std::string end = std::move(_session.output());
    _session.output().clear();
    if (!queue(end)) return;
    RR_DEBUG("upstream body from memory id=%s octets=%zu",
             util::format_queue_id(_current->msg().id).c_str(), body.size());
    submit_send();
  }

  void body_step() {
    const auto& body = _current->msg().body;
    if (_extent >= body.size()) return end_body();
    // Splicing moves file pages to the socket untouched: only for plaintext
    // links carrying the body as stored. With one splice pair per record it
    // also beat reading the records into memory and sending them (fewer
    // copies for the same CPU; bench/RESULTS.md).
    if (_tls || _session.framing() == body_framing::data_stuffing_needed) return read_chunk();
    submit_splices();
  }

  // The next part of the body to send, at most `limit` octets, and moves
  // past it.
  spool::extent next_part(std::uint32_t limit) {
    const auto& x = _current->msg().body[_extent];
    spool::extent part{x.segment, x.offset + _extent_done,
                       std::min(x.length - _extent_done, limit)};
    _extent_done += part.length;
    if (_extent_done == x.length) {
      ++_extent;
      _extent_done = 0;
    }
    return part;
  }

  // A chain of linked splices, file → pipe → socket per part: the links
  // keep them in order through the one pipe. A part is as much of a record
  // as the empty pipe takes in one splice: a pipe slot per page touched.
  void submit_splices() {
    _body_phase = body_phase::splicing;
    const auto& body = _current->msg().body;
    _splice_failed = false;
    _splices = 0;
    std::vector<spool::extent>& parts = _splice_parts;
    parts.clear();
    while (_extent < body.size() && parts.size() < splice_window) {
      auto at = body[_extent].offset + _extent_done;
      parts.push_back(
          next_part(_pipe_slots * page_size - static_cast<std::uint32_t>(at % page_size)));
    }
    _svc._loop.reserve(static_cast<unsigned>(2 * parts.size()));
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const auto& x = parts[i];
      int seg = _svc._spool.segment_fd(x.segment);
      io_uring_sqe* s = _svc._loop.sqe();
      io_uring_prep_splice(s, seg, static_cast<std::int64_t>(x.offset), _pipe[1], -1, x.length, 0);
      s->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_splice));
      s = _svc._loop.sqe();
      io_uring_prep_splice(s, _pipe[0], -1, _fd, -1, x.length, 0);
      if (i + 1 < parts.size()) s->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_splice));
      _splice_expect.push_back(x.length);
      _splice_expect.push_back(x.length);
      _splices += 2;
      _inflight += 2;
    }
  }

  void on_splice(int res) {
    std::uint32_t want = _splice_expect.front();
    _splice_expect.pop_front();
    if (res < 0 || static_cast<std::uint32_t>(res) != want) _splice_failed = true;
    if (--_splices > 0) return;
    if (_closing) return;
    if (_splice_failed) {
      // A short or failed splice leaves the pipe and the stream in an
      // unknown state: drop the connection, the message is retried.
      run_events(_session.abort("sending the body failed"));
      return;
    }
    _last_activity = _svc._loop.now_ms();
    body_step();
  }

  // The copying path, in parts of at most copy_chunk octets: TLS links
  // encrypt the body, and a raw (BDAT) body to an upstream without CHUNKING
  // must be dot-stuffed on the way.
  void read_chunk() {
    _body_phase = body_phase::reading;
    spool::extent x = next_part(copy_chunk);
    _raw.resize(x.length);
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_read(s, _svc._spool.segment_fd(x.segment), _raw.data(), x.length, x.offset);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_read));
    ++_inflight;
  }

  void on_read(int res) {
    if (_closing) return;
    if (res != static_cast<int>(_raw.size())) {
      run_events(_session.abort("reading the spooled body failed"));
      return;
    }
    _sending.clear();
    if (!queue_body(_raw)) return;
    _sent = 0;
    submit_send();
  }

  // Queues a part of the body as the framing wants it: as stored, or
  // dot-stuffed (a raw body going by DATA).
  bool queue_body(std::string_view part) {
    if (_session.framing() != body_framing::data_stuffing_needed) return queue(part);
    _stuffed.clear();
    dot_stuff(part, _at_line_start, _stuffed);
    return queue(_stuffed);
  }

  // The whole body is queued or sent: the terminator, and the next job
  // behind it when one waits, join the output.
  void body_done() {
    _in_body = false;
    _body_phase = body_phase::none;
    _session.body_sent(_session.framing() == body_framing::data_stuffing_needed ? _at_line_start
                                                                                : true);
    queue_next();
  }

  void end_body() {
    body_done();
    flush();
  }

  void maybe_destroy() {
    if (!_closing || _inflight > 0 || _destroying) return;
    _destroying = true;
    if (_fd >= 0) {
      io_uring_sqe* s = _svc._loop.sqe();
      io_uring_prep_close(s, _fd);
      io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_ignore));
      _fd = -1;
    }
    if (_current) _svc.retry_later(std::move(_current), "connection lost");
    if (_next) _svc.retry_later(std::move(_next), "connection lost");
    _svc.connection_gone(this);
  }

  enum class body_phase { none, header, splicing, reading };

  service& _svc;
  destination& _dest;
  std::size_t _target;  // in _dest.current.targets
  std::string _relay;   // for logs: "mx.example.net[192.0.2.1]:25"
  std::string _remote;  // for bounces' Remote-MTA: "mx.example.net"
  sockaddr_storage _addr{};
  socklen_t _addr_len = 0;
  std::uint32_t _slot;
  upstream_session _session;
  int _fd = -1;
  int _pipe[2] = {-1, -1};
  std::uint32_t _pipe_slots = 1;
  int _inflight = 0;
  bool _connected = false;
  bool _closing = false;
  bool _destroying = false;
  bool _reported = false;
  bool _was_ready = false;
  std::unique_ptr<queued> _current;
  std::unique_ptr<queued> _next;  // pipelined behind _current's end of data
  std::string _next_header;
  std::uint32_t _messages = 0;
  std::int64_t _last_activity = 0;
  __kernel_timespec _connect_ts{};
  char _rbuf[4096];
  std::string _sending;
  std::size_t _sent = 0;
  bool _send_inflight = false;
  std::string _header;
  bool _in_body = false;
  bool _body_pending = false;
  body_phase _body_phase = body_phase::none;
  std::size_t _extent = 0;         // the body record being sent
  std::uint32_t _extent_done = 0;  // its octets already on their way
  std::vector<spool::extent> _splice_parts;
  std::deque<std::uint32_t> _splice_expect;
  int _splices = 0;
  bool _splice_failed = false;
  std::string _raw;
  std::string _stuffed;
  bool _at_line_start = true;
  std::unique_ptr<tls::session> _tls;
};

// A bounce on its way into the spool: the original's header section is read
// (io_uring, never blocking the shard), the report composed, then written
// and committed like an accepted message. It is its own buffer source for
// the spool writer, and frees itself once the commit is done and the writer
// holds no reference to its body.
//
// The header section can span several body records (it arrived over several
// loop turns), so the records are read one after the other until the empty
// line that ends it, max_returned_headers (plus room for the line that
// crosses it) or the end of the body.
struct service::bounce_write final : reactor::owner, reactor::buffer_source {
  bounce_write(service& svc, std::shared_ptr<message_state> state,
               std::vector<bounced_recipient> failed)
      : svc(svc),
        slot(svc._loop.add_owner(this)),
        state(std::move(state)),
        failed(std::move(failed)) {}
  ~bounce_write() { svc._loop.remove_owner(slot); }

  void start() {
    std::size_t total = 0;
    for (const auto& e : state->msg.body) total += e.length;
    head.resize(std::min<std::size_t>(total, max_returned_headers + 1024));
    if (head.empty()) return compose();
    // The message's segments stay until the reads are done.
    ++state->reading;
    read_next();
  }

  void read_next() {
    const auto& e = state->msg.body[next_extent];
    asked = static_cast<unsigned>(std::min<std::size_t>(e.length, head.size() - got));
    io_uring_sqe* s = svc._loop.sqe();
    io_uring_prep_read(s, svc._spool.segment_fd(e.segment), head.data() + got, asked, e.offset);
    io_uring_sqe_set_data64(s, svc._loop.token(slot, op_read));
  }

  void on_completion(std::uint8_t, const io_uring_cqe& cqe) override {
    // Without the header section the report still names the recipients; a
    // failed or short read ends it where the octets stop.
    const std::size_t before = got;
    if (cqe.res > 0) got += static_cast<std::size_t>(cqe.res);
    const bool whole = cqe.res >= 0 && static_cast<unsigned>(cqe.res) == asked;
    const std::string_view read = std::string_view(head).substr(0, got);
    const bool ended =
        read.starts_with("\r\n") || read.find("\r\n\r\n", before < 3 ? 0 : before - 3) != read.npos;
    if (whole && !ended && got < head.size() && ++next_extent < state->msg.body.size())
      return read_next();
    head.resize(got);
    --state->reading;
    svc.release_if_done(*state);
    compose();
  }

  void compose() {
    const auto& m = state->msg;
    bounce_request r;
    r.reporting_mta = svc._cfg.hostname;
    r.message_id_domain = svc._cfg.hostname;
    r.queue_id = m.id;
    r.arrival = m.env.received_at;
    r.now = util::wall_seconds();
    r.sequence = state->bounces++;
    r.sender = m.env.sender;
    r.original_smtputf8 = m.env.smtputf8;
    r.original_body_is_raw = m.env.body_is_raw;
    r.original_head = head;
    r.recipients = std::move(failed);
    auto b = compose_bounce(r);
    char orig[17];
    util::format_queue_id(m.id, orig);
    if (!b || !svc._spool.writable()) {
      if (b) RR_ERROR("bounce for id=%s not sent: the spool cannot be written", orig);
      return finish();
    }
    body = std::move(b->body);
    auto env = std::move(b->envelope);
    env.received_at = r.now;
    env.helo = svc._cfg.hostname;
    env.client_address = "127.0.0.1";
    util::queue_id id = svc._next_id();
    auto h = svc._spool.begin(id);
    svc._spool.append_body(h, {}, body, *this, 0);
    committing = true;
    svc._spool.commit(
        h, std::move(env), [this, id, orig_id = m.id](int err, spool::stored_message* msg) {
          committing = false;
          char bid[17], oid[17];
          util::format_queue_id(id, bid);
          util::format_queue_id(orig_id, oid);
          if (err != 0 || !msg) {
            RR_ERROR("bounce id=%s for id=%s not stored: %s", bid, oid, strerror(-err));
          } else {
            RR_INFO("bounce id=%s for id=%s to=<%s> size=%llu", bid, oid,
                    msg->env.recipients.empty() ? "" : msg->env.recipients[0].c_str(),
                    static_cast<unsigned long long>(msg->env.size));
            svc.enqueue(std::move(*msg));
          }
          finish();
        });
  }

  void finish() {
    done = true;
    maybe_free();
  }
  void maybe_free() {
    if (!done || committing || refs > 0) return;
    svc._loop.defer([&svc = svc, this] {
      std::erase_if(svc._bounces, [this](const auto& b) { return b.get() == this; });
    });
  }

  void ref(std::uint16_t) override { ++refs; }
  void unref(std::uint16_t) override {
    if (--refs == 0) maybe_free();
  }
  std::span<const char> data(std::uint16_t, std::uint32_t len) const override {
    return {body.data(), std::min<std::size_t>(len, body.size())};
  }

  service& svc;
  std::uint32_t slot;
  std::shared_ptr<message_state> state;
  std::vector<bounced_recipient> failed;
  std::string head;
  std::size_t got = 0;  // octets of head read so far
  std::size_t next_extent = 0;
  unsigned asked = 0;  // by the read in flight
  std::string body;
  int refs = 0;
  bool committing = false;
  bool done = false;
};

service::service(reactor::loop& loop, spool::writer& spool, const config::server_config& cfg,
                 dns::resolver* resolver)
    : _loop(loop), _spool(spool), _cfg(cfg), _resolver(resolver), _rng(std::random_device{}()) {
  if (cfg.delivery.starttls) _tls_client = tls::context::client();
  _self.hostname = cfg.hostname;
  _self.interfaces = interface_addresses();
  for (const auto& l : cfg.listeners) {
    sockaddr_storage a{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&a);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a);
    if (inet_pton(AF_INET, l.address.c_str(), &sin->sin_addr) == 1) {
      sin->sin_family = AF_INET;
      sin->sin_port = htons(l.port);
    } else if (inet_pton(AF_INET6, l.address.c_str(), &sin6->sin6_addr) == 1) {
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(l.port);
    } else {
      continue;
    }
    _self.listeners.push_back(a);
  }
}

service::~service() = default;

std::size_t service::queued_count() const {
  std::size_t n = _deferred.size();
  for (const auto& [key, d] : _destinations) n += d->ready.size();
  return n;
}

destination& service::destination_for(const std::string& key) {
  if (_relay_destination) return *_relay_destination;
  auto& slot = _destinations[key];
  if (!slot) {
    slot = std::make_unique<destination>();
    slot->key = key;
    if (_cfg.delivery.relayhost_addr_len != 0) {
      slot->fixed = true;
      slot->routed = true;
      route_target t;
      t.host = _cfg.delivery.relayhost;
      t.addr = _cfg.delivery.relayhost_addr;
      t.addr_len = _cfg.delivery.relayhost_addr_len;
      slot->current.status = route_status::ok;
      slot->current.targets.push_back(std::move(t));
      _relay_destination = slot.get();
    }
  }
  return *slot;
}

void service::enqueue(spool::stored_message&& m) {
  auto state = std::make_shared<message_state>();
  state->msg = std::move(m);
  auto& msg = state->msg;
  // The jobs: pending recipients grouped by destination, in first-seen order.
  bool by_mx = _cfg.delivery.relayhost_addr_len == 0;
  std::vector<std::unique_ptr<queued>> jobs;
  auto new_job = [&](std::string key) {
    auto q = std::make_unique<queued>();
    q->state = state;
    q->destination = std::move(key);
    q->attempts = msg.attempts;
    q->next_attempt = msg.next_attempt;
    jobs.push_back(std::move(q));
    return jobs.back().get();
  };
  if (!by_mx) {
    // One destination: one job with every pending recipient.
    if (!msg.pending.empty()) new_job({})->rcpts = msg.pending;
  } else {
    for (auto idx : msg.pending) {
      std::string key = recipient_domain(msg.env.recipients[idx]);
      auto it = std::find_if(jobs.begin(), jobs.end(),
                             [&](const auto& j) { return j->destination == key; });
      queued* q = it == jobs.end() ? new_job(std::move(key)) : it->get();
      q->rcpts.push_back(idx);
    }
  }
  state->jobs = jobs.size();
  if (jobs.empty()) {
    _spool.release(msg);
    return;
  }
  std::int64_t now = util::wall_seconds();
  for (auto& q : jobs) {
    if (q->next_attempt > now) {
      auto at = q->next_attempt;
      _deferred.emplace(at, std::move(q));
    } else {
      add_job(std::move(q));
    }
  }
}

void service::add_job(std::unique_ptr<queued> q) {
  auto& d = destination_for(q->destination);
  d.ready.push_back(std::move(q));
  dispatch(d);
}

std::uint32_t service::retry_delay(std::uint32_t attempts) const {
  const auto& s = _cfg.delivery.retry_schedule;
  if (s.empty()) return 60;
  return s[std::min<std::size_t>(attempts == 0 ? 0 : attempts - 1, s.size() - 1)];
}

void service::dispatch() {
  for (auto& [key, d] : _destinations)
    if (!d->ready.empty()) dispatch(*d);
}

void service::dispatch(destination& d) {
  if (_stopping) return;
  while (!d.ready.empty()) {
    upstream* idle = nullptr;
    std::size_t connecting = 0;
    for (auto& c : d.connections) {
      if (c->usable_idle()) {
        idle = c.get();
        break;
      }
      // Connections on their way to ready will take a job; one that has
      // sent QUIT will not (its peer may take long to answer it).
      if (!c->busy() && !c->closing() && !c->quitting()) ++connecting;
    }
    if (idle) {
      auto q = std::move(d.ready.front());
      d.ready.pop_front();
      idle->start(std::move(q));
      continue;
    }
    // Open connections for the jobs no connection is about to take, within
    // the per-destination limit and not while the destination rests.
    if (connecting >= d.ready.size() ||
        d.connections.size() >= _cfg.delivery.connections_per_host ||
        _loop.now_ms() < d.down_until_ms)
      return;
    if (!d.fixed && (!d.routed || _loop.now_ms() >= d.route_expires_ms)) {
      // Connections already open keep their targets; new ones wait for the
      // route.
      if (connecting == 0) need_route(d);
      return;
    }
    if (d.cursor >= d.current.targets.size()) d.cursor = 0;
    d.connections.push_back(std::make_unique<upstream>(*this, d, d.cursor));
    d.connections.back()->connect();
  }
}

void service::need_route(destination& d) {
  if (d.resolving) return;
  if (!_resolver) {
    fail_jobs(d, "4.4.3", "no DNS resolver to route by MX", false);
    return;
  }
  d.resolving = true;
  d.routed = false;
  resolve_route(*_resolver, d.key, _cfg.delivery.mx_port, _self, _rng,
                [this, key = d.key](route r) {
                  auto it = _destinations.find(key);
                  if (it != _destinations.end()) route_ready(*it->second, std::move(r));
                });
}

void service::route_ready(destination& d, route r) {
  d.resolving = false;
  switch (r.status) {
    case route_status::ok:
      d.current = std::move(r);
      d.routed = true;
      d.route_expires_ms = _loop.now_ms() + route_lifetime_ms;
      d.cursor = 0;
      RR_DEBUG("route %s: %zu target(s), first %s", d.key.c_str(), d.current.targets.size(),
               d.current.targets[0].describe().c_str());
      dispatch(d);
      return;
    case route_status::temporary:
      fail_jobs(d, r.enhanced, r.text, false);
      return;
    case route_status::permanent:
      fail_jobs(d, r.enhanced, r.text, true);
      return;
  }
}

// Every job waiting at `d` is deferred (temporary) or fails with a bounce.
void service::fail_jobs(destination& d, std::string_view enhanced, std::string_view text,
                        bool permanent) {
  auto jobs = std::move(d.ready);
  d.ready.clear();
  std::string why =
      std::string(permanent ? "550 " : "451 ") + std::string(enhanced) + " " + std::string(text);
  for (auto& q : jobs) {
    if (!permanent) {
      retry_later(std::move(q), why);
      continue;
    }
    char id[17];
    util::format_queue_id(q->msg().id, id);
    std::vector<bounced_recipient> failed;
    for (auto idx : q->rcpts) {
      const auto& rcpt = q->msg().env.recipients[idx];
      RR_INFO("failed id=%s to=<%s> reply=\"%s\"", id, rcpt.c_str(), why.c_str());
      bounced_recipient b;
      b.address = rcpt;
      b.reason = enhanced == "5.4.6" ? bounce_reason::loop : bounce_reason::unroutable;
      b.status = std::string(enhanced);
      b.diagnostic = std::string(text);
      failed.push_back(std::move(b));
    }
    fail_recipients(*q, q->rcpts, std::move(failed));
    q->rcpts.clear();
    job_done(*q);
  }
}

// Records the failures, takes them out of the message's pending list and
// sends the sender a bounce.
// `idx[i]` is the recipient index of `failed[i]`.
void service::fail_recipients(queued& q, const std::vector<std::uint32_t>& idx,
                              std::vector<bounced_recipient> failed) {
  if (failed.empty()) return;
  auto& m = q.msg();
  for (std::size_t i = 0; i < idx.size(); ++i) {
    const auto& f = failed[i];
    std::uint32_t one[] = {idx[i]};
    _spool.record_failed(m, f.diagnostic.empty() ? f.status : f.diagnostic, one);
  }
  std::erase_if(m.pending,
                [&](auto i) { return std::find(idx.begin(), idx.end(), i) != idx.end(); });
  send_bounce(q, std::move(failed));
}

void service::send_bounce(queued& q, std::vector<bounced_recipient> failed) {
  if (q.msg().env.sender.empty() || !_next_id) return;
  auto b = std::make_unique<bounce_write>(*this, q.state, std::move(failed));
  auto* raw = b.get();
  _bounces.push_back(std::move(b));
  raw->start();
}

// A job has no recipients left: the message is released with its last job.
void service::job_done(queued& q) {
  --q.state->jobs;
  release_if_done(*q.state);
}

void service::release_if_done(message_state& m) {
  if (m.jobs == 0 && m.reading == 0) _spool.release(m.msg);
}

void service::finished(std::unique_ptr<queued> q, const std::vector<recipient_result>& results,
                       const std::string& relay, const std::string& remote) {
  auto& m = q->msg();
  char id[17];
  util::format_queue_id(m.id, id);
  std::vector<std::uint32_t> delivered, still, failed_idx;
  std::vector<bounced_recipient> failed;
  std::int64_t delay_s = util::wall_seconds() - m.env.received_at;
  std::string last_temp;
  for (std::size_t i = 0; i < results.size() && i < q->attempt.size(); ++i) {
    auto idx = q->attempt[i];
    const auto& r = results[i];
    std::string line = r.response.one_line();
    const char* rcpt = m.env.recipients[idx].c_str();
    switch (r.status) {
      case outcome::delivered:
        RR_INFO("delivered id=%s to=<%s> relay=%s delay=%llds reply=\"%s\"", id, rcpt,
                relay.c_str(), static_cast<long long>(delay_s), line.c_str());
        delivered.push_back(idx);
        break;
      case outcome::permanent: {
        RR_INFO("failed id=%s to=<%s> relay=%s reply=\"%s\"", id, rcpt, relay.c_str(),
                line.c_str());
        bounced_recipient b;
        b.address = m.env.recipients[idx];
        b.status = r.response.enhanced;
        b.remote_mta = remote;
        if (r.response.enhanced == "5.6.3") {
          b.reason = bounce_reason::no_8bitmime;
        } else if (r.response.enhanced == "5.6.7" || r.response.enhanced == "5.6.9") {
          b.reason = bounce_reason::no_smtputf8;
          b.diagnostic = line;
        } else {
          b.reason = bounce_reason::rejected;
          b.diagnostic = line;
        }
        failed.push_back(std::move(b));
        failed_idx.push_back(idx);
        break;
      }
      case outcome::temporary:
        last_temp = line;
        still.push_back(idx);
        break;
    }
  }
  if (!delivered.empty()) {
    _spool.record_done(m, delivered);
    std::erase_if(m.pending, [&](auto i) {
      return std::find(delivered.begin(), delivered.end(), i) != delivered.end();
    });
  }
  fail_recipients(*q, failed_idx, std::move(failed));
  q->rcpts = std::move(still);
  if (q->rcpts.empty()) {
    job_done(*q);
    return;
  }
  retry_later(std::move(q), last_temp.empty() ? "temporary failure" : last_temp);
}

void service::retry_later(std::unique_ptr<queued> q, std::string_view why) {
  auto& m = q->msg();
  char id[17];
  util::format_queue_id(m.id, id);
  ++q->attempts;
  std::int64_t now = util::wall_seconds();
  if (now - m.env.received_at >= _cfg.delivery.max_age) {
    std::string reason = "expired after " + std::to_string(_cfg.delivery.max_age) +
                         "s in the queue; last error: " + std::string(why);
    std::vector<bounced_recipient> failed;
    for (auto idx : q->rcpts) {
      RR_INFO("failed id=%s to=<%s> reply=\"%s\"", id, m.env.recipients[idx].c_str(),
              reason.c_str());
      bounced_recipient b;
      b.address = m.env.recipients[idx];
      b.reason = bounce_reason::expired;
      b.diagnostic = std::string(why);
      failed.push_back(std::move(b));
    }
    fail_recipients(*q, q->rcpts, std::move(failed));
    q->rcpts.clear();
    job_done(*q);
    return;
  }
  auto delay = retry_delay(q->attempts);
  q->next_attempt = now + delay;
  // The deferred record speaks for the whole message: every recipient
  // still pending, any job's.
  m.attempts = std::max(m.attempts, q->attempts);
  m.next_attempt = q->next_attempt;
  for (auto idx : q->rcpts)
    RR_INFO("deferred id=%s to=<%s> attempts=%u retry_in=%us reply=\"%s\"", id,
            m.env.recipients[idx].c_str(), q->attempts, delay, std::string(why).c_str());
  _spool.record_deferred(m);
  // Memory is for mail on its way out now; a retry reads the log.
  _spool.drop_body_copy(m);
  auto at = q->next_attempt;
  _deferred.emplace(at, std::move(q));
}

bool service::use_starttls(const destination& d) const {
  return _tls_client && _loop.now_ms() >= d.plaintext_until_ms;
}

// delivery.tls_fallback: after a failed handshake, talk plaintext to this
// destination for a while instead of deferring everything (off by default:
// an attacker who breaks handshakes must not get plaintext for free).
void service::tls_failed(destination& d, std::string_view why) {
  if (!_cfg.delivery.tls_fallback) return;
  d.plaintext_until_ms = _loop.now_ms() + 3600 * 1000;
  RR_WARN(
      "upstream %s: TLS handshake failed (%s); delivery.tls_fallback is on, so the next hour "
      "of connections use plaintext",
      d.fixed ? _cfg.delivery.relayhost.c_str() : d.key.c_str(), std::string(why).c_str());
}

// A connection to target `target` of `d` failed before it could carry mail:
// the next target is tried; after the last one the destination rests.
void service::target_failed(destination& d, std::size_t target, std::string_view why) {
  const char* name = d.fixed ? _cfg.delivery.relayhost.c_str() : d.key.c_str();
  std::string where =
      target < d.current.targets.size() ? d.current.targets[target].describe() : std::string();
  if (target == d.cursor) ++d.cursor;
  if (d.cursor < d.current.targets.size()) {
    RR_WARN("upstream %s for %s failed: %s; trying %s", where.c_str(), name,
            std::string(why).c_str(), d.current.targets[d.cursor].describe().c_str());
    return;
  }
  d.cursor = 0;
  if (!d.fixed) d.routed = false;
  ++d.failures;
  auto delay = retry_delay(d.failures);
  d.down_until_ms = _loop.now_ms() + std::int64_t{delay} * 1000;
  RR_WARN("upstream %s unreachable: %s; %zu message(s) wait, next try in %us", name,
          std::string(why).c_str(), d.ready.size(), delay);
}

void service::connection_gone(upstream* u) {
  // Never destroy a connection inside its own completion handler.
  _loop.defer([this, u] {
    auto& d = u->dest();
    std::erase_if(d.connections, [u](const auto& c) { return c.get() == u; });
    dispatch(d);
  });
}

void service::tick(std::int64_t now_ms) {
  std::int64_t now = util::wall_seconds();
  while (!_deferred.empty() && _deferred.begin()->first <= now) {
    auto q = std::move(_deferred.begin()->second);
    _deferred.erase(_deferred.begin());
    add_job(std::move(q));
  }
  // Jobs waiting for a destination that stays down still expire.
  if (now_ms - _last_expiry_check_ms >= 1000) {
    _last_expiry_check_ms = now_ms;
    for (auto& [key, d] : _destinations) {
      std::deque<std::unique_ptr<queued>> keep;
      for (auto& q : d->ready) {
        if (now - q->msg().env.received_at >= _cfg.delivery.max_age)
          retry_later(std::move(q), "the upstream could not be reached");
        else
          keep.push_back(std::move(q));
      }
      d->ready.swap(keep);
    }
    // Forget destinations with nothing to do (their routes are in the DNS
    // cache), unless they rest after a failure.
    std::erase_if(_destinations, [&](const auto& kv) {
      const auto& d = *kv.second;
      return !d.fixed && d.ready.empty() && d.connections.empty() && !d.resolving &&
             now_ms >= d.down_until_ms;
    });
  }
  for (auto& [key, d] : _destinations)
    for (auto& c : d->connections) c->tick(now_ms);
  dispatch();
}

void service::shutdown() {
  _stopping = true;
  for (auto& [key, d] : _destinations)
    for (auto& c : d->connections) c->tick(_loop.now_ms());
}

bool service::idle() const {
  for (const auto& [key, d] : _destinations)
    for (const auto& c : d->connections)
      if (c->busy()) return false;
  return true;
}

void service::close_all() {
  for (auto& [key, d] : _destinations)
    for (auto& c : d->connections) c->force_close();
}

}  // namespace ringrelay::delivery
