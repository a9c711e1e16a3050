#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/net/listener.hh>
#include <ringrelay/smtp/server.hh>
#include <ringrelay/util/clock.hh>

namespace ringrelay::smtp {
namespace {

enum op : std::uint8_t { op_recv = 1, op_send = 2, op_cancel = 3, op_close = 4 };

}  // namespace

// Charges one session's messages to its account (SPEC.md §5) with the
// lock-free counters: a reservation grows with each RCPT, is settled to the
// exact charge at the end of data and released when no message is stored.
class session_charger final : public charger {
 public:
  session_charger(server& srv, const session& s) : _srv(srv), _session(s) {}
  ~session_charger() { release(); }

  std::string reserve(std::uint64_t relays) override { return take(relays, true); }
  std::string settle(std::uint64_t relays) override { return take(relays, false); }
  void committed() override { _held.reset(); }
  // What the transaction holds now: at the commit, the message's charge.
  const std::optional<accounts::reservation>& held() const { return _held; }
  void release() override {
    if (_held && _slot) accounts::release(*_slot, *_held);
    _held.reset();
  }

 private:
  // The account this session sends for: the authenticated one, or the
  // trusted networks' account; none means nothing is charged.
  bool resolve() {
    const std::string& name = _session.account().empty() && _session.peer().trusted
                                  ? _srv._opt.trusted_account
                                  : _session.account();
    if (name.empty() || !_srv._accounts || !_srv._opt.quota_clock) return false;
    const accounts::account* a = _srv._accounts->find(name);
    if (!a) return false;
    // The slot outlives any table (counter_store); the quota is read anew
    // for each message so a reload applies at once.
    _slot = a->counters;
    _quota = a->daily_quota;
    _name = a->username;
    return true;
  }

  std::string take(std::uint64_t relays, bool add) {
    if (!_held && !resolve()) return {};
    std::int64_t now = util::wall_seconds();
    std::uint32_t day = _srv._opt.quota_clock->day_number(now);
    if (!_held) {
      auto r = accounts::reserve(*_slot, day, relays, _quota);
      if (!r) return refusal(day, now);
      _held = *r;
      return {};
    }
    std::uint64_t target = add ? _held->relays() + relays : relays;
    if (!accounts::settle(*_slot, *_held, day, target, _quota)) return refusal(day, now);
    return {};
  }

  std::string refusal(std::uint32_t day, std::int64_t now) const {
    const auto* clock = _srv._opt.quota_clock;
    std::int64_t blocks = std::max<std::int64_t>(0, _slot->blocks.load(std::memory_order_relaxed));
    return "452 4.7.1 Error: daily relay quota reached for account " + _name + ": " +
           std::to_string(_slot->usage(day)) + " of " + std::to_string(_quota) +
           " relays used today, " + std::to_string(blocks) +
           " relay blocks left; the quota resets at " + clock->format(clock->next_reset(now)) +
           " (" + clock->zone() + "); send fewer recipients or buy relay blocks";
  }

  server& _srv;
  const session& _session;
  accounts::counter_slot* _slot = nullptr;
  std::uint64_t _quota = 0;
  std::string _name;
  std::optional<accounts::reservation> _held;
};

// One client connection: glue between the ring, the session and the spool.
class connection final : public reactor::owner {
 public:
  connection(server& srv, int fd, peer_info peer, listener_kind kind, std::size_t index)
      : index(index),
        _srv(srv),
        _fd(fd),
        _slot(srv._loop.add_owner(this)),
        _session(
            kind == listener_kind::starttls && srv._opt.tls ? srv._starttls_cfg : srv._opt.session,
            peer),
        _implicit(kind == listener_kind::implicit),
        _charger(srv, _session) {
    _session.set_charger(&_charger);
  }
  ~connection() { _srv._loop.remove_owner(_slot); }

  void start(bool refuse) {
    _last_activity = _srv._loop.now_ms();
    if (_implicit) {
      // RFC 8314: the handshake comes first; the greeting (or the refusal)
      // is the first thing sent inside TLS.
      start_tls(true);
      _refuse_after_handshake = refuse;
      arm_recv();
      return;
    }
    if (refuse) {
      _session.refuse_busy("Service temporarily unavailable: the mail queue cannot be written");
      _close_after_flush = true;
    } else {
      _session.greet();
      arm_recv();
    }
    _srv.schedule_flush(this);
  }

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override {
    switch (op) {
      case op_recv:
        on_recv(cqe);
        break;
      case op_send:
        on_send(cqe.res);
        break;
      default:
        break;
    }
    maybe_destroy();
  }

  void flush();
  void rearm_if_starved() {
    if (!_closing && !_recv_armed && !_paused) arm_recv();
  }
  void idle_check(std::int64_t now, std::int64_t limit_ms) {
    if (_auth_reply_at && now >= _auth_reply_at) {
      // A failed AUTH answered late (brute-force slowdown).
      _auth_reply_at = 0;
      _session.auth_failed(_auth_hint);
      _last_activity = now;
      process();
    }
    if (_closing || _close_after_flush || _commit_pending || _auth_pending || _auth_reply_at ||
        _verify_pending)
      return;
    if (_tls && !_tls->established() && now > _tls_deadline) {
      RR_INFO("TLS handshake timed out client=%s", _session.peer().address.c_str());
      begin_close();
      maybe_destroy();
      return;
    }
    if (now - _last_activity < limit_ms) return;
    RR_INFO("session timeout client=%s", _session.peer().address.c_str());
    _session.timeout();
    _close_after_flush = true;
    _srv.schedule_flush(this);
  }
  void begin_shutdown() { process(); }
  void resume_tls() {
    if (!_closing) process();
  }
  void force_close() {
    begin_close();
    maybe_destroy();
  }

  std::size_t index;
  bool listed_dirty = false;

 private:
  struct pending_buffer {
    reactor::buffer_source* src;  // the kernel's buffer ring, or TLS plaintext
    std::uint16_t id;
    std::uint32_t len;
    std::uint32_t off;
  };

  void start_tls(bool implicit) {
    _tls = std::make_unique<tls::session>(*_srv._opt.tls);
    _tls_deadline = _srv._loop.now_ms() + std::int64_t{_srv._opt.tls_handshake_timeout_ms};
    // Implicit TLS encrypts from the first octet; after STARTTLS the 220
    // already queued still goes out in plaintext, then encryption starts.
    if (implicit)
      _tls_encrypt = true;
    else
      _tls_switch = true;
  }

  // Ciphertext arrived: finish the handshake, then decrypt into plaintext
  // buffers that the session and the spool use like receive buffers.
  void tls_input() {
    if (!_tls->established()) {
      tls::status st = _tls->handshake();
      if (st == tls::status::want) {
        _srv.schedule_flush(this);
        return;
      }
      if (st != tls::status::ok) {
        RR_INFO("TLS handshake failed client=%s: %s", _session.peer().address.c_str(),
                _tls->error_text().c_str());
        _close_after_flush = true;  // send the alert, then close
        _srv.schedule_flush(this);
        return;
      }
      RR_INFO("TLS established client=%s %s %s", _session.peer().address.c_str(),
              _tls->version().c_str(), _tls->cipher().c_str());
      _session.tls_started(_tls->version(), _tls->cipher());
      if (_implicit) {
        if (_refuse_after_handshake) {
          _session.refuse_busy("Service temporarily unavailable: the mail queue cannot be written");
          _close_after_flush = true;
        } else {
          _session.greet();
        }
      }
    }
    decrypt();
    process();
  }

  void decrypt() {
    while (_tls && _tls->established() && _in.size() < _srv._opt.max_queued_buffers && !_closing) {
      std::uint16_t id;
      if (!_srv._plain.acquire(id)) {
        _srv._tls_waiting.push_back(this);  // resumed when buffers return
        return;
      }
      std::size_t n = 0;
      tls::status st = _tls->read(_srv._plain.writable(id), _srv._plain.size(), n);
      if (st == tls::status::ok && n > 0) {
        _in.push_back({&_srv._plain, id, static_cast<std::uint32_t>(n), 0});
        continue;
      }
      _srv._plain.unref(id);
      if (st == tls::status::closed || st == tls::status::error) {
        if (st == tls::status::error)
          RR_INFO("TLS error client=%s: %s", _session.peer().address.c_str(),
                  _tls->error_text().c_str());
        else if (_session.message_open())
          RR_INFO("TLS closed mid-message client=%s: message discarded",
                  _session.peer().address.c_str());
        _peer_closed = true;
      }
      return;
    }
  }

  void arm_recv() {
    io_uring_sqe* s = _srv._loop.sqe();
    io_uring_prep_recv_multishot(s, _fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = _srv._buffers.group();
    io_uring_sqe_set_data64(s, _srv._loop.token(_slot, op_recv));
    _recv_armed = true;
  }

  void cancel_recv() {
    if (!_recv_armed || _cancel_sent) return;
    _cancel_sent = true;
    io_uring_sqe* s = _srv._loop.sqe();
    io_uring_prep_cancel64(s, _srv._loop.token(_slot, op_recv), 0);
    io_uring_sqe_set_data64(s, _srv._loop.token(_slot, op_cancel));
  }

  void on_recv(const io_uring_cqe& cqe) {
    bool more = cqe.flags & IORING_CQE_F_MORE;
    if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
      auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
      _srv._buffers.taken(id);
      if (_closing) {
        _srv._buffers.unref(id);
      } else if (_tls) {
        // TLS copies once, into its own input; the kernel buffer goes back.
        _tls->push_ciphertext(_srv._buffers.data(id, static_cast<std::uint32_t>(cqe.res)));
        _srv._buffers.unref(id);
        _last_activity = _srv._loop.now_ms();
        tls_input();
      } else {
        _in.push_back({&_srv._buffers, id, static_cast<std::uint32_t>(cqe.res), 0});
        _last_activity = _srv._loop.now_ms();
        process();
      }
    } else if (cqe.res == -ENOBUFS) {
      // The shard's buffers are all in use: wait until some return. The
      // kernel keeps the bytes in the socket; TCP flow control does the rest.
      if (!more) _srv._starved.push_back(this);
    } else if (cqe.res == 0 || (cqe.res < 0 && cqe.res != -ECANCELED)) {
      if (_session.message_open() || _commit_pending)
        RR_INFO("client gone mid-message client=%s%s", _session.peer().address.c_str(),
                _commit_pending ? " (the message is stored and will be delivered)" : "");
      begin_close();
    }
    if (!more) {
      _recv_armed = false;
      _cancel_sent = false;
      if (!_closing && !_paused && cqe.res != -ENOBUFS && cqe.res != -ECANCELED) arm_recv();
    }
  }

  void on_send(int res) {
    _send_inflight = false;
    if (res < 0) {
      begin_close();
      return;
    }
    _sent += static_cast<std::size_t>(res);
    if (_sent < _sending.size()) {
      submit_send();
      return;
    }
    _sending.clear();
    _sent = 0;
    _srv.schedule_flush(this);
  }

  void submit_send() {
    io_uring_sqe* s = _srv._loop.sqe();
    io_uring_prep_send(s, _fd, _sending.data() + _sent, _sending.size() - _sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, _srv._loop.token(_slot, op_send));
    _send_inflight = true;
  }

  void process();
  void handle(event ev);
  void authenticate();
  void verify_sender();
  void authenticated(const auth::verification_cache::key& key, auth::verify_result result,
                     bool hint);
  void commit();
  void commit_done(int err, spool::stored_message* msg);

  void begin_close() {
    if (_closing) return;
    _closing = true;
    cancel_recv();
    // A transaction cut short charges nothing (a commit in flight keeps
    // its charge: committed() runs when it completes).
    if (!_commit_pending) _charger.release();
    if (_spool_open) {
      _srv._spool.abort(_spool_handle);
      _spool_open = false;
    }
    drop_input();
  }

  void drop_input() {
    for (auto& b : _in) b.src->unref(b.id);
    _in.clear();
  }

  void maybe_destroy() {
    if (!_closing || _destroying || _recv_armed || _send_inflight || _commit_pending ||
        _auth_pending || _verify_pending)
      return;
    _destroying = true;
    io_uring_sqe* s = _srv._loop.sqe();
    io_uring_prep_close(s, _fd);
    io_uring_sqe_set_data64(s, _srv._loop.token(_slot, op_close));
    _srv.destroy(this);
  }

  server& _srv;
  int _fd;
  std::uint32_t _slot;
  session _session;
  std::deque<pending_buffer> _in;
  std::string _sending;
  std::size_t _sent = 0;
  std::int64_t _last_activity = 0;
  spool::writer::message_handle _spool_handle = 0;
  util::queue_id _queue_id = 0;
  bool _spool_open = false;
  bool _commit_pending = false;
  bool _recv_armed = false;
  bool _cancel_sent = false;
  bool _paused = false;
  bool _send_inflight = false;
  bool _close_after_flush = false;
  bool _closing = false;
  bool _destroying = false;
  bool _processing = false;
  bool _implicit = false;
  std::unique_ptr<tls::session> _tls;
  bool _tls_encrypt = false;  // output goes through TLS
  bool _tls_switch = false;   // after the queued plaintext 220, encrypt
  bool _refuse_after_handshake = false;
  bool _peer_closed = false;        // TLS close_notify or error: finish, then close
  bool _auth_pending = false;       // a verification runs on a worker
  bool _verify_pending = false;     // a sender domain check is under way
  bool _verify_in_call = false;     // inside sender_check->verify()
  std::int64_t _auth_reply_at = 0;  // a failed AUTH's 535 is due then
  bool _auth_hint = false;
  session_charger _charger;
  std::int64_t _tls_deadline = 0;
};

void connection::process() {
  // A commit can complete synchronously (a message already failed in the
  // spool) and call back into process(): the outer loop carries on instead.
  if (_processing) return;
  _processing = true;
  for (;;) {
    if (_in.empty() && _tls && !_closing && _tls->pending_input() > 0) decrypt();
    if (_in.empty() || _closing) break;
    auto& front = _in.front();
    auto data = front.src->data(front.id, front.len).subspan(front.off);
    if (data.empty()) {
      front.src->unref(front.id);
      _in.pop_front();
      continue;
    }
    state st = _session.current();
    // The session takes no input while it waits for the spool or for a
    // password check; the bytes wait here, in order.
    if (st == state::committing || st == state::authenticating || st == state::verifying_sender ||
        st == state::closing || _close_after_flush)
      break;
    if (_srv._stopping && (st == state::fresh || st == state::ready)) {
      _session.shutdown();
      _close_after_flush = true;
      break;
    }
    if (_session.in_body()) {
      body_step step = _session.scan(data);
      if (_spool_open && step.store && (step.replay || step.body))
        _srv._spool.append_body(_spool_handle, {held_back_text, step.replay}, data.first(step.body),
                                *front.src, front.id);
      front.off += static_cast<std::uint32_t>(step.consumed);
      handle(step.ev);
    } else {
      feed_result r = _session.feed({data.data(), data.size()});
      front.off += static_cast<std::uint32_t>(r.consumed);
      handle(r.ev);
    }
  }
  if (_srv._stopping && _in.empty() && !_close_after_flush && !_closing) {
    state st = _session.current();
    if (st == state::fresh || st == state::ready) {
      _session.shutdown();
      _close_after_flush = true;
    }
  }
  _processing = false;
  if (_peer_closed && _in.empty() && !_closing) {
    // The client's TLS stream ended: a message in the middle is dropped.
    begin_close();
    return;
  }
  // Backpressure: stop receiving while unprocessed input piles up (a
  // commit in progress, a slow spool); resume once it drains.
  auto limit = _srv._opt.max_queued_buffers;
  // TLS input waiting to be decrypted counts as well.
  bool tls_backlog = _tls && _tls->pending_input() > std::size_t{limit} * _srv._plain.size();
  if (!_paused && (_in.size() >= limit || tls_backlog)) {
    _paused = true;
    cancel_recv();
  } else if (_paused && _in.size() <= limit / 2 && !tls_backlog) {
    _paused = false;
    if (!_recv_armed && !_closing) arm_recv();
  }
  _srv.schedule_flush(this);
}

void connection::handle(event ev) {
  switch (ev) {
    case event::body:
      if (_session.message_open() && !_spool_open) {
        _queue_id = _srv._ids.next(util::wall_seconds());
        _spool_handle = _srv._spool.begin(_queue_id);
        _spool_open = true;
      }
      break;
    case event::commit:
      commit();
      break;
    case event::discard:
      if (_spool_open) {
        _srv._spool.abort(_spool_handle);
        _spool_open = false;
      }
      break;
    case event::close:
      _close_after_flush = true;
      if (_spool_open) {
        _srv._spool.abort(_spool_handle);
        _spool_open = false;
      }
      break;
    case event::authenticate:
      authenticate();
      break;
    case event::verify_sender:
      verify_sender();
      break;
    case event::starttls:
      // RFC 3207 4.2 (CVE-2011-0411): whatever the client pipelined after
      // STARTTLS was sent in the clear and is thrown away.
      drop_input();
      start_tls(false);
      break;
    case event::need_more:
    case event::none:
      break;
  }
}

// The check may answer before verify() returns (a cached result): then
// process() is still on the stack and simply carries on with the input.
// The connection is not destroyed while _verify_pending.
void connection::verify_sender() {
  _verify_pending = true;
  _verify_in_call = true;
  _srv._opt.sender_check->verify(_session.sender(), [this](std::string_view refusal) {
    _verify_pending = false;
    if (_closing) {
      if (!_verify_in_call) maybe_destroy();
      return;
    }
    _session.sender_verified(refusal);
    if (_verify_in_call) return;
    process();
    _srv.schedule_flush(this);
  });
  _verify_in_call = false;
}

void connection::authenticate() {
  const peer_info& peer = _session.peer();
  auto client = auth::client_key::from_string(peer.address);
  std::int64_t now = _srv._loop.now_ms();
  if (client && _srv._limiter->blocked(*client, now)) {
    RR_INFO("auth refused client=%s: too many failures", peer.address.c_str());
    _session.auth_blocked();
    _close_after_flush = true;
    return;
  }
  const auto& creds = _session.credentials();
  const accounts::account* a = _srv._accounts ? _srv._accounts->find(creds.username) : nullptr;
  // An unknown or disabled account is checked against no hash: the worker
  // still spends a PBKDF2's time, so the reply cannot tell the cases apart.
  std::string encoded = a && a->enabled ? a->password : std::string();
  bool hint = !a && creds.username.find('@') != std::string::npos;
  auto key = _srv._auth_cache.make_key(creds.username, creds.password, encoded);
  if (!encoded.empty() && _srv._auth_cache.lookup(key)) {
    authenticated(key, auth::verify_result::match, hint);
    return;
  }
  auth::verify_job job;
  job.username = creds.username;
  job.password = creds.password;
  job.encoded_hash = std::move(encoded);
  reactor::loop* loop = &_srv._loop;
  job.post = [loop](std::function<void()> fn) { loop->post(std::move(fn)); };
  // The connection is not destroyed while _auth_pending, so `this` is
  // valid when the completion runs on this shard.
  job.completion = [this, key, hint](auth::verify_result r) {
    _auth_pending = false;
    if (_closing) {
      maybe_destroy();
      return;
    }
    authenticated(key, r, hint);
    process();
    _srv.schedule_flush(this);
  };
  _auth_pending = true;
  if (!_srv._opt.verifier->submit(std::move(job))) {
    _auth_pending = false;
    // RFC 4954 6: a temporary failure the client may retry.
    _session.auth_temporary_failure();
    RR_WARN("auth queue full client=%s", peer.address.c_str());
  }
}

void connection::authenticated(const auth::verification_cache::key& key, auth::verify_result result,
                               bool hint) {
  const peer_info& peer = _session.peer();
  auto client = auth::client_key::from_string(peer.address);
  // Guesses sent in parallel are checked while others fail: a match that
  // completes after the address was blocked does not count.
  if (client && _srv._limiter->blocked(*client, _srv._loop.now_ms())) {
    RR_INFO("auth refused client=%s login=%s: address blocked", peer.address.c_str(),
            key.username.c_str());
    _session.auth_blocked();
    _close_after_flush = true;
    return;
  }
  if (result == auth::verify_result::match) {
    _srv._auth_cache.insert(key);
    RR_INFO("auth ok client=%s account=%s", peer.address.c_str(), key.username.c_str());
    _session.auth_succeeded(key.username);
    return;
  }
  auth::failure_verdict v;
  if (client) v = _srv._limiter->record_failure(*client, _srv._loop.now_ms());
  RR_INFO("auth failed client=%s login=%s%s", peer.address.c_str(), key.username.c_str(),
          v.blocked ? " (address blocked)" : "");
  if (v.blocked) {
    _session.auth_blocked();
    _close_after_flush = true;
  } else if (v.delay_ms > 0) {
    _auth_reply_at = _srv._loop.now_ms() + v.delay_ms;
    _auth_hint = hint;
  } else {
    _session.auth_failed(hint);
  }
}

void connection::commit() {
  const auto& sc = _session.scanner();
  spool::envelope env;
  env.body_is_raw = _session.body_is_raw();
  env.eight_bit = sc.eight_bit();
  env.smtputf8 = _session.smtputf8();
  env.body_8bitmime = _session.declared_body() == body_type::eight_bit_mime;
  env.received_at = util::wall_seconds();
  env.size = sc.size();
  env.wire_size = sc.wire_size();
  env.relays =
      static_cast<std::uint32_t>(_session.recipients().size() * size_multiplier(sc.size()));
  if (const auto& charge = _charger.held()) {
    env.day = charge->day;
    env.quota_relays = static_cast<std::uint32_t>(charge->quota);
    env.block_relays = static_cast<std::uint32_t>(charge->blocks);
  }
  env.helo.assign(_session.helo());
  env.helo_greeting = !_session.esmtp();
  env.client_address = _session.peer().address;
  env.sender.assign(_session.sender());
  env.recipients = _session.recipients();
  env.tls_info = _session.tls_info();
  env.account = _session.account().empty() && _session.peer().trusted ? _srv._opt.trusted_account
                                                                      : _session.account();
  env.auth_info = _session.account();
  if (!_spool_open) {
    // An empty BDAT LAST message never opened a spool message.
    _queue_id = _srv._ids.next(util::wall_seconds());
    _spool_handle = _srv._spool.begin(_queue_id);
  }
  _spool_open = false;
  _commit_pending = true;
  _srv._spool.commit(_spool_handle, std::move(env),
                     [this](int err, spool::stored_message* msg) { commit_done(err, msg); });
}

void connection::commit_done(int err, spool::stored_message* msg) {
  _commit_pending = false;
  char id[17];
  util::format_queue_id(_queue_id, id);
  if (err == 0) {
    const auto& e = msg->env;
    RR_INFO(
        "accepted id=%s from=<%s> rcpts=%zu size=%llu multiplier=%u relays=%u quota_relays=%u "
        "block_relays=%u account=%s client=%s helo=%s%s%s",
        id, e.sender.c_str(), e.recipients.size(), static_cast<unsigned long long>(e.size),
        size_multiplier(e.size), e.relays, e.quota_relays, e.block_relays,
        e.account.empty() ? "-" : e.account.c_str(), e.client_address.c_str(), e.helo.c_str(),
        e.tls_info.empty() ? "" : " tls=yes", _closing ? " (client left before the reply)" : "");
    _srv._on_accepted(std::move(*msg));
    if (!_closing) _session.committed(id);
  } else {
    RR_ERROR("not accepted id=%s client=%s: spool error: %s", id, _session.peer().address.c_str(),
             strerror(-err));
    if (!_closing)
      _session.commit_failed(err == -ENOSPC || err == -EDQUOT ? commit_error::no_space
                                                              : commit_error::io);
  }
  if (!_closing) process();
  maybe_destroy();
}

void connection::flush() {
  listed_dirty = false;
  if (_closing || _send_inflight) return;
  std::string& out = _session.output();
  if (!out.empty()) {
    if (_tls_encrypt) {
      if (_tls->write(out) != tls::status::ok) {
        RR_INFO("TLS write failed client=%s: %s", _session.peer().address.c_str(),
                _tls->error_text().c_str());
        begin_close();
        maybe_destroy();
        return;
      }
    } else {
      _sending.append(out);
    }
    out.clear();
  }
  if (_tls_switch) {
    // Everything the session said before STARTTLS, its 220 included, is in
    // _sending in plaintext; from here on only TLS records go out.
    _tls_switch = false;
    _tls_encrypt = true;
  }
  if (_tls) {
    if (_close_after_flush && _tls->established()) _tls->shutdown();  // close_notify
    _sending.append(_tls->ciphertext());
    _tls->ciphertext().clear();
  }
  if (!_sending.empty()) {
    _sent = 0;
    submit_send();
    return;
  }
  if (_close_after_flush) {
    begin_close();
    maybe_destroy();
  }
}

server::server(reactor::loop& loop, reactor::buffer_pool& buffers, spool::writer& spool,
               server_options opt, trust_check trusted, accepted_sink on_accepted)
    : _loop(loop),
      _buffers(buffers),
      _spool(spool),
      _opt(std::move(opt)),
      _starttls_cfg(_opt.session),
      _plain(_opt.tls_buffers, 16384),
      _activation(_opt.activation_delay),
      _limiter(_opt.limiter),
      _trusted(std::move(trusted)),
      _on_accepted(std::move(on_accepted)),
      _ids(_opt.shard) {
  _starttls_cfg.starttls = true;
  auto policy = [this](std::string_view account, std::string_view sender) {
    return mail_policy(account, sender);
  };
  _opt.session.mail_policy = policy;
  _starttls_cfg.mail_policy = policy;
  _loop.on_tick([this](std::int64_t now) { tick(now); });
  _loop.on_turn_end([this] { turn_end(); });
}

server::~server() = default;

void server::accept(int fd, listener_kind kind) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  int one = 1;
  // Replies are small and already batched per loop turn: send them now.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  peer_info peer;
  peer.address = net::format_address(reinterpret_cast<sockaddr*>(&ss));
  peer.trusted = _trusted(reinterpret_cast<sockaddr*>(&ss));
  bool refuse = !_spool.writable() || _live >= _opt.max_sessions || _stopping;
  peer.tls = false;
  auto c = std::make_unique<connection>(*this, fd, peer, kind, _connections.size());
  connection* raw = c.get();
  _connections.push_back(std::move(c));
  ++_live;
  RR_DEBUG("connect client=%s sessions=%zu", peer.address.c_str(), _live);
  raw->start(refuse);
}

void server::schedule_flush(connection* c) {
  if (c->listed_dirty) return;
  c->listed_dirty = true;
  _dirty.push_back(c);
}

void server::destroy(connection* c) {
  _loop.defer([this, c] {
    // Runs after this turn's completions, so no completion refers to it
    // any more; the turn's own work (a shutdown pass, a flush) may still
    // have listed it after destroy() was called, so unlist it here.
    std::erase(_dirty, c);
    std::erase(_starved, c);
    std::erase(_tls_waiting, c);
    std::size_t at = c->index;
    if (at != _connections.size() - 1) {
      std::swap(_connections[at], _connections.back());
      _connections[at]->index = at;
    }
    _connections.pop_back();
    --_live;
  });
}

util::queue_id server::new_queue_id() {
  return _ids.next(util::wall_seconds());
}

void server::set_accounts(std::shared_ptr<const accounts::table> table) {
  _accounts = std::move(table);
}

std::string server::mail_policy(std::string_view account, std::string_view sender) const {
  // A trusted-network session sends as accounts.trusted_account: its rules
  // apply as to a login. Without one, or when users.json lacks it (logged
  // at start and reload), the mail goes uncharged and unrestricted.
  const bool trusted = account.empty();
  if (trusted) account = _opt.trusted_account;
  const accounts::account* a = _accounts && !account.empty() ? _accounts->find(account) : nullptr;
  if (trusted && !a) return {};
  if (!a || !a->enabled)
    return "550 5.7.1 Error: account " + std::string(account) +
           " was disabled or removed; mail from it is refused";
  std::int64_t now = util::wall_seconds();
  if (!_activation.active(*a, now))
    return "451 4.7.0 Error: account " + a->username + " becomes active at " +
           accounts::format_rfc3339(_activation.active_at(*a)) + " (new accounts wait " +
           std::to_string(_activation.delay() / 60) + " minutes); try again then";
  if (auto at = sender.rfind('@'); at != std::string_view::npos) {
    std::string_view domain = sender.substr(at + 1);
    if (!accounts::sender_domain_allowed(*a, domain))
      return "550 5.7.1 Error: account " + a->username + " may not send from " +
             std::string(domain) + "; use one of the sender domains registered for it";
  }
  return {};
}

void server::turn_end() {
  _buffers.publish();
  auto dirty = std::move(_dirty);
  _dirty.clear();
  for (auto* c : dirty) c->flush();
  if (!_starved.empty() && _buffers.available() > _buffers.count() / 4) {
    auto starved = std::move(_starved);
    _starved.clear();
    for (auto* c : starved) c->rearm_if_starved();
  }
  if (!_tls_waiting.empty() && _plain.available() > 0) {
    auto waiting = std::move(_tls_waiting);
    _tls_waiting.clear();
    for (auto* c : waiting) c->resume_tls();
  }
}

void server::tick(std::int64_t now_ms) {
  for (auto& c : _connections) c->idle_check(now_ms, _opt.idle_timeout_ms);
}

void server::shutdown() {
  _stopping = true;
  for (auto& c : _connections) c->begin_shutdown();
}

void server::close_all() {
  std::vector<connection*> all;
  for (auto& c : _connections) all.push_back(c.get());
  for (auto* c : all) c->force_close();
}

}  // namespace ringrelay::smtp
