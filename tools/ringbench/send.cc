#include "send.hh"

#include <wolfssl/options.h>
// options.h first: it carries the build configuration wolfssl/ssl.h below needs.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <wolfssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <ringrelay/delivery/reply.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/tls/tls.hh>
#include <ringrelay/util/clock.hh>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "histogram.hh"
#include "message.hh"
#include "report.hh"
#include "weighted_picker.hh"

namespace ringrelay::ringbench {
namespace {

enum op : std::uint8_t {
  op_connect = 1,
  op_connect_timeout = 2,
  op_recv = 3,
  op_send = 4,
  op_cancel = 5,
};

// The pacer's one operation: its timer.
constexpr std::uint8_t op_pace = 1;

constexpr std::string_view quit_line = "QUIT\r\n";
constexpr std::string_view starttls_line = "STARTTLS\r\n";
constexpr std::string_view rset_line = "RSET\r\n";
constexpr std::string_view end_of_data = ".\r\n";
// Index 0 of the outcome table: the connection was lost or timed out with
// the message in flight (no reply code to report).
constexpr std::size_t lost = 0;
// Plaintext parts shorter than a TLS record are gathered into one record;
// longer ones (big bodies) are encrypted straight from the shared buffer.
constexpr std::size_t tls_record_max = 16384;

std::uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// Single writer (the owning thread), read by the main thread for progress:
// a relaxed load and store, no locked read-modify-write on the hot path.
void bump(std::atomic<std::uint64_t>& a, std::uint64_t n = 1) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::string base64(std::string_view in) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
             static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
             static_cast<unsigned char>(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out.push_back(alphabet[(v >> k) & 63]);
  }
  if (std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

bool is_2xx(std::uint16_t code) {
  return code >= 200 && code < 300;
}

// What every thread reads: options, prepared messages, and the run's
// few shared atomics.
struct shared_state {
  explicit shared_state(const send_options& o) : opt(o) {}

  const send_options& opt;
  unsigned threads = 1;
  std::vector<message_template> messages;
  std::vector<std::uint32_t> weights;
  std::string ehlo_line;
  std::string auth_first;  // AUTH PLAIN <ir> / AUTH LOGIN
  std::string auth_user;   // LOGIN: base64 user line
  std::string auth_pass;   // LOGIN: base64 password line

  std::atomic<std::uint64_t> claimed{0};
  std::atomic<bool> stop{false};   // start no more messages; finish and QUIT
  std::atomic<bool> abort{false};  // close every connection now
  std::atomic<bool> any_ready{false};

  std::mutex fatal_mutex;
  std::string fatal;

  // Takes one message from the budget; false once it is spent or the run
  // is stopping.
  bool claim() {
    if (stop.load(std::memory_order_relaxed)) return false;
    if (opt.messages == 0) return true;
    return claimed.fetch_add(1, std::memory_order_relaxed) < opt.messages;
  }
  bool budget_spent() const {
    return opt.messages != 0 && claimed.load(std::memory_order_relaxed) >= opt.messages;
  }
  void set_fatal(std::string why) {
    {
      std::lock_guard lock(fatal_mutex);
      if (fatal.empty()) fatal = std::move(why);
    }
    abort.store(true);
  }
};

// Progress counters, read by the main thread once a second.
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<bool> finished{false};
};

// Owned by a thread during the run, read by the main thread after join.
struct thread_totals {
  histogram latency;                          // from MAIL, or with --rate from the scheduled start
  histogram mail_latency;                     // --rate: from MAIL
  histogram start_lag;                        // --rate: MAIL's delay behind its schedule
  std::array<std::uint64_t, 600> outcomes{};  // final code per message; [0] lost
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  std::uint64_t bytes = 0;
  std::uint64_t rcpt_refused = 0;
  std::uint64_t connections = 0;
  std::uint64_t connection_failures = 0;
  std::uint64_t tls_handshakes = 0;
  std::string tls_info;  // "TLSv1.3 TLS_AES_128_GCM_SHA256" of the first handshake
};

class client;
class worker;

// --rate: start times on a fixed schedule (due(k) = first + k × interval),
// each handed to the connection that has waited longest between messages.
// When no connection is free at a due time the slot waits for one, and the
// message still counts its latency from the due time. The schedule starts
// once the thread's connections are ready (connect, EHLO, TLS, AUTH done:
// their setup is not the server's message latency), or a second after the
// first one was, should some never be.
class pacer final : public reactor::owner {
 public:
  // `offset_ns` places this thread's slots between the other threads'.
  pacer(worker& w, double offset_ns, double interval_ns);
  ~pacer();
  pacer(const pacer&) = delete;
  pacer& operator=(const pacer&) = delete;

  // `c` is free for its next message.
  void wait(client* c) {
    _idle.push_back(c);
    release();
  }
  // `c` quits or failed while it waited.
  void forget(client* c) { std::erase(_idle, c); }
  // A connection became ready; `all` when every one of the thread's is.
  void connection_ready(bool all);
  void tick();
  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;

 private:
  void start();
  std::uint64_t due_ns() const {
    return static_cast<std::uint64_t>(_first_ns + _interval_ns * static_cast<double>(_k));
  }
  void release();
  void arm();

  worker& _w;
  std::uint32_t _slot;
  double _first_ns;
  double _interval_ns;
  std::uint64_t _k = 0;  // the next slot
  std::deque<client*> _idle;
  std::uint64_t _first_ready_ns = 0;
  bool _started = false;
  bool _armed = false;
  __kernel_timespec _ts{};
};

class worker {
 public:
  worker(shared_state& shared, unsigned index, unsigned connections)
      : shared(shared), index(index), _target(connections), _picker(shared.weights) {
    for (const auto& m : shared.messages) {
      std::string h = m.header;
      char id[id_width];
      format_id(index, 0, id);
      for (auto off : m.id_offsets) std::memcpy(h.data() + off, id, 4);  // "TTT-"
      headers.push_back(std::move(h));
    }
  }

  void run();
  void client_gone(client* c, bool replace_now);

  reactor::loop& loop() { return *_loop; }
  // A connection finished its greeting, EHLO, TLS and AUTH.
  void client_ready() {
    progress();
    if (_pacer) _pacer->connection_ready(++_ready_count >= _target);
  }
  // A connection became ready or a message was accepted.
  void progress() {
    _last_progress_ms = _loop->now_ms();
    _failures_since_progress = 0;
  }
  void connection_failed() {
    ++totals.connection_failures;
    ++_failures_since_progress;
  }
  std::size_t pick_size() { return _picker.next(); }
  std::uint64_t next_seq() { return ++_seq; }
  // The --rate schedule, or null when messages go back to back.
  pacer* pacing() { return _pacer.get(); }

  shared_state& shared;
  const unsigned index;
  std::vector<std::string> headers;   // per size: the header with this thread's number
  std::unique_ptr<tls::context> tls;  // --starttls, --tls: this thread's client context
  live_counters live;
  thread_totals totals;

 private:
  void tick(std::int64_t now_ms);
  // Whether connections that end should be replaced.
  bool wants_more() const {
    return !_stopping && !shared.stop.load(std::memory_order_relaxed) &&
           !shared.abort.load(std::memory_order_relaxed) && !shared.budget_spent();
  }
  void open_client();
  void begin_stop(std::int64_t now_ms);

  reactor::loop* _loop = nullptr;
  std::vector<std::unique_ptr<client>> _clients;
  std::unique_ptr<pacer> _pacer;
  unsigned _target;
  unsigned _ready_count = 0;
  weighted_picker _picker;
  std::uint64_t _seq = 0;
  bool _stopping = false;
  bool _aborting = false;
  std::int64_t _drain_deadline_ms = 0;
  std::int64_t _last_progress_ms = 0;
  std::uint64_t _failures_since_progress = 0;
  std::int64_t _last_reopen_ms = 0;
};

// One SMTP connection and its messages, one at a time.
class client final : public reactor::owner {
 public:
  explicit client(worker& w) : _w(w), _opt(w.shared.opt), _slot(w.loop().add_owner(this)) {
    _expect.reserve(_opt.rcpts + 4);
  }
  ~client() { _w.loop().remove_owner(_slot); }

  void connect();
  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;
  void tick(std::int64_t now_ms);
  // Finishes the message in flight, then QUIT.
  void stop_gracefully();
  // Drops the connection now (a message in flight counts as lost).
  void abort() { fail("run aborted", false); }
  // --rate: the slot due at `scheduled_ns` is this connection's. False when
  // it quits instead (the budget is spent or the run stops).
  bool start_paced(std::uint64_t scheduled_ns);

 private:
  enum class expect : std::uint8_t {
    greeting,
    ehlo,
    starttls,
    auth,
    rset,
    mail,
    rcpt,
    data,
    final,
    quit
  };

  struct transaction {
    bool active = false;
    std::size_t size_index = 0;
    std::uint64_t started_ns = 0;
    std::uint64_t mail_ns = 0;
    bool mail_ok = false;
    std::uint32_t rcpt_ok = 0;
    std::uint16_t mail_code = 0;
    std::uint16_t first_rcpt_code = 0;  // first refused RCPT
    std::uint32_t next_command = 0;     // without pipelining: the next RCPT/DATA to send
  };

  void on_connect(int res);
  void arm_recv();
  void on_recv(int res);
  void feed_replies(std::string_view in);
  void start_tls();
  void on_ciphertext(std::size_t n);
  void tls_established();
  void on_reply(const delivery::reply& r);
  void on_ehlo(const delivery::reply& r);
  void on_auth(const delivery::reply& r);
  void ready();
  void next_message();
  void start_message(std::uint64_t started_ns, std::uint64_t mail_ns);
  void send_next_command();
  void on_data_reply(const delivery::reply& r);
  void finish_message(bool ok, std::uint16_t code);
  void quit();

  void send(std::initializer_list<std::string_view> parts);
  void send_encrypted(std::initializer_list<std::string_view> parts);
  bool encrypt(std::string_view plain);
  void flush_ciphertext();
  void submit_send();
  void on_send(int res);
  void wait_for(expect e);

  void setup_failed(const std::string& why);
  void fail(const std::string& why, bool count);
  void cancel_all();
  void maybe_done();

  worker& _w;
  const send_options& _opt;
  std::uint32_t _slot;
  int _fd = -1;
  int _inflight = 0;  // submitted operations not completed yet
  __kernel_timespec _connect_ts{};

  delivery::reply_parser _parser;
  char _rbuf[4096];
  std::vector<expect> _expect;  // replies still to come, in order
  std::size_t _expect_head = 0;
  std::int64_t _waiting_since_ms = 0;

  // Sends: one sendmsg in flight; parts queued behind it go out next.
  std::array<iovec, 8> _iov{};
  std::size_t _iov_first = 0;
  std::size_t _iov_count = 0;
  msghdr _msg{};
  std::vector<std::string_view> _queued;
  bool _send_inflight = false;

  // TLS: the session, the plaintext gathered into one record, and the
  // ciphertext being sent (new ciphertext collects in the session).
  std::unique_ptr<tls::session> _tls;
  std::string _plain_out;
  std::string _tls_sending;

  bool _pipelining = false;
  bool _size_ext = false;
  bool _auth_offered = false;
  bool _ready = false;
  bool _need_rset = false;
  bool _stop_after_message = false;
  bool _quitting = false;
  bool _closing = false;
  bool _gone = false;
  bool _cancel_sent = false;
  bool _clean_end = false;
  bool _server_closing = false;  // a 421 came
  bool _paced_wait = false;      // waiting in the pacer for a slot
  int _auth_step = 0;
  std::uint32_t _messages = 0;
  transaction _txn;
  std::string _header;  // this message's header block, ID patched in
};

void client::connect() {
  _w.totals.connections++;
  const auto& addr = _opt.server_addr;
  _fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (_fd < 0) {
    setup_failed(std::string("socket: ") + strerror(errno));
    return;
  }
  int one = 1;
  // Commands and the end of data are small writes the server waits for.
  setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  _w.loop().reserve(2);
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_connect(s, _fd, reinterpret_cast<const sockaddr*>(&addr), _opt.server_addr_len);
  s->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_connect));
  auto ms = static_cast<std::int64_t>(_opt.timeout_s * 1000);
  _connect_ts.tv_sec = ms / 1000;
  _connect_ts.tv_nsec = (ms % 1000) * 1000000;
  s = _w.loop().sqe();
  io_uring_prep_link_timeout(s, &_connect_ts, 0);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_connect_timeout));
  _inflight += 2;
}

void client::on_completion(std::uint8_t op, const io_uring_cqe& cqe) {
  --_inflight;
  switch (op) {
    case op_connect:
      on_connect(cqe.res);
      break;
    case op_recv:
      on_recv(cqe.res);
      break;
    case op_send:
      on_send(cqe.res);
      break;
    default:
      break;
  }
  maybe_done();
}

void client::on_connect(int res) {
  if (_closing) return;
  if (res < 0) {
    setup_failed(std::string("cannot connect to ") + _opt.server + ": " +
                 (res == -ECANCELED ? "timed out" : strerror(-res)));
    return;
  }
  // Implicit TLS (RFC 8314 3.3): the greeting comes inside TLS.
  if (_opt.tls == tls_mode::implicit) start_tls();
  if (_closing) return;
  wait_for(expect::greeting);
  arm_recv();
}

void client::arm_recv() {
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_recv(s, _fd, _rbuf, sizeof _rbuf, 0);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_recv));
  ++_inflight;
}

void client::on_recv(int res) {
  if (_closing) return;
  if (res <= 0) {
    if (res == 0 && _quitting && _expect_head == _expect.size()) {
      _clean_end = true;
      fail("closed after QUIT", false);
    } else {
      fail(res == 0 ? "the server closed the connection" : std::string("recv: ") + strerror(-res),
           true);
    }
    return;
  }
  _waiting_since_ms = _w.loop().now_ms();
  if (_tls)
    on_ciphertext(static_cast<std::size_t>(res));
  else
    feed_replies({_rbuf, static_cast<std::size_t>(res)});
  if (!_closing) arm_recv();
}

void client::feed_replies(std::string_view in) {
  while (!in.empty() && !_closing) {
    auto r = _parser.feed(in);
    in.remove_prefix(r.consumed);
    if (r.st == delivery::reply_parser::status::error) {
      fail("bad reply from the server: " + std::string(_parser.error()), true);
      return;
    }
    if (r.st == delivery::reply_parser::status::need_more) break;
    on_reply(_parser.current());
    // RFC 3207 5: nothing may follow the 220 to STARTTLS in the clear.
    if (_tls && !_tls->established() && !in.empty() && !_closing)
      return fail("the server sent more after its 220 to STARTTLS, in the clear", true);
  }
}

// Creates the session and sends the ClientHello.
void client::start_tls() {
  _tls = std::make_unique<tls::session>(*_w.tls);
  if (_tls->handshake() == tls::status::error)
    return setup_failed("cannot start TLS: " + _tls->error_text());
  flush_ciphertext();
}

void client::on_ciphertext(std::size_t n) {
  _tls->push_ciphertext({_rbuf, n});
  if (!_tls->established()) {
    tls::status st = _tls->handshake();
    if (st == tls::status::error || st == tls::status::closed) {
      std::string hint;
      if (_opt.tls == tls_mode::implicit)
        hint = "; does this port speak TLS from the start? (--starttls upgrades a plain port)";
      if (!_opt.tls_ca.empty()) hint += "; --tls-verify: the chain must lead to a CA in its file";
      return setup_failed("cannot start TLS with " + _opt.server + ": " + _tls->error_text() +
                          hint);
    }
    flush_ciphertext();
    if (st != tls::status::ok) return;
    tls_established();
  }
  char plain[4096];
  for (;;) {
    std::size_t got = 0;
    tls::status st = _tls->read(plain, sizeof plain, got);
    if (st == tls::status::ok && got > 0) {
      feed_replies({plain, got});
      if (_closing) return;
      continue;
    }
    if (st == tls::status::closed) fail("the server ended TLS (close_notify)", true);
    if (st == tls::status::error) fail("TLS: " + _tls->error_text(), true);
    return;
  }
}

void client::tls_established() {
  ++_w.totals.tls_handshakes;
  if (_w.totals.tls_info.empty()) _w.totals.tls_info = _tls->version() + " " + _tls->cipher();
  // RFC 3207 4.2: the session starts over, with a fresh EHLO. (Implicit
  // TLS: the greeting, still expected, comes first.)
  if (_opt.tls == tls_mode::starttls) {
    send({_w.shared.ehlo_line});
    wait_for(expect::ehlo);
  }
}

void client::wait_for(expect e) {
  if (_expect_head == _expect.size()) {
    _expect.clear();
    _expect_head = 0;
    _waiting_since_ms = _w.loop().now_ms();
  }
  _expect.push_back(e);
}

void client::on_reply(const delivery::reply& r) {
  if (_expect_head == _expect.size()) {
    // A reply nobody asked for: typically a 421 from a server that shuts
    // down (RFC 5321 3.8).
    fail("unexpected reply: " + r.one_line(), true);
    return;
  }
  expect e = _expect[_expect_head++];
  switch (e) {
    case expect::greeting:
      if (r.code != 220) return setup_failed("the server's greeting was " + r.one_line());
      send({_w.shared.ehlo_line});
      wait_for(expect::ehlo);
      break;
    case expect::ehlo:
      on_ehlo(r);
      break;
    case expect::starttls:
      if (r.code != 220) return setup_failed("STARTTLS was refused: " + r.one_line());
      start_tls();
      break;
    case expect::auth:
      on_auth(r);
      break;
    case expect::rset:
      // Without pipelining, a message that waited for this RSET starts now.
      if (_txn.active && !_pipelining && _txn.next_command == 0) send_next_command();
      break;
    case expect::mail:
      _txn.mail_ok = is_2xx(r.code);
      if (!_txn.mail_ok) {
        _txn.mail_code = r.code;
        // Pipelined: the RCPT and DATA replies (refusals) are still to come.
        if (!_pipelining) finish_message(false, r.code);
      } else if (!_pipelining) {
        send_next_command();
      }
      break;
    case expect::rcpt:
      if (is_2xx(r.code)) {
        ++_txn.rcpt_ok;
      } else {
        ++_w.totals.rcpt_refused;
        if (_txn.first_rcpt_code == 0) _txn.first_rcpt_code = r.code;
      }
      if (!_pipelining) send_next_command();
      break;
    case expect::data:
      on_data_reply(r);
      break;
    case expect::final:
      if (!_txn.mail_ok || _txn.rcpt_ok == 0)
        finish_message(false, _txn.mail_code ? _txn.mail_code : _txn.first_rcpt_code);
      else
        finish_message(is_2xx(r.code), r.code);
      break;
    case expect::quit:
      _clean_end = true;
      fail("QUIT answered", false);
      break;
  }
  // RFC 5321 3.8: 421 announces that the server closes the connection.
  if (r.code == 421) _server_closing = true;
  // Between messages, with every reply in: the next message (or QUIT).
  if (!_closing && _ready && !_txn.active && !_quitting && _expect_head == _expect.size())
    next_message();
}

void client::on_ehlo(const delivery::reply& r) {
  if (r.code != 250) return setup_failed("EHLO was refused: " + r.one_line());
  // Inside TLS the server's second EHLO reply is the one that counts.
  bool pipelining = false, starttls = false;
  _size_ext = false;
  _auth_offered = false;
  for (std::size_t i = 1; i < r.line_count(); ++i) {
    std::string_view t = r.line_text(i);
    auto word = t.substr(0, t.find(' '));
    auto is = [&](std::string_view kw) {
      return word.size() == kw.size() &&
             std::equal(word.begin(), word.end(), kw.begin(), [](char a, char b) {
               return std::toupper(static_cast<unsigned char>(a)) == b;
             });
    };
    if (is("PIPELINING")) pipelining = true;
    if (is("SIZE")) _size_ext = true;
    if (is("AUTH")) _auth_offered = true;
    if (is("STARTTLS")) starttls = true;
  }
  _pipelining = _opt.pipelining && pipelining;
  if (_opt.tls == tls_mode::starttls && !_tls) {
    if (!starttls)
      return setup_failed(
          "--starttls was given but the server does not offer STARTTLS after EHLO (is TLS "
          "configured on this port? for a port that speaks TLS at once use --tls)");
    send({starttls_line});
    wait_for(expect::starttls);
    return;
  }
  if (_opt.auth == auth_mechanism::none) return ready();
  if (!_auth_offered)
    return setup_failed("--auth was given but the server does not offer AUTH after EHLO");
  _auth_step = 0;
  send({_w.shared.auth_first});
  wait_for(expect::auth);
}

void client::on_auth(const delivery::reply& r) {
  if (r.code == 235) return ready();
  if (r.code == 334 && _opt.auth == auth_mechanism::login && _auth_step < 2) {
    send({_auth_step++ == 0 ? _w.shared.auth_user : _w.shared.auth_pass});
    wait_for(expect::auth);
    return;
  }
  setup_failed("AUTH was refused: " + r.one_line() + " (check --user and --password)");
}

void client::ready() {
  _ready = true;
  _w.shared.any_ready.store(true, std::memory_order_relaxed);
  _w.client_ready();
}

void client::next_message() {
  if (_server_closing) {
    fail("the server closes the connection (421)", false);
    return;
  }
  if (_stop_after_message || (_opt.reuse != 0 && _messages >= _opt.reuse)) {
    quit();
    return;
  }
  if (pacer* p = _w.pacing()) {
    if (_w.shared.budget_spent() || _w.shared.stop.load(std::memory_order_relaxed)) return quit();
    _paced_wait = true;
    p->wait(this);
    return;
  }
  if (!_w.shared.claim()) {
    quit();
    return;
  }
  std::uint64_t now = now_ns();
  start_message(now, now);
}

bool client::start_paced(std::uint64_t scheduled_ns) {
  _paced_wait = false;
  if (_stop_after_message || !_w.shared.claim()) {
    quit();
    return false;
  }
  start_message(scheduled_ns, std::max(scheduled_ns, now_ns()));
  _w.totals.start_lag.record(_txn.mail_ns - scheduled_ns);
  return true;
}

// `started_ns`: when MAIL leaves (`mail_ns`), or with --rate the message's
// scheduled start (never later than MAIL), so time spent waiting for a free
// connection counts in the latency.
void client::start_message(std::uint64_t started_ns, std::uint64_t mail_ns) {
  _txn = transaction{};
  _txn.active = true;
  _txn.size_index = _w.pick_size();
  _txn.started_ns = started_ns;
  _txn.mail_ns = mail_ns;
  bump(_w.live.in_flight);
  const auto& m = _w.shared.messages[_txn.size_index];
  std::string_view mail = _size_ext ? m.mail_with_size : m.mail_plain;
  std::string_view rset = _need_rset ? rset_line : std::string_view{};
  if (_need_rset) wait_for(expect::rset);
  _need_rset = false;
  if (_pipelining) {
    // RFC 2920 3.1: MAIL, RCPT... and DATA in one group, DATA last.
    send({rset, mail, m.rcpts_and_data});
    wait_for(expect::mail);
    for (std::uint32_t i = 0; i < _opt.rcpts; ++i) wait_for(expect::rcpt);
    wait_for(expect::data);
    return;
  }
  if (!rset.empty()) {
    // The MAIL goes out once the RSET is answered (expect::rset).
    send({rset});
    return;
  }
  send_next_command();
}

// Without pipelining: MAIL, each RCPT, then DATA (or RSET when every
// recipient was refused), one per reply.
void client::send_next_command() {
  const auto& m = _w.shared.messages[_txn.size_index];
  std::uint32_t i = _txn.next_command++;
  if (i == 0) {
    send({_size_ext ? m.mail_with_size : m.mail_plain});
    wait_for(expect::mail);
    return;
  }
  std::size_t from = i == 1 ? 0 : m.command_ends[i - 2];
  std::string_view cmd(m.rcpts_and_data.data() + from, m.command_ends[i - 1] - from);
  if (i == _opt.rcpts + 1) {
    if (_txn.rcpt_ok == 0) {
      send({rset_line});
      wait_for(expect::rset);
      finish_message(false, _txn.first_rcpt_code);
      return;
    }
    wait_for(expect::data);
  } else {
    wait_for(expect::rcpt);
  }
  send({cmd});
}

void client::on_data_reply(const delivery::reply& r) {
  if (r.code != 354) {
    // The transaction stays open on the server when MAIL was accepted.
    _need_rset = _txn.mail_ok;
    std::uint16_t code = _txn.mail_code                              ? _txn.mail_code
                         : _txn.rcpt_ok == 0 && _txn.first_rcpt_code ? _txn.first_rcpt_code
                                                                     : r.code;
    finish_message(false, code);
    return;
  }
  if (!_txn.mail_ok || _txn.rcpt_ok == 0) {
    // A server that says 354 with no recipient: end the empty message.
    send({end_of_data});
    wait_for(expect::final);
    return;
  }
  const auto& m = _w.shared.messages[_txn.size_index];
  const std::string& header = _w.headers[_txn.size_index];
  _header.assign(header);
  char id[id_width];
  format_id(_w.index, _w.next_seq(), id);
  for (auto off : m.id_offsets) std::memcpy(_header.data() + off, id, id_width);
  send({_header, m.wire_body});
  wait_for(expect::final);
}

void client::finish_message(bool ok, std::uint16_t code) {
  if (!_txn.active) return;
  _txn.active = false;
  ++_messages;
  auto& t = _w.totals;
  bump(_w.live.in_flight, ~std::uint64_t{0});
  if (ok) {
    std::uint64_t now = now_ns();
    t.latency.record(now - _txn.started_ns);
    if (_opt.rate > 0) t.mail_latency.record(now - _txn.mail_ns);
    ++t.ok;
    t.bytes += _w.shared.messages[_txn.size_index].size;
    bump(_w.live.ok);
    bump(_w.live.bytes, _w.shared.messages[_txn.size_index].size);
  } else {
    ++t.errors;
    bump(_w.live.errors);
  }
  ++t.outcomes[code < t.outcomes.size() ? code : lost];
  if (ok) _w.progress();
}

void client::quit() {
  if (_quitting) return;
  _quitting = true;
  if (_paced_wait) _w.pacing()->forget(this);
  _paced_wait = false;
  send({quit_line});
  wait_for(expect::quit);
}

void client::stop_gracefully() {
  _stop_after_message = true;
  // Idle between messages only while waiting for nothing (a fresh
  // connection still in its greeting or EHLO will QUIT once ready).
  if (_ready && !_txn.active && !_quitting && _expect_head == _expect.size()) quit();
}

void client::send(std::initializer_list<std::string_view> parts) {
  if (_tls) return send_encrypted(parts);
  for (auto p : parts)
    if (!p.empty()) _queued.push_back(p);
  if (!_send_inflight && !_closing) submit_send();
}

void client::send_encrypted(std::initializer_list<std::string_view> parts) {
  if (_closing) return;
  _plain_out.clear();
  for (auto p : parts) {
    if (p.size() < tls_record_max) {
      _plain_out.append(p);
      continue;
    }
    if (!encrypt(_plain_out) || !encrypt(p)) return;
    _plain_out.clear();
  }
  if (encrypt(_plain_out)) flush_ciphertext();
}

bool client::encrypt(std::string_view plain) {
  if (plain.empty() || _tls->write({plain.data(), plain.size()}) == tls::status::ok) return true;
  fail("TLS: " + _tls->error_text(), true);
  return false;
}

// Sends the ciphertext the session produced, unless a send is in flight
// (on_send comes back here).
void client::flush_ciphertext() {
  if (_send_inflight || _closing || _tls->ciphertext().empty()) return;
  _tls_sending.swap(_tls->ciphertext());
  _tls->ciphertext().clear();
  _queued.push_back(_tls_sending);
  submit_send();
}

// Moves queued parts into the iovec array and sends them in one sendmsg.
void client::submit_send() {
  if (_iov_count == 0) {
    _iov_first = 0;
    std::size_t n = std::min(_queued.size(), _iov.size());
    for (std::size_t i = 0; i < n; ++i)
      _iov[i] = {const_cast<char*>(_queued[i].data()), _queued[i].size()};
    _queued.erase(_queued.begin(), _queued.begin() + static_cast<std::ptrdiff_t>(n));
    _iov_count = n;
  }
  if (_iov_count == 0) return;
  _msg = {};
  _msg.msg_iov = _iov.data() + _iov_first;
  _msg.msg_iovlen = _iov_count;
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_sendmsg(s, _fd, &_msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_send));
  ++_inflight;
  _send_inflight = true;
}

void client::on_send(int res) {
  _send_inflight = false;
  if (_closing) return;
  if (res < 0) {
    fail(std::string("send: ") + strerror(-res), true);
    return;
  }
  _waiting_since_ms = _w.loop().now_ms();
  auto left = static_cast<std::size_t>(res);
  while (_iov_count > 0 && left >= _iov[_iov_first].iov_len) {
    left -= _iov[_iov_first].iov_len;
    ++_iov_first;
    --_iov_count;
  }
  if (_iov_count > 0) {
    auto& v = _iov[_iov_first];
    v.iov_base = static_cast<char*>(v.iov_base) + left;
    v.iov_len -= left;
  }
  if (_iov_count > 0 || !_queued.empty())
    submit_send();
  else if (_tls)
    flush_ciphertext();
}

void client::tick(std::int64_t now_ms) {
  bool handshaking = _tls && !_tls->established();
  if (_closing || (_expect_head == _expect.size() && !handshaking)) return;
  if (now_ms - _waiting_since_ms > static_cast<std::int64_t>(_opt.timeout_s * 1000))
    fail(std::string(handshaking ? "TLS handshake not finished" : "no reply") + " within " +
             std::to_string(static_cast<long>(_opt.timeout_s)) + " s (--timeout)",
         true);
}

void client::setup_failed(const std::string& why) {
  if (!_w.shared.any_ready.load(std::memory_order_relaxed)) {
    _w.shared.set_fatal(why);
  } else if (!_closing) {
    _w.connection_failed();
    if (_w.totals.connection_failures <= 3)
      std::fprintf(stderr, "ringbench send: %s\n", why.c_str());
  }
  fail(why, false);
}

// Ends the connection; `count` says whether losing it is an error worth
// reporting (a message in flight is always counted as lost).
void client::fail(const std::string& why, bool count) {
  if (_closing) return;
  if (count && !_txn.active && !_clean_end && !_quitting) {
    _w.connection_failed();
    if (_w.totals.connection_failures <= 3)
      std::fprintf(stderr, "ringbench send: connection lost: %s\n", why.c_str());
  }
  if (_txn.active) finish_message(false, _server_closing ? 421 : lost);
  if (_paced_wait) _w.pacing()->forget(this);
  _paced_wait = false;
  _closing = true;
  cancel_all();
  maybe_done();
}

void client::cancel_all() {
  if (_fd < 0 || _cancel_sent || _inflight == 0) return;
  _cancel_sent = true;
  io_uring_sqe* s = _w.loop().sqe();
  io_uring_prep_cancel_fd(s, _fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_cancel));
  ++_inflight;
}

void client::maybe_done() {
  if (!_closing || _inflight > 0 || _gone) return;
  _gone = true;
  if (_fd >= 0) ::close(_fd);
  _fd = -1;
  _w.client_gone(this, _clean_end);
}

pacer::pacer(worker& w, double offset_ns, double interval_ns)
    : _w(w), _slot(w.loop().add_owner(this)), _first_ns(offset_ns), _interval_ns(interval_ns) {}

pacer::~pacer() {
  _w.loop().remove_owner(_slot);
}

void pacer::on_completion(std::uint8_t, const io_uring_cqe&) {
  _armed = false;
  release();
}

void pacer::connection_ready(bool all) {
  if (_started) return;
  if (_first_ready_ns == 0) _first_ready_ns = now_ns();
  if (all) start();
}

void pacer::tick() {
  if (!_started && _first_ready_ns != 0 && now_ns() - _first_ready_ns > 1000000000u) start();
}

void pacer::start() {
  _started = true;
  _first_ns += static_cast<double>(now_ns());
  release();
}

// Every slot that is due goes to the connection that waited longest.
void pacer::release() {
  if (!_started) return;
  std::uint64_t now = now_ns();
  while (!_idle.empty() && due_ns() <= now) {
    client* c = _idle.front();
    _idle.pop_front();
    if (c->start_paced(due_ns())) ++_k;
  }
  if (!_idle.empty() && !_armed) arm();
}

void pacer::arm() {
  std::uint64_t at = due_ns();
  _ts.tv_sec = static_cast<long long>(at / 1000000000u);
  _ts.tv_nsec = static_cast<long long>(at % 1000000000u);
  io_uring_sqe* s = _w.loop().sqe();
  // An absolute CLOCK_MONOTONIC deadline: the schedule does not drift with
  // the time the loop takes to come back.
  io_uring_prep_timeout(s, &_ts, 0, IORING_TIMEOUT_ABS);
  io_uring_sqe_set_data64(s, _w.loop().token(_slot, op_pace));
  _armed = true;
}

void worker::run() {
  try {
    reactor::loop loop(reactor::loop_options{4096, 100});
    _loop = &loop;
    _last_progress_ms = util::monotonic_ms();
    if (double rate = shared.opt.rate; rate > 0) {
      // This thread's share of the rate, its slots offset from the other
      // threads' so that the starts interleave evenly.
      double interval = 1e9 * shared.opt.connections / (rate * _target);
      _pacer = std::make_unique<pacer>(*this, interval * index / shared.threads, interval);
    }
    loop.on_tick([this](std::int64_t now) { tick(now); });
    for (unsigned i = 0; i < _target; ++i) open_client();
    loop.run();
    _clients.clear();
    _pacer.reset();
    _loop = nullptr;
  } catch (const std::exception& e) {
    shared.set_fatal(std::string("thread ") + std::to_string(index) + ": " + e.what());
  }
  if (tls) tls::thread_cleanup();
  live.finished.store(true);
}

void worker::open_client() {
  _clients.push_back(std::make_unique<client>(*this));
  _clients.back()->connect();
}

// A client is never destroyed inside its own completion handler (the loop
// may still touch it): erase it after this batch of completions.
void worker::client_gone(client* c, bool replace_now) {
  _loop->defer([this, c, replace_now] {
    std::erase_if(_clients, [c](const auto& p) { return p.get() == c; });
    bool more = wants_more();
    if (more && replace_now && _clients.size() < _target) open_client();
    if (_clients.empty() && !more) _loop->stop();
  });
}

void worker::begin_stop(std::int64_t now_ms) {
  _stopping = true;
  _drain_deadline_ms = now_ms + static_cast<std::int64_t>(shared.opt.timeout_s * 1000);
  for (auto& c : _clients) c->stop_gracefully();
}

void worker::tick(std::int64_t now_ms) {
  if (_pacer) _pacer->tick();
  if (shared.abort.load(std::memory_order_relaxed) && !_aborting) {
    _aborting = true;
    _stopping = true;
    for (auto& c : _clients) c->abort();
  }
  if (!_stopping && shared.stop.load(std::memory_order_relaxed)) begin_stop(now_ms);
  if (_stopping && !_aborting && now_ms > _drain_deadline_ms) {
    _aborting = true;
    for (auto& c : _clients) c->abort();
  }
  for (auto& c : _clients) c->tick(now_ms);
  auto timeout_ms = static_cast<std::int64_t>(shared.opt.timeout_s * 1000);
  if (_failures_since_progress > 0 && now_ms - _last_progress_ms > timeout_ms)
    shared.set_fatal("no connection to " + shared.opt.server + " worked for " +
                     std::to_string(timeout_ms / 1000) + " s (" +
                     std::to_string(_failures_since_progress) + " failed); giving up");
  bool more = wants_more();
  // Connections that failed are replaced here: every tick while messages
  // still succeed, once a second while nothing does (a server that is down
  // is not hammered).
  bool failing = _failures_since_progress > 0;
  if (more && (!failing || now_ms - _last_reopen_ms >= 1000)) {
    _last_reopen_ms = now_ms;
    while (_clients.size() < _target) open_client();
  }
  if (_clients.empty() && !more) _loop->stop();
}

// The summary, merged over the threads.
struct summary {
  histogram latency, mail_latency, start_lag;
  std::array<std::uint64_t, 600> outcomes{};
  std::uint64_t ok = 0, errors = 0, bytes = 0, rcpt_refused = 0, connections = 0,
                connection_failures = 0, tls_handshakes = 0;
  std::string tls_info;
};

const char* tls_name(tls_mode m) {
  switch (m) {
    case tls_mode::starttls:
      return "starttls";
    case tls_mode::implicit:
      return "implicit";
    case tls_mode::none:
      break;
  }
  return "none";
}

std::string code_name(std::size_t code) {
  return code == lost ? "conn" : std::to_string(code);
}

void print_percentiles(const char* label, const histogram& h) {
  std::printf("  %s p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n", label,
              duration_text(h.percentile(0.5)).c_str(), duration_text(h.percentile(0.9)).c_str(),
              duration_text(h.percentile(0.99)).c_str(), duration_text(h.percentile(0.999)).c_str(),
              duration_text(h.max()).c_str());
}

std::string percentiles_json(const histogram& h) {
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  return json_object()
      .add("count", h.count())
      .add("p50", us(h.percentile(0.5)))
      .add("p90", us(h.percentile(0.9)))
      .add("p99", us(h.percentile(0.99)))
      .add("p99_9", us(h.percentile(0.999)))
      .add("min", us(h.min()))
      .add("max", us(h.max()))
      .add("mean", h.mean() / 1e3)
      .str();
}

void print_text(const send_options& o, const summary& s, double elapsed, unsigned threads) {
  double rate = elapsed > 0 ? static_cast<double>(s.ok) / elapsed : 0;
  double mb = elapsed > 0 ? static_cast<double>(s.bytes) / 1e6 / elapsed : 0;
  std::printf("ringbench send: %s, %u connection(s) on %u thread(s), pipelining %s",
              o.server.c_str(), o.connections, threads, o.pipelining ? "on" : "off");
  if (o.tls != tls_mode::none)
    std::printf(", %s%s", o.tls == tls_mode::starttls ? "STARTTLS" : "implicit TLS",
                o.tls_ca.empty() ? " (certificate not verified)" : " (certificate verified)");
  if (o.rate > 0) std::printf(", rate %s msg/s", grouped(o.rate, 1).c_str());
  std::printf("\n");
  std::printf("  elapsed            %.2f s\n", elapsed);
  std::printf("  messages ok        %s\n", grouped(s.ok).c_str());
  std::printf("  errors             %s", grouped(s.errors).c_str());
  bool first = true;
  for (std::size_t c = 0; c < s.outcomes.size(); ++c) {
    if (s.outcomes[c] == 0 || (c >= 200 && c < 300)) continue;
    std::printf("%s%s: %s", first ? "  (" : ", ", code_name(c).c_str(),
                grouped(s.outcomes[c]).c_str());
    first = false;
  }
  std::printf("%s\n", first ? "" : ")");
  std::printf("  replies            ");
  first = true;
  for (std::size_t c = 1; c < s.outcomes.size(); ++c) {
    if (s.outcomes[c] == 0) continue;
    std::printf("%s%s: %s", first ? "" : ", ", code_name(c).c_str(),
                grouped(s.outcomes[c]).c_str());
    first = false;
  }
  std::printf("%s\n", first ? "none" : "");
  std::printf("  refused recipients %s\n", grouped(s.rcpt_refused).c_str());
  std::printf("  connections        %s opened, %s failed\n", grouped(s.connections).c_str(),
              grouped(s.connection_failures).c_str());
  if (o.tls != tls_mode::none)
    std::printf("  tls                %s handshakes%s%s\n", grouped(s.tls_handshakes).c_str(),
                s.tls_info.empty() ? "" : ", ", s.tls_info.c_str());
  std::printf("  throughput         %s msg/s, %s MB/s\n", grouped(rate, 1).c_str(),
              grouped(mb, 1).c_str());
  if (o.rate == 0) return print_percentiles("latency MAIL->250 ", s.latency);
  print_percentiles("latency sched->250", s.latency);
  print_percentiles("latency MAIL->250 ", s.mail_latency);
  print_percentiles("start lag         ", s.start_lag);
}

void print_json(const send_options& o, const summary& s, double elapsed, unsigned threads) {
  json_object replies, errors;
  for (std::size_t c = 0; c < s.outcomes.size(); ++c) {
    if (s.outcomes[c] == 0) continue;
    if (c != lost) replies.add(code_name(c), s.outcomes[c]);
    if (c < 200 || c >= 300) errors.add(code_name(c), s.outcomes[c]);
  }
  std::string size_list = "[";
  for (std::size_t i = 0; i < o.sizes.size(); ++i) {
    if (i) size_list += ",";
    size_list += json_object()
                     .add("size", o.sizes[i].value)
                     .add("weight", std::uint64_t{o.sizes[i].weight})
                     .str();
  }
  size_list += "]";
  json_object j;
  j.add("mode", "send")
      .add("server", o.server)
      .add("threads", std::uint64_t{threads})
      .add("connections", std::uint64_t{o.connections})
      .add("pipelining", o.pipelining)
      .add("rcpts", std::uint64_t{o.rcpts})
      .add("auth", o.auth == auth_mechanism::plain   ? "plain"
                   : o.auth == auth_mechanism::login ? "login"
                                                     : "none")
      .add_raw("sizes", size_list)
      .add("elapsed_s", elapsed)
      .add("messages_ok", s.ok)
      .add("errors", s.errors)
      .add_raw("errors_by_code", errors.str())
      .add_raw("replies", replies.str())
      .add("rcpt_refused", s.rcpt_refused)
      .add("connections_opened", s.connections)
      .add("connection_failures", s.connection_failures)
      .add("tls", tls_name(o.tls))
      .add("tls_verified", !o.tls_ca.empty())
      .add("tls_handshakes", s.tls_handshakes)
      .add("tls_version", s.tls_info)
      .add("rate", o.rate)
      .add("bytes", s.bytes)
      .add("msgs_per_s", elapsed > 0 ? static_cast<double>(s.ok) / elapsed : 0.0)
      .add("mb_per_s", elapsed > 0 ? static_cast<double>(s.bytes) / 1e6 / elapsed : 0.0)
      .add_raw("latency_us", percentiles_json(s.latency))
      .add("latency_from", o.rate > 0 ? "schedule" : "mail");
  if (o.rate > 0)
    j.add_raw("mail_latency_us", percentiles_json(s.mail_latency))
        .add_raw("start_lag_us", percentiles_json(s.start_lag));
  std::printf("%s\n", j.str().c_str());
}

// One per thread (tls.hh: contexts are per thread and role). Certificates
// are not verified unless --tls-verify names the CA file: a benchmark
// usually runs against a self-signed test certificate.
std::unique_ptr<tls::context> client_context(const send_options& o) {
  auto ctx = tls::context::client();
  if (o.tls_ca.empty()) return ctx;
  if (wolfSSL_CTX_load_verify_locations(ctx->native(), o.tls_ca.c_str(), nullptr) !=
      WOLFSSL_SUCCESS)
    throw std::runtime_error("--tls-verify " + o.tls_ca +
                             ": cannot load CA certificates from it (PEM expected)");
  wolfSSL_CTX_set_verify(ctx->native(), WOLFSSL_VERIFY_PEER, nullptr);
  return ctx;
}

}  // namespace

int run_send(const send_options& opt) {
  shared_state shared(opt);
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = std::min<unsigned>(opt.threads ? opt.threads : cpus, opt.connections);

  char date[40];
  util::format_rfc5322_date(util::wall_seconds(), date);
  message_params p;
  p.from = opt.from;
  p.to_domain = opt.to_domain;
  p.rcpts = opt.rcpts;
  p.date = date;
  p.run_id = std::to_string(util::wall_ms());
  try {
    for (const auto& s : opt.sizes) {
      p.size = s.value;
      shared.messages.push_back(make_message(p));
      shared.weights.push_back(s.weight);
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "ringbench send: --size: %s\n", e.what());
    return 2;
  }
  shared.ehlo_line = "EHLO " + opt.ehlo + "\r\n";
  if (opt.auth == auth_mechanism::plain) {
    std::string ir = std::string(1, '\0') + opt.user + std::string(1, '\0') + opt.password;
    shared.auth_first = "AUTH PLAIN " + base64(ir) + "\r\n";
  } else if (opt.auth == auth_mechanism::login) {
    shared.auth_first = "AUTH LOGIN\r\n";
    shared.auth_user = base64(opt.user) + "\r\n";
    shared.auth_pass = base64(opt.password) + "\r\n";
  }
  try {
    reactor::loop::probe_kernel();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringbench send: %s\n", e.what());
    return 1;
  }

  std::vector<std::unique_ptr<worker>> workers;
  for (unsigned i = 0; i < threads; ++i)
    workers.push_back(std::make_unique<worker>(
        shared, i, opt.connections / threads + (i < opt.connections % threads ? 1 : 0)));
  if (opt.tls != tls_mode::none) {
    try {
      for (auto& w : workers) w->tls = client_context(opt);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ringbench send: %s\n", e.what());
      return 2;
    }
  }
  block_stop_signals();
  shared.threads = threads;
  double start = now_s();
  std::vector<std::thread> running;
  for (auto& w : workers) running.emplace_back([&w] { w->run(); });

  double limit = opt.duration_s > 0 ? opt.duration_s : max_unbounded_s;
  double next_report = start + 1;
  std::uint64_t last_ok = 0, last_bytes = 0;
  int signals = 0;
  for (;;) {
    bool all_done = std::all_of(workers.begin(), workers.end(),
                                [](const auto& w) { return w->live.finished.load(); });
    if (all_done) break;
    double now = now_s();
    if (now >= next_report) {
      std::uint64_t ok = 0, errors = 0, bytes = 0, in_flight = 0;
      for (auto& w : workers) {
        ok += w->live.ok.load(std::memory_order_relaxed);
        errors += w->live.errors.load(std::memory_order_relaxed);
        bytes += w->live.bytes.load(std::memory_order_relaxed);
        in_flight += w->live.in_flight.load(std::memory_order_relaxed);
      }
      if (!opt.quiet)
        std::fprintf(stderr,
                     "ringbench send: %4.0fs  %s msg/s  %s MB/s  errors %s  in flight %s  ok %s\n",
                     now - start, grouped(ok - last_ok).c_str(),
                     grouped(static_cast<double>(bytes - last_bytes) / 1e6, 1).c_str(),
                     grouped(errors).c_str(), grouped(in_flight).c_str(), grouped(ok).c_str());
      last_ok = ok;
      last_bytes = bytes;
      next_report += 1;
    }
    if (now - start >= limit) shared.stop.store(true);
    int wait_ms =
        std::clamp(static_cast<int>((std::min(next_report, start + limit) - now) * 1000), 1, 100);
    if (int sig = wait_signal(wait_ms); sig != 0) {
      if (++signals == 1) {
        std::fprintf(stderr,
                     "ringbench send: %s: finishing the messages in flight (again to abort)\n",
                     strsignal(sig));
        shared.stop.store(true);
      } else {
        shared.abort.store(true);
      }
    }
  }
  for (auto& t : running) t.join();
  double elapsed = now_s() - start;

  summary s;
  for (auto& w : workers) {
    const auto& t = w->totals;
    s.latency.merge(t.latency);
    s.mail_latency.merge(t.mail_latency);
    s.start_lag.merge(t.start_lag);
    for (std::size_t c = 0; c < s.outcomes.size(); ++c) s.outcomes[c] += t.outcomes[c];
    s.ok += t.ok;
    s.errors += t.errors;
    s.bytes += t.bytes;
    s.rcpt_refused += t.rcpt_refused;
    s.connections += t.connections;
    s.connection_failures += t.connection_failures;
    s.tls_handshakes += t.tls_handshakes;
    if (s.tls_info.empty()) s.tls_info = t.tls_info;
  }
  if (!shared.fatal.empty()) {
    std::fprintf(stderr, "ringbench send: %s\n", shared.fatal.c_str());
    if (s.ok + s.errors == 0) return 1;
  }
  if (opt.json)
    print_json(opt, s, elapsed, threads);
  else
    print_text(opt, s, elapsed, threads);
  if (!shared.fatal.empty()) return 1;
  if (s.ok == 0) std::fprintf(stderr, "ringbench send: no message was sent successfully\n");
  return s.errors > 0 || s.connection_failures > 0 || s.ok == 0 ? 1 : 0;
}

}  // namespace ringrelay::ringbench
