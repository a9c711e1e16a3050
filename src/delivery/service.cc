#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
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
  h += "\r\n\twith ";
  h += e.smtputf8 ? "UTF8SMTP" : "ESMTP";
  if (!e.tls_info.empty()) h += 'S';
  if (!e.auth_info.empty()) h += 'A';
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
  upstream(service& svc)
      : _svc(svc),
        _slot(svc._loop.add_owner(this)),
        _session(svc._cfg.hostname, svc.use_starttls()) {}
  ~upstream() {
    _svc._loop.remove_owner(_slot);
    if (_pipe[0] >= 0) ::close(_pipe[0]);
    if (_pipe[1] >= 0) ::close(_pipe[1]);
  }

  void connect() {
    const auto& d = _svc._cfg.delivery;
    _last_activity = _svc._loop.now_ms();
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_socket(s, d.relayhost_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
    io_uring_sqe_set_data64(s, _svc._loop.token(_slot, op_socket));
    ++_inflight;
  }

  bool usable_idle() const {
    return !_closing && !_current && _session.state() == session_state::ready;
  }
  bool busy() const { return _current != nullptr; }
  bool closing() const { return _closing; }

  void start(std::unique_ptr<queued> q) {
    _current = std::move(q);
    ++_messages;
    const auto& m = _current->msg;
    _header = received_header(m, _svc._cfg.hostname);
    envelope env;
    env.sender = m.env.sender;
    _current->attempt = m.pending;
    for (auto i : _current->attempt) env.recipients.push_back(m.env.recipients[i]);
    env.size = _header.size() + m.env.size;
    env.eight_bit = m.env.eight_bit;
    env.smtputf8 = m.env.smtputf8;
    env.body_is_raw = m.env.body_is_raw;
    _started_ms = _svc._loop.now_ms();
    run_events(_session.start_message(std::move(env)));
    flush();
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
    io_uring_sqe* s = _svc._loop.sqe();
    io_uring_prep_connect(s, _fd, reinterpret_cast<const sockaddr*>(&d.relayhost_addr),
                          d.relayhost_addr_len);
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
    _svc.host_failed(why);
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
        _svc.tls_failed(_tls->error_text());
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
          _svc.host_ok();
          if (!_current) _svc.dispatch();
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
          _svc.finished(std::move(_current), _session.results());
          break;
        case event::closed:
        case event::failed: {
          const auto& r = _session.reason();
          if (!_reported && _messages == 0) _svc.host_failed(r.description);
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
  // extents, then body_sent() and the terminator from output().
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
    _body_phase = body_phase::header;
    submit_send();
  }

  void body_step() {
    const auto& body = _current->msg.body;
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
    const auto& x = _current->msg.body[_extent];
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
    const auto& body = _current->msg.body;
    _splice_failed = false;
    _splices = 0;
    std::vector<spool::extent>& parts = _splice_parts;
    parts.clear();
    while (_extent < body.size() && parts.size() < splice_window) {
      auto at = body[_extent].offset + _extent_done;
      parts.push_back(
          next_part(_pipe_slots * page_size - static_cast<std::uint32_t>(at % page_size)));
    }
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
    bool ok;
    if (_session.framing() == body_framing::data_stuffing_needed) {
      _stuffed.clear();
      dot_stuff(_raw, _at_line_start, _stuffed);
      ok = queue(_stuffed);
    } else {
      ok = queue(_raw);
    }
    if (!ok) return;
    _sent = 0;
    submit_send();
  }

  void end_body() {
    _in_body = false;
    _body_phase = body_phase::none;
    _session.body_sent(_session.framing() == body_framing::data_stuffing_needed ? _at_line_start
                                                                                : true);
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
    _svc.connection_gone(this);
  }

  enum class body_phase { none, header, splicing, reading };

  service& _svc;
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
  std::unique_ptr<queued> _current;
  std::uint32_t _messages = 0;
  std::int64_t _last_activity = 0;
  std::int64_t _started_ms = 0;
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

service::service(reactor::loop& loop, spool::writer& spool, const config::server_config& cfg,
                 unsigned shard)
    : _loop(loop), _spool(spool), _cfg(cfg), _shard(shard) {
  if (cfg.delivery.starttls) _tls_client = tls::context::client();
}

service::~service() = default;

void service::enqueue(spool::stored_message&& m) {
  auto q = std::make_unique<queued>();
  q->msg = std::move(m);
  if (q->msg.next_attempt > util::wall_seconds()) {
    auto at = q->msg.next_attempt;
    _deferred.emplace(at, std::move(q));
    return;
  }
  _ready.push_back(std::move(q));
  dispatch();
}

std::uint32_t service::retry_delay(std::uint32_t attempts) const {
  const auto& s = _cfg.delivery.retry_schedule;
  if (s.empty()) return 60;
  return s[std::min<std::size_t>(attempts == 0 ? 0 : attempts - 1, s.size() - 1)];
}

void service::dispatch() {
  if (_stopping) return;
  while (!_ready.empty()) {
    upstream* idle = nullptr;
    std::size_t connecting = 0;
    for (auto& c : _connections) {
      if (c->usable_idle()) {
        idle = c.get();
        break;
      }
      if (!c->busy() && !c->closing()) ++connecting;
    }
    if (idle) {
      auto q = std::move(_ready.front());
      _ready.pop_front();
      idle->start(std::move(q));
      continue;
    }
    // Open connections for the messages no connection is about to take,
    // within the per-host limit and not while the host is known down.
    if (connecting >= _ready.size() || _connections.size() >= _cfg.delivery.connections_per_host ||
        _loop.now_ms() < _host_down_until_ms)
      return;
    _connections.push_back(std::make_unique<upstream>(*this));
    _connections.back()->connect();
  }
}

void service::finished(std::unique_ptr<queued> q, const std::vector<recipient_result>& results) {
  auto& m = q->msg;
  char id[17];
  util::format_queue_id(m.id, id);
  std::vector<std::uint32_t> done, still;
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
                _cfg.delivery.relayhost.c_str(), static_cast<long long>(delay_s), line.c_str());
        done.push_back(idx);
        break;
      case outcome::permanent: {
        RR_INFO(
            "failed id=%s to=<%s> relay=%s reply=\"%s\" (a bounce is sent once bounces are "
            "implemented)",
            id, rcpt, _cfg.delivery.relayhost.c_str(), line.c_str());
        std::uint32_t one[] = {idx};
        _spool.record_failed(m, line, one);
        done.push_back(idx);
        break;
      }
      case outcome::temporary:
        last_temp = line;
        still.push_back(idx);
        break;
    }
  }
  if (!done.empty()) {
    // Only delivered/failed recipients are finished; the rest stay pending.
    std::vector<std::uint32_t> delivered;
    for (std::size_t i = 0; i < results.size() && i < q->attempt.size(); ++i)
      if (results[i].status == outcome::delivered) delivered.push_back(q->attempt[i]);
    if (!delivered.empty()) _spool.record_done(m, delivered);
  }
  m.pending = std::move(still);
  if (m.pending.empty()) {
    _spool.release(m);
    return;
  }
  retry_later(std::move(q), last_temp.empty() ? "temporary failure" : last_temp);
}

void service::retry_later(std::unique_ptr<queued> q, std::string_view why) {
  auto& m = q->msg;
  char id[17];
  util::format_queue_id(m.id, id);
  ++m.attempts;
  std::int64_t now = util::wall_seconds();
  if (now - m.env.received_at >= _cfg.delivery.max_age) {
    std::string reason = "expired after " + std::to_string(_cfg.delivery.max_age) +
                         "s in the queue; last error: " + std::string(why);
    for (auto idx : m.pending)
      RR_INFO("failed id=%s to=<%s> reply=\"%s\"", id, m.env.recipients[idx].c_str(),
              reason.c_str());
    _spool.record_failed(m, reason, m.pending);
    _spool.release(m);
    return;
  }
  auto delay = retry_delay(m.attempts);
  m.next_attempt = now + delay;
  for (auto idx : m.pending)
    RR_INFO("deferred id=%s to=<%s> attempts=%u retry_in=%us reply=\"%s\"", id,
            m.env.recipients[idx].c_str(), m.attempts, delay, std::string(why).c_str());
  _spool.record_deferred(m);
  _deferred.emplace(m.next_attempt, std::move(q));
}

bool service::use_starttls() const {
  return _tls_client && _loop.now_ms() >= _plaintext_until_ms;
}

// delivery.tls_fallback: after a failed handshake, talk plaintext to this
// host for a while instead of deferring everything (off by default: an
// attacker who breaks handshakes must not get plaintext for free).
void service::tls_failed(std::string_view why) {
  if (!_cfg.delivery.tls_fallback) return;
  _plaintext_until_ms = _loop.now_ms() + 3600 * 1000;
  RR_WARN(
      "upstream %s: TLS handshake failed (%s); delivery.tls_fallback is on, so the next hour "
      "of connections use plaintext",
      _cfg.delivery.relayhost.c_str(), std::string(why).c_str());
}

void service::host_failed(std::string_view why) {
  ++_host_failures;
  auto delay = retry_delay(_host_failures);
  _host_down_until_ms = _loop.now_ms() + std::int64_t{delay} * 1000;
  RR_WARN("upstream %s unreachable: %s; %zu message(s) wait, next try in %us",
          _cfg.delivery.relayhost.c_str(), std::string(why).c_str(), _ready.size(), delay);
}

void service::connection_gone(upstream* u) {
  // Never destroy a connection inside its own completion handler.
  _loop.defer([this, u] {
    std::erase_if(_connections, [u](const auto& c) { return c.get() == u; });
    dispatch();
  });
}

void service::tick(std::int64_t now_ms) {
  std::int64_t now = util::wall_seconds();
  while (!_deferred.empty() && _deferred.begin()->first <= now) {
    _ready.push_back(std::move(_deferred.begin()->second));
    _deferred.erase(_deferred.begin());
  }
  // Messages waiting for a host that stays down still expire.
  if (now_ms - _last_expiry_check_ms >= 1000) {
    _last_expiry_check_ms = now_ms;
    std::deque<std::unique_ptr<queued>> keep;
    for (auto& q : _ready) {
      if (now - q->msg.env.received_at >= _cfg.delivery.max_age)
        retry_later(std::move(q), "the upstream could not be reached");
      else
        keep.push_back(std::move(q));
    }
    _ready.swap(keep);
  }
  for (auto& c : _connections) c->tick(now_ms);
  dispatch();
}

void service::shutdown() {
  _stopping = true;
  for (auto& c : _connections) c->tick(_loop.now_ms());
}

bool service::idle() const {
  return std::none_of(_connections.begin(), _connections.end(),
                      [](const auto& c) { return c->busy(); });
}

void service::close_all() {
  for (auto& c : _connections) c->force_close();
}

}  // namespace ringrelay::delivery
