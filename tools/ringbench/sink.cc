#include "sink.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <ringrelay/net/listener.hh>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/smtp/command.hh>
#include <ringrelay/smtp/data_scanner.hh>
#include <ringrelay/tls/tls.hh>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "body_verifier.hh"
#include "report.hh"
#include "weighted_picker.hh"

namespace ringrelay::ringbench {
namespace {

enum op : std::uint8_t { op_recv = 1, op_send = 2, op_delay = 3, op_cancel = 4 };

// Receive buffers per thread: 512 × 32 KiB. The sink consumes each buffer
// in the completion that filled it, so few are ever out at once.
constexpr std::uint32_t recv_buffers = 512;
constexpr std::uint32_t recv_buffer_size = 32768;
// A connection holding this many unprocessed buffers (while an end-of-data
// reply is delayed) stops receiving until it catches up.
constexpr std::size_t max_queued_buffers = 16;
// Command and AUTH lines longer than this are refused (RFC 5321 4.5.3.1.4
// says 512 for commands; AUTH responses may be longer, RFC 4954 4).
constexpr std::size_t max_line = 12288;
// Mismatching messages logged by ID, per thread.
constexpr std::uint64_t mismatches_logged = 10;
// Connections still open this long after the stop are closed.
constexpr std::int64_t stop_grace_ms = 2000;
// TLS: decrypted input is parsed from a buffer of one record's size.
constexpr std::size_t plain_buffer_size = 16384;
// TLS handshake failures logged, per thread.
constexpr std::uint64_t tls_failures_logged = 3;

constexpr std::string_view greeting = "220 ringbench sink ESMTP ready\r\n";

void bump(std::atomic<std::uint64_t>& a, std::uint64_t n = 1) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct shared_state {
  explicit shared_state(const sink_options& o) : opt(o) {}

  const sink_options& opt;
  std::string ehlo_reply;      // before TLS: offers STARTTLS when there is a certificate
  std::string ehlo_reply_tls;  // inside TLS
  std::vector<std::uint32_t> weights;
  std::vector<std::string> reply_lines;  // per --reply entry
  std::atomic<bool> stop{false};
};

struct alignas(64) live_counters {
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> mismatches{0};
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<bool> finished{false};
};

struct thread_totals {
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t verified = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t unverified = 0;
  std::uint64_t connections = 0;
  std::uint64_t authentications = 0;
  std::uint64_t tls_handshakes = 0;
  std::uint64_t tls_failures = 0;
  std::array<std::uint64_t, 600> replies{};  // end-of-data replies by code
};

class connection;

class worker {
 public:
  worker(shared_state& shared, unsigned index, int listen_fd)
      : shared(shared), index(index), _listen_fd(listen_fd), _picker(shared.weights) {}

  void run();
  void destroy(connection* c);
  void schedule_flush(connection* c);
  void starved(connection* c) { _starved.push_back(c); }
  // Counts a received message; returns the index of its reply in the mix.
  std::size_t message_received(std::uint64_t size, body_verifier& v);
  void tls_failed(const std::string& why);

  reactor::loop& loop() { return *_loop; }
  reactor::buffer_pool& buffers() { return *_buffers; }

  shared_state& shared;
  const unsigned index;
  std::unique_ptr<tls::context> tls;  // --tls-cert: this thread's server context
  live_counters live;
  thread_totals totals;

 private:
  void accept(int fd);
  void turn_end();
  void tick(std::int64_t now_ms);

  int _listen_fd;
  reactor::loop* _loop = nullptr;
  reactor::buffer_pool* _buffers = nullptr;
  std::unique_ptr<net::acceptor> _acceptor;
  std::vector<std::unique_ptr<connection>> _connections;
  std::vector<connection*> _dirty;
  std::vector<connection*> _flushing;
  std::vector<connection*> _starved;
  weighted_picker _picker;
  bool _stopping = false;
  std::int64_t _stop_deadline_ms = 0;
};

// One client connection.
class connection final : public reactor::owner {
 public:
  connection(worker& w, int fd) : _w(w), _fd(fd), _slot(w.loop().add_owner(this)) {}
  ~connection() { _w.loop().remove_owner(_slot); }

  void start() {
    // Implicit TLS (RFC 8314 3.3): the greeting waits for the handshake.
    if (_w.shared.opt.implicit_tls)
      begin_tls();
    else
      _out = greeting;
    arm_recv();
    _w.schedule_flush(this);
  }

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;
  void flush();
  void rearm_if_starved() {
    if (!_closing && !_recv_armed && !_paused) arm_recv();
  }
  // Stop: reply to what was received, then close.
  void stop() {
    _close_after_flush = true;
    _w.schedule_flush(this);
  }
  void force_close() {
    begin_close();
    maybe_destroy();
  }

  std::size_t index = 0;
  bool listed_dirty = false;

 private:
  enum class mode : std::uint8_t {
    command,
    data,
    bdat,
    auth_plain,
    auth_login_user,
    auth_login_pass
  };

  struct pending_buffer {
    std::uint16_t id;
    std::uint32_t len;
    std::uint32_t off;
  };

  void arm_recv();
  void cancel_recv();
  void on_recv(const io_uring_cqe& cqe);
  void on_send(int res);
  void begin_tls();
  void tls_input();
  bool decrypt();
  bool seal_output();
  std::span<const char> next_input();
  void consumed(std::size_t n);
  void process();
  std::size_t feed_line(std::span<const char> data);
  void handle_line(std::string_view line);
  void handle_command(const smtp::command& c);
  void handle_auth(std::string_view arg);
  std::size_t feed_data(std::span<const char> data);
  std::size_t feed_bdat(std::span<const char> data);
  void end_of_message(std::uint64_t size);
  void reply(std::string_view text) { _out.append(text); }
  void begin_close();
  void maybe_destroy();

  worker& _w;
  int _fd;
  std::uint32_t _slot;
  std::deque<pending_buffer> _in;
  std::string _line;  // a command line split over buffers
  bool _line_too_long = false;
  mode _mode = mode::command;

  bool _authenticated = false;
  bool _in_transaction = false;
  std::uint32_t _rcpts = 0;

  // No limits: the sink takes any size and line length.
  smtp::data_scanner _scanner{smtp::scan_limits{~std::uint64_t{0}, ~std::uint32_t{0}}};
  body_verifier _verifier;
  std::uint64_t _bdat_left = 0;
  std::uint64_t _bdat_size = 0;  // octets of this message's chunks so far
  bool _bdat_last = false;
  bool _bdat_refused = false;  // chunk consumed but refused (no transaction)
  bool _bdat_started = false;

  std::string _out;
  std::string _sending;
  std::size_t _sent = 0;

  // TLS: the session, and the decrypted input being parsed.
  std::unique_ptr<tls::session> _tls;
  std::unique_ptr<char[]> _plain;
  std::size_t _plain_off = 0;
  std::size_t _plain_len = 0;
  bool _starttls_pending = false;  // 220 to STARTTLS queued: TLS begins once it is sent
  bool _tls_shutdown = false;      // close_notify queued

  // An end-of-data reply waiting for --delay-ms.
  bool _delay_pending = false;
  std::size_t _delayed_reply = 0;
  __kernel_timespec _delay_ts{};

  int _inflight = 0;
  bool _recv_armed = false;
  bool _cancel_sent = false;
  bool _paused = false;
  bool _send_inflight = false;
  bool _close_after_flush = false;
  bool _closing = false;
  bool _destroying = false;
  bool _processing = false;
};

void connection::arm_recv() {
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_recv_multishot(s, _fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = _w.buffers().group();
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_recv));
  _recv_armed = true;
  ++_inflight;
}

void connection::cancel_recv() {
  if (!_recv_armed || _cancel_sent) return;
  _cancel_sent = true;
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_cancel64(s, _w.loop().token(_slot, op_recv), 0);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_cancel));
  ++_inflight;
}

void connection::on_completion(std::uint8_t op, const io_uring_cqe& cqe) {
  switch (op) {
    case op_recv:
      on_recv(cqe);
      break;
    case op_send:
      --_inflight;
      on_send(cqe.res);
      break;
    case op_delay:
      --_inflight;
      _delay_pending = false;
      if (!_closing) {
        reply(_w.shared.reply_lines[_delayed_reply]);
        process();
      }
      break;
    default:
      --_inflight;
      break;
  }
  maybe_destroy();
}

void connection::on_recv(const io_uring_cqe& cqe) {
  bool more = cqe.flags & IORING_CQE_F_MORE;
  if (!more) {
    --_inflight;
    _recv_armed = false;
    _cancel_sent = false;
  }
  if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
    auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    _w.buffers().taken(id);
    if (_tls && !_closing) {
      _tls->push_ciphertext(_w.buffers().data(id, static_cast<std::uint32_t>(cqe.res)));
      _w.buffers().unref(id);
      tls_input();
    } else if (_closing || _starttls_pending) {
      // RFC 3207 4.2: what was pipelined behind STARTTLS is discarded.
      _w.buffers().unref(id);
    } else {
      _in.push_back({id, static_cast<std::uint32_t>(cqe.res), 0});
      process();
    }
  } else if (cqe.res == -ENOBUFS) {
    // Every buffer of this thread is out: re-arm once some come back.
    if (!more) _w.starved(this);
    return;
  } else if (cqe.res == 0 || (cqe.res < 0 && cqe.res != -ECANCELED)) {
    begin_close();
  }
  if (!more && !_closing && !_paused && !_recv_armed && cqe.res != -ECANCELED) arm_recv();
}

void connection::begin_tls() {
  _starttls_pending = false;
  _tls = std::make_unique<tls::session>(*_w.tls);
  _plain = std::make_unique<char[]>(plain_buffer_size);
  for (auto& b : _in) _w.buffers().unref(b.id);
  _in.clear();
}

void connection::tls_input() {
  if (!_tls->established()) {
    tls::status st = _tls->handshake();
    if (st == tls::status::want) return _w.schedule_flush(this);  // the server's flight
    if (st != tls::status::ok) {
      _w.tls_failed(_tls->error_text());
      begin_close();
      return;
    }
    ++_w.totals.tls_handshakes;
    if (_w.shared.opt.implicit_tls) reply(greeting);
  }
  process();
}

// Decrypts the next piece of input into _plain; false when there is none
// yet (or the session ended, which closes the connection).
bool connection::decrypt() {
  if (!_tls->established()) return false;
  std::size_t n = 0;
  tls::status st = _tls->read(_plain.get(), plain_buffer_size, n);
  if (st == tls::status::ok && n > 0) {
    _plain_off = 0;
    _plain_len = n;
    return true;
  }
  if (st == tls::status::closed || st == tls::status::error) begin_close();
  return false;
}

// The bytes to parse next: the front receive buffer, or the decrypted
// input. Empty when nothing is waiting.
std::span<const char> connection::next_input() {
  if (_tls) {
    if (_plain_off == _plain_len && !decrypt()) return {};
    return {_plain.get() + _plain_off, _plain_len - _plain_off};
  }
  while (!_in.empty()) {
    auto& front = _in.front();
    auto data = _w.buffers().data(front.id, front.len).subspan(front.off);
    if (!data.empty()) return data;
    _w.buffers().unref(front.id);
    _in.pop_front();
  }
  return {};
}

void connection::consumed(std::size_t n) {
  if (_tls)
    _plain_off += n;
  else
    _in.front().off += static_cast<std::uint32_t>(n);
}

void connection::process() {
  if (_processing) return;
  _processing = true;
  while (!_closing && !_delay_pending && !_close_after_flush && !_starttls_pending) {
    auto data = next_input();
    if (data.empty()) break;
    std::size_t used = 0;
    switch (_mode) {
      case mode::data:
        used = feed_data(data);
        break;
      case mode::bdat:
        used = feed_bdat(data);
        break;
      default:
        used = feed_line(data);
        break;
    }
    consumed(used);
  }
  _processing = false;
  if (_starttls_pending) {
    // RFC 3207 4.2: commands pipelined behind STARTTLS are discarded.
    for (auto& b : _in) _w.buffers().unref(b.id);
    _in.clear();
  }
  // Input waiting for a delayed reply: received buffers, or ciphertext.
  std::size_t queued = _tls ? _tls->pending_input() / recv_buffer_size : _in.size();
  if (!_paused && queued >= max_queued_buffers) {
    _paused = true;
    cancel_recv();
  } else if (_paused && queued <= max_queued_buffers / 2) {
    _paused = false;
    if (!_recv_armed && !_closing) arm_recv();
  }
  _w.schedule_flush(this);
}

// Takes one line (up to LF) from `data`, joining pieces split over buffers.
std::size_t connection::feed_line(std::span<const char> data) {
  const void* nl = std::memchr(data.data(), '\n', data.size());
  if (!nl) {
    if (_line.size() + data.size() > max_line)
      _line_too_long = true;
    else
      _line.append(data.data(), data.size());
    return data.size();
  }
  auto len = static_cast<std::size_t>(static_cast<const char*>(nl) - data.data());
  std::string_view line(data.data(), len);
  if (!_line.empty()) {
    if (_line.size() + len > max_line)
      _line_too_long = true;
    else
      _line.append(line);
    line = _line;
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (_line_too_long || line.size() > max_line) {
    reply("500 5.5.6 Line too long\r\n");
    _mode = mode::command;
  } else {
    handle_line(line);
  }
  _line.clear();
  _line_too_long = false;
  return len + 1;
}

void connection::handle_line(std::string_view line) {
  switch (_mode) {
    case mode::auth_plain:
    case mode::auth_login_pass:
      _mode = mode::command;
      if (line == "*") return reply("501 5.7.0 Authentication cancelled\r\n");
      _authenticated = true;
      ++_w.totals.authentications;
      return reply("235 2.7.0 Authentication successful\r\n");
    case mode::auth_login_user:
      if (line == "*") {
        _mode = mode::command;
        return reply("501 5.7.0 Authentication cancelled\r\n");
      }
      _mode = mode::auth_login_pass;
      return reply("334 UGFzc3dvcmQ6\r\n");
    default:
      break;
  }
  smtp::parse_options po;
  po.max_size = ~std::uint64_t{0};
  smtp::command c;
  smtp::parse_reply err;
  if (!smtp::parse_command(line, po, c, err)) {
    _out.append(std::to_string(err.code))
        .append(" ")
        .append(err.enhanced)
        .append(" ")
        .append(err.text)
        .append("\r\n");
    return;
  }
  handle_command(c);
}

void connection::handle_command(const smtp::command& c) {
  const auto& opt = _w.shared.opt;
  switch (c.v) {
    case smtp::verb::ehlo:
      _in_transaction = false;
      _bdat_started = false;
      return reply(_tls ? _w.shared.ehlo_reply_tls : _w.shared.ehlo_reply);
    case smtp::verb::helo:
      _in_transaction = false;
      _bdat_started = false;
      return reply("250 ringbench sink\r\n");
    case smtp::verb::mail:
      if (_in_transaction) return reply("503 5.5.1 Nested MAIL command\r\n");
      _in_transaction = true;
      _rcpts = 0;
      return reply("250 2.1.0 Ok\r\n");
    case smtp::verb::rcpt:
      if (!_in_transaction) return reply("503 5.5.1 Need MAIL before RCPT\r\n");
      ++_rcpts;
      return reply("250 2.1.5 Ok\r\n");
    case smtp::verb::data:
      if (!_in_transaction || _rcpts == 0) return reply("503 5.5.1 Need RCPT before DATA\r\n");
      _mode = mode::data;
      _scanner.reset(smtp::data_scanner::mode::data);
      _verifier.reset(body_verifier::framing::stuffed);
      return reply("354 End data with <CR><LF>.<CR><LF>\r\n");
    case smtp::verb::bdat:
      if (!opt.chunking)
        return reply("502 5.5.1 CHUNKING is not offered (start the sink with --chunking)\r\n");
      _bdat_refused = !_in_transaction || _rcpts == 0;
      if (!_bdat_started && !_bdat_refused) {
        _bdat_started = true;
        _bdat_size = 0;
        _verifier.reset(body_verifier::framing::raw);
      }
      _bdat_left = c.chunk_size;
      _bdat_last = c.last;
      _mode = mode::bdat;
      if (_bdat_left == 0) feed_bdat({});
      return;
    case smtp::verb::rset:
      _in_transaction = false;
      _bdat_started = false;
      return reply("250 2.0.0 Ok\r\n");
    case smtp::verb::noop:
      return reply("250 2.0.0 Ok\r\n");
    case smtp::verb::vrfy:
      return reply("252 2.5.0 Cannot verify, send some mail\r\n");
    case smtp::verb::help:
      return reply("214 2.0.0 ringbench sink: see ringbench sink --help\r\n");
    case smtp::verb::quit:
      reply("221 2.0.0 Bye\r\n");
      _close_after_flush = true;
      return;
    case smtp::verb::starttls:
      if (!_w.tls)
        return reply(
            "454 4.7.0 TLS is not available (start the sink with --tls-cert and --tls-key)\r\n");
      if (_tls) return reply("503 5.5.1 TLS is already active\r\n");
      // RFC 3207 4.2: the session starts over inside TLS.
      _in_transaction = false;
      _bdat_started = false;
      _authenticated = false;
      _starttls_pending = true;
      return reply("220 2.0.0 Ready to start TLS\r\n");
    case smtp::verb::auth:
      return handle_auth(c.arg);
    case smtp::verb::unknown:
      break;
  }
  reply("500 5.5.1 Command unrecognized\r\n");
}

// --auth-accept: any credentials are good (RFC 4954 PLAIN and LOGIN).
void connection::handle_auth(std::string_view arg) {
  if (!_w.shared.opt.auth_accept)
    return reply("502 5.5.1 AUTH is not offered (start the sink with --auth-accept)\r\n");
  if (_authenticated) return reply("503 5.5.1 Already authenticated\r\n");
  auto space = arg.find(' ');
  std::string_view mech = arg.substr(0, space);
  bool has_ir = space != std::string_view::npos;
  auto is = [&](std::string_view m) {
    return mech.size() == m.size() &&
           std::equal(mech.begin(), mech.end(), m.begin(),
                      [](char a, char b) { return (a >= 'a' && a <= 'z' ? a - 32 : a) == b; });
  };
  if (is("PLAIN")) {
    if (!has_ir) {
      _mode = mode::auth_plain;
      return reply("334 \r\n");
    }
    _authenticated = true;
    ++_w.totals.authentications;
    return reply("235 2.7.0 Authentication successful\r\n");
  }
  if (is("LOGIN")) {
    _mode = has_ir ? mode::auth_login_pass : mode::auth_login_user;
    return reply(has_ir ? "334 UGFzc3dvcmQ6\r\n" : "334 VXNlcm5hbWU6\r\n");
  }
  reply("504 5.5.4 Unrecognized authentication type (PLAIN and LOGIN are offered)\r\n");
}

std::size_t connection::feed_data(std::span<const char> data) {
  smtp::scan_result r = _scanner.feed(data);
  if (r.replay) _verifier.feed({smtp::held_back_text, r.replay});
  _verifier.feed({data.data(), r.body});
  if (r.end) {
    _mode = mode::command;
    end_of_message(_scanner.size());
  }
  return r.consumed;
}

std::size_t connection::feed_bdat(std::span<const char> data) {
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(_bdat_left, data.size()));
  if (!_bdat_refused) {
    _verifier.feed({data.data(), n});
    _bdat_size += n;
  }
  _bdat_left -= n;
  if (_bdat_left > 0) return n;
  _mode = mode::command;
  if (_bdat_refused) {
    reply("503 5.5.1 Need MAIL and RCPT before BDAT\r\n");
  } else if (_bdat_last) {
    _bdat_started = false;
    end_of_message(_bdat_size);
  } else {
    reply("250 2.0.0 Chunk received\r\n");
  }
  return n;
}

void connection::end_of_message(std::uint64_t size) {
  _in_transaction = false;
  std::size_t which = _w.message_received(size, _verifier);
  if (_w.shared.opt.delay_ms == 0) return reply(_w.shared.reply_lines[which]);
  _delay_pending = true;
  _delayed_reply = which;
  _delay_ts.tv_sec = _w.shared.opt.delay_ms / 1000;
  _delay_ts.tv_nsec = static_cast<long>(_w.shared.opt.delay_ms % 1000) * 1000000L;
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_timeout(s, &_delay_ts, 0, 0);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_delay));
  ++_inflight;
}

// With TLS: encrypts the replies in _out and leaves the ciphertext there
// instead (handshake records included). False when encryption failed.
bool connection::seal_output() {
  if (_tls->established()) {
    if (!_out.empty() && _tls->write({_out.data(), _out.size()}) != tls::status::ok) return false;
    _out.clear();
    if (_close_after_flush && !_delay_pending && !_tls_shutdown) {
      _tls_shutdown = true;
      _tls->shutdown();  // close_notify after the last reply
    }
  }
  _out.swap(_tls->ciphertext());
  _tls->ciphertext().clear();
  return true;
}

void connection::flush() {
  listed_dirty = false;
  if (_closing || _send_inflight) return;
  if (_tls && !seal_output()) {
    begin_close();
    maybe_destroy();
    return;
  }
  if (!_out.empty()) {
    _sending.swap(_out);
    _out.clear();
    _sent = 0;
    io_uring_sqe* s = _w.loop().sqe();
    io_uring_prep_send(s, _fd, _sending.data(), _sending.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_send));
    _send_inflight = true;
    ++_inflight;
    // The 220 to STARTTLS is on its way in the clear: what follows is TLS.
    if (_starttls_pending) begin_tls();
    return;
  }
  if (_close_after_flush && !_delay_pending) {
    begin_close();
    maybe_destroy();
  }
}

void connection::on_send(int res) {
  _send_inflight = false;
  if (_closing) return;
  if (res < 0) return begin_close();
  _sent += static_cast<std::size_t>(res);
  if (_sent < _sending.size()) {
    io_uring_sqe* s = _w.loop().sqe();
    io_uring_prep_send(s, _fd, _sending.data() + _sent, _sending.size() - _sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_send));
    _send_inflight = true;
    ++_inflight;
    return;
  }
  _sending.clear();
  _w.schedule_flush(this);
}

void connection::begin_close() {
  if (_closing) return;
  _closing = true;
  cancel_recv();
  if (_delay_pending) {
    io_uring_sqe* s = _w.loop().sqe();
    io_uring_prep_timeout_remove(s, _w.loop().token(_slot, op_delay), 0);
    io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_cancel));
    ++_inflight;
  }
  for (auto& b : _in) _w.buffers().unref(b.id);
  _in.clear();
}

void connection::maybe_destroy() {
  if (!_closing || _destroying || _inflight > 0) return;
  _destroying = true;
  ::close(_fd);
  _w.destroy(this);
}

std::size_t worker::message_received(std::uint64_t size, body_verifier& v) {
  ++totals.messages;
  totals.bytes += size;
  bump(live.messages);
  bump(live.bytes, size);
  switch (v.finish()) {
    case body_verifier::verdict::ok:
      ++totals.verified;
      break;
    case body_verifier::verdict::mismatch:
      if (++totals.mismatches <= mismatches_logged)
        std::fprintf(stderr,
                     "ringbench sink: MISMATCH id=%.*s X-Ringbench-Sum=%08x computed=%08x\n",
                     static_cast<int>(v.id().size()), v.id().data(), v.expected(), v.computed());
      bump(live.mismatches);
      break;
    case body_verifier::verdict::unverified:
      ++totals.unverified;
      break;
  }
  std::size_t which = _picker.next();
  ++totals.replies[shared.opt.replies[which].value];
  return which;
}

void worker::tls_failed(const std::string& why) {
  if (++totals.tls_failures <= tls_failures_logged)
    std::fprintf(stderr, "ringbench sink: TLS handshake failed: %s\n", why.c_str());
}

void worker::run() {
  try {
    reactor::loop loop(reactor::loop_options{4096, 100});
    reactor::buffer_pool pool(loop.ring(), 0, recv_buffers, recv_buffer_size);
    _loop = &loop;
    _buffers = &pool;
    _acceptor = std::make_unique<net::acceptor>(loop, _listen_fd, [this](int fd) { accept(fd); });
    _listen_fd = -1;  // the acceptor owns it now
    loop.on_turn_end([this] { turn_end(); });
    loop.on_tick([this](std::int64_t now) { tick(now); });
    _acceptor->start();
    loop.run();
    _connections.clear();
    _acceptor.reset();
    _loop = nullptr;
    _buffers = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringbench sink: thread %u: %s\n", index, e.what());
    shared.stop.store(true);
  }
  if (_listen_fd >= 0) ::close(_listen_fd);
  if (tls) tls::thread_cleanup();
  live.finished.store(true);
}

void worker::accept(int fd) {
  int one = 1;
  // Replies are batched per loop turn already: send them at once.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ++totals.connections;
  bump(live.connections_open);
  auto c = std::make_unique<connection>(*this, fd);
  c->index = _connections.size();
  connection* raw = c.get();
  _connections.push_back(std::move(c));
  raw->start();
  if (_stopping) raw->stop();
}

void worker::schedule_flush(connection* c) {
  if (c->listed_dirty) return;
  c->listed_dirty = true;
  _dirty.push_back(c);
}

void worker::destroy(connection* c) {
  std::erase(_dirty, c);
  std::erase(_starved, c);
  // Never inside the connection's own completion handler: after this batch.
  _loop->defer([this, c] {
    std::size_t at = c->index;
    if (at != _connections.size() - 1) {
      std::swap(_connections[at], _connections.back());
      _connections[at]->index = at;
    }
    _connections.pop_back();
    bump(live.connections_open, ~std::uint64_t{0});
    if (_stopping && _connections.empty()) _loop->stop();
  });
}

void worker::turn_end() {
  _buffers->publish();
  // Swapped, not moved: both vectors keep their capacity from turn to turn.
  _flushing.swap(_dirty);
  for (auto* c : _flushing) c->flush();
  _flushing.clear();
  if (!_starved.empty() && _buffers->available() > _buffers->count() / 4) {
    auto starved = std::move(_starved);
    _starved.clear();
    for (auto* c : starved) c->rearm_if_starved();
  }
}

void worker::tick(std::int64_t now_ms) {
  if (!_stopping && shared.stop.load(std::memory_order_relaxed)) {
    _stopping = true;
    _stop_deadline_ms = now_ms + stop_grace_ms;
    _acceptor->stop();
    for (auto& c : _connections) c->stop();
    if (_connections.empty()) _loop->stop();
  } else if (_stopping && now_ms > _stop_deadline_ms) {
    std::vector<connection*> all;
    for (auto& c : _connections) all.push_back(c.get());
    for (auto* c : all) c->force_close();
  }
}

// `in_tls`: the reply inside TLS, which does not offer STARTTLS again.
std::string build_ehlo_reply(const sink_options& o, bool in_tls) {
  std::vector<std::string> lines = {"ringbench sink", "PIPELINING", "SIZE",
                                    "8BITMIME",       "SMTPUTF8",   "ENHANCEDSTATUSCODES"};
  if (o.chunking) lines.push_back("CHUNKING");
  if (o.auth_accept) lines.push_back("AUTH PLAIN LOGIN");
  if (!o.tls_cert.empty() && !in_tls) lines.push_back("STARTTLS");
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i)
    out += (i + 1 < lines.size() ? "250-" : "250 ") + lines[i] + "\r\n";
  return out;
}

std::string reply_line(std::uint64_t code) {
  std::string c = std::to_string(code);
  switch (code / 100) {
    case 2:
      return c + " 2.0.0 Ok: queued by ringbench sink\r\n";
    case 4:
      return c + " 4.3.0 ringbench sink: temporary failure, as configured by --reply\r\n";
    case 5:
      return c + " 5.3.0 ringbench sink: permanent failure, as configured by --reply\r\n";
    default:
      return c + " ringbench sink: reply as configured by --reply\r\n";
  }
}

void print_summary(const sink_options& o, const thread_totals& t, double elapsed,
                   unsigned threads) {
  double rate = elapsed > 0 ? static_cast<double>(t.messages) / elapsed : 0;
  double mb = elapsed > 0 ? static_cast<double>(t.bytes) / 1e6 / elapsed : 0;
  if (o.json) {
    json_object replies;
    for (std::size_t c = 0; c < t.replies.size(); ++c)
      if (t.replies[c]) replies.add(std::to_string(c), t.replies[c]);
    json_object j;
    j.add("mode", "sink")
        .add("listen", o.listen)
        .add("threads", std::uint64_t{threads})
        .add("elapsed_s", elapsed)
        .add("messages", t.messages)
        .add("bytes", t.bytes)
        .add("verified", t.verified)
        .add("mismatches", t.mismatches)
        .add("unverified", t.unverified)
        .add_raw("replies", replies.str())
        .add("connections", t.connections)
        .add("authentications", t.authentications)
        .add("tls", o.tls_cert.empty() ? "none"
                    : o.implicit_tls   ? "implicit"
                                       : "starttls")
        .add("tls_handshakes", t.tls_handshakes)
        .add("tls_failures", t.tls_failures)
        .add("msgs_per_s", rate)
        .add("mb_per_s", mb);
    std::printf("%s\n", j.str().c_str());
    return;
  }
  std::printf("ringbench sink: %s, %u thread(s)\n", o.listen.c_str(), threads);
  std::printf("  elapsed          %.2f s\n", elapsed);
  std::printf("  messages         %s (%s msg/s)\n", grouped(t.messages).c_str(),
              grouped(rate, 1).c_str());
  std::printf("  octets           %s (%s MB/s)\n", grouped(t.bytes).c_str(),
              grouped(mb, 1).c_str());
  std::printf("  verified         %s\n", grouped(t.verified).c_str());
  std::printf("  mismatches       %s\n", grouped(t.mismatches).c_str());
  std::printf("  unverified       %s\n", grouped(t.unverified).c_str());
  std::printf("  replies          ");
  bool first = true;
  for (std::size_t c = 0; c < t.replies.size(); ++c) {
    if (!t.replies[c]) continue;
    std::printf("%s%zu: %s", first ? "" : ", ", c, grouped(t.replies[c]).c_str());
    first = false;
  }
  std::printf("%s\n", first ? "none" : "");
  std::printf("  connections      %s\n", grouped(t.connections).c_str());
  std::printf("  authentications  %s\n", grouped(t.authentications).c_str());
  if (!o.tls_cert.empty())
    std::printf("  tls              %s handshakes, %s failed\n", grouped(t.tls_handshakes).c_str(),
                grouped(t.tls_failures).c_str());
}

// SO_REUSEPORT would let this sink share the port with another process
// (an earlier sink still running) and silently get half the connections: a
// plain bind first finds such a listener.
std::string check_port_free(const sink_options& o) {
  sockaddr_storage ss;
  socklen_t len;
  net::parse_endpoint(o.listen, ss, len);
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  int err = errno;
  ::close(fd);
  if (rc < 0 && err == EADDRINUSE)
    return o.listen +
           ": another process listens on this address (an earlier sink?); stop it or "
           "pick another port";
  return {};
}

// One handshake in memory between a client and `server`: a key that does
// not belong to the certificate would otherwise only show as every
// client's handshake failing. Returns what went wrong, or "".
std::string tls_self_test(const tls::context& server) {
  auto client_ctx = tls::context::client();
  tls::session c(*client_ctx), s(server);
  for (int flight = 0; flight < 8 && !(c.established() && s.established()); ++flight) {
    if (c.handshake() == tls::status::error) return c.error_text();
    s.push_ciphertext(c.ciphertext());
    c.ciphertext().clear();
    if (s.handshake() == tls::status::error) return s.error_text();
    c.push_ciphertext(s.ciphertext());
    s.ciphertext().clear();
  }
  return c.established() && s.established() ? "" : "the handshake did not finish";
}

// The TLS module names its configuration keys in errors; say which options.
std::unique_ptr<tls::context> server_context(const sink_options& o) {
  std::unique_ptr<tls::context> ctx;
  try {
    ctx = tls::context::server(o.tls_cert, o.tls_key);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("--tls-cert/--tls-key: ") + e.what());
  }
  if (std::string why = tls_self_test(*ctx); !why.empty())
    throw std::runtime_error("--tls-cert " + o.tls_cert + " with --tls-key " + o.tls_key +
                             ": a test handshake failed (" + why +
                             "); is the key the certificate's?");
  tls::thread_cleanup();
  return ctx;
}

}  // namespace

int run_sink(const sink_options& opt) {
  shared_state shared(opt);
  shared.ehlo_reply = build_ehlo_reply(opt, opt.implicit_tls);
  shared.ehlo_reply_tls = build_ehlo_reply(opt, true);
  for (const auto& r : opt.replies) {
    shared.weights.push_back(r.weight);
    shared.reply_lines.push_back(reply_line(r.value));
  }
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = opt.threads ? opt.threads : cpus;

  if (std::string busy = check_port_free(opt); !busy.empty()) {
    std::fprintf(stderr, "ringbench sink: %s\n", busy.c_str());
    return 2;
  }
  std::vector<std::unique_ptr<worker>> workers;
  try {
    reactor::loop::probe_kernel();
    for (unsigned i = 0; i < threads; ++i) {
      workers.push_back(std::make_unique<worker>(
          shared, i, net::open_listener(opt.listen_host, opt.listen_port)));
      if (!opt.tls_cert.empty()) workers.back()->tls = server_context(opt);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringbench sink: %s\n", e.what());
    return 2;
  }
  block_stop_signals();
  double start = now_s();
  std::vector<std::thread> running;
  for (auto& w : workers) running.emplace_back([&w] { w->run(); });
  if (!opt.quiet) std::fprintf(stderr, "ringbench sink: listening on %s\n", opt.listen.c_str());

  double next_report = start + 1;
  std::uint64_t last_messages = 0, last_bytes = 0;
  bool expect_reached = false;
  for (;;) {
    if (std::all_of(workers.begin(), workers.end(),
                    [](const auto& w) { return w->live.finished.load(); }))
      break;
    double now = now_s();
    std::uint64_t messages = 0, bytes = 0, mismatches = 0, open = 0;
    for (auto& w : workers) {
      messages += w->live.messages.load(std::memory_order_relaxed);
      bytes += w->live.bytes.load(std::memory_order_relaxed);
      mismatches += w->live.mismatches.load(std::memory_order_relaxed);
      open += w->live.connections_open.load(std::memory_order_relaxed);
    }
    if (now >= next_report) {
      if (!opt.quiet)
        std::fprintf(stderr,
                     "ringbench sink: %4.0fs  %s msg/s  %s MB/s  messages %s  mismatches %s  "
                     "connections %s\n",
                     now - start, grouped(messages - last_messages).c_str(),
                     grouped(static_cast<double>(bytes - last_bytes) / 1e6, 1).c_str(),
                     grouped(messages).c_str(), grouped(mismatches).c_str(), grouped(open).c_str());
      last_messages = messages;
      last_bytes = bytes;
      next_report += 1;
    }
    if (opt.expect && messages >= opt.expect) {
      expect_reached = true;
      shared.stop.store(true);
    }
    if (opt.duration_s > 0 && now - start >= opt.duration_s) shared.stop.store(true);
    if (wait_signal(100) != 0) shared.stop.store(true);
  }
  for (auto& t : running) t.join();
  double elapsed = now_s() - start;

  thread_totals total;
  for (auto& w : workers) {
    const auto& t = w->totals;
    total.messages += t.messages;
    total.bytes += t.bytes;
    total.verified += t.verified;
    total.mismatches += t.mismatches;
    total.unverified += t.unverified;
    total.connections += t.connections;
    total.authentications += t.authentications;
    total.tls_handshakes += t.tls_handshakes;
    total.tls_failures += t.tls_failures;
    for (std::size_t c = 0; c < total.replies.size(); ++c) total.replies[c] += t.replies[c];
  }
  print_summary(opt, total, elapsed, threads);
  if (total.mismatches > 0) return 1;
  if (opt.expect && !expect_reached && total.messages < opt.expect) {
    std::fprintf(stderr, "ringbench sink: received %llu of the %llu messages expected\n",
                 static_cast<unsigned long long>(total.messages),
                 static_cast<unsigned long long>(opt.expect));
    return 1;
  }
  return 0;
}

}  // namespace ringrelay::ringbench
