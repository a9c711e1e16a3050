#include <ares.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <algorithm>
#include <mutex>
#include <ringrelay/dns/resolver.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/util/clock.hh>
#include <ringrelay/util/hostname.hh>
#include <stdexcept>

namespace ringrelay::dns {
namespace {

enum op : std::uint8_t { op_timer = 1, op_poll = 2, op_ignore = 3 };

// The longest the resolver sleeps while queries are outstanding: the
// precision of lookup deadlines.
constexpr std::int64_t max_timer_ms = 100;
constexpr unsigned max_tries = 5;

// ares_library_init is not thread-safe; shards start their resolvers in
// parallel.
void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    const int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS)
      throw std::runtime_error(std::string("c-ares cannot start: ") + ares_strerror(rc));
  });
}

// Lower case, without a final dot: the form names take in the cache.
std::string normalise(std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  std::string out(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

lookup_result failure(lookup_status s, std::string detail) {
  lookup_result r;
  r.status = s;
  r.detail = std::move(detail);
  return r;
}

// What c-ares's ending of a query means. Every answer it passes back
// (NOERROR, NXDOMAIN, and with ARES_FLAG_NOCHECKRESP the failures too) is
// read by our parser, whatever status c-ares derived from it.
lookup_result result_from(int status, const unsigned char* abuf, int alen, rr_type type,
                          const cache_limits& limits) {
  if (abuf && alen > 0) {
    answer a;
    const parse_error e = parse_answer(std::span(abuf, static_cast<std::size_t>(alen)), a);
    if (e != parse_error::ok)
      return failure(lookup_status::error, std::string("malformed answer: ") + describe(e));
    return result_of(a, type, limits);
  }
  switch (status) {
    case ARES_ESERVFAIL:
      return failure(lookup_status::servfail, "SERVFAIL");
    case ARES_ETIMEOUT:
      return failure(lookup_status::timeout, "no answer from the DNS servers");
    default:
      return failure(lookup_status::error, ares_strerror(status));
  }
}

}  // namespace

struct resolver::query {
  resolver* owner;
  std::string key;
  std::string name;
  rr_type type;
  std::int64_t deadline_ms;
  std::vector<lookup_callback> waiters;
  bool expired = false;  // answered with a timeout; c-ares still holds it
};

// One socket c-ares uses, polled through the ring. A watch that is retired
// gives up its owner slot at once, so whatever its poll still completes
// with is dropped as stale; the object itself is freed after the batch.
class resolver::socket_watch final : public reactor::owner {
 public:
  socket_watch(resolver& r, int fd, bool readable, bool writable)
      : parent(r), fd(fd), readable(readable), writable(writable), slot(r._loop.add_owner(this)) {}

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override {
    if (op == op_poll) parent.socket_ready(*this, cqe.res);
  }

  unsigned mask() const { return (readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u); }

  // One-shot: a poll reports readiness once and is armed again after c-ares
  // has read what was there (it reads a UDP socket until EAGAIN).
  void arm() {
    armed_mask = mask();
    io_uring_sqe* s = parent._loop.sqe();
    io_uring_prep_poll_add(s, fd, armed_mask);
    io_uring_sqe_set_data64(s, parent._loop.token(slot, op_poll));
    armed = true;
  }

  void retire() {
    if (armed) {
      io_uring_sqe* s = parent._loop.sqe();
      io_uring_prep_poll_remove(s, parent._loop.token(slot, op_poll));
      io_uring_sqe_set_data64(s, parent._loop.token(slot, op_ignore));
    }
    parent._loop.remove_owner(slot);
    retired = true;
  }

  resolver& parent;
  const int fd;
  bool readable;
  bool writable;
  const std::uint32_t slot;
  unsigned armed_mask = 0;
  bool armed = false;
  bool retired = false;
};

resolver::resolver(reactor::loop& loop, const resolver_options& opt)
    : _loop(loop), _timeout_ms(std::max(opt.timeout_ms, 1u)), _cache(opt.cache) {
  init_library();
  const unsigned tries = std::clamp(opt.tries, 1u, max_tries);
  ares_options o{};
  o.sock_state_cb = &resolver::on_socket_state;
  o.sock_state_cb_data = this;
  o.tries = static_cast<int>(tries);
  // c-ares waits `timeout` for the first round of tries and doubles it each
  // round: t + 2t + ... + 2^(tries-1) t = (2^tries - 1) t fits the deadline
  // with one server; with more, the deadline cuts the last rounds short.
  o.timeout = static_cast<int>(std::max(1u, _timeout_ms / ((1u << tries) - 1)));
  // NOCHECKRESP: SERVFAIL, NOTIMP and REFUSED answers come to us as they
  // are. Without it c-ares 1.18 retries them on every server and then ends
  // the query with ARES_ECONNREFUSED, so a SERVFAIL could not be told from
  // an unreachable server; the price is that such an answer from the first
  // server asked is final for that lookup.
  o.flags = ARES_FLAG_NOCHECKRESP;
  int rc = ares_init_options(
      &_channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TRIES | ARES_OPT_TIMEOUTMS | ARES_OPT_FLAGS);
  if (rc != ARES_SUCCESS)
    throw std::runtime_error(std::string("c-ares cannot start a resolver: ") + ares_strerror(rc));
  if (!opt.servers.empty()) {
    const std::string csv = join(opt.servers);
    rc = ares_set_servers_ports_csv(_channel, csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(_channel);
      throw std::runtime_error("DNS servers \"" + csv + "\": " + ares_strerror(rc) +
                               " (expected \"ip:port\" or \"[ipv6]:port\")");
    }
  }
  _slot = _loop.add_owner(this);
}

resolver::~resolver() {
  // Ends every query with ARES_EDESTRUCTION (on_answer frees them without
  // calling back) and closes c-ares's sockets, which retires their watches.
  ares_destroy(_channel);
  for (auto& [fd, w] : _watches) w->retire();
  _loop.remove_owner(_slot);
  // A poll removal, or a timeout whose timespec lives in this object, may
  // still wait in the submission queue: the kernel reads the timespec when
  // it takes the entry, so hand them over before the memory goes.
  io_uring_submit(_loop.ring());
}

void resolver::lookup(std::string_view name, rr_type type, lookup_callback cb) {
  ++_stats.lookups;
  std::string qname = normalise(name);
  // Anything else would need escaping, which no name ringrelay looks up has.
  if (!util::valid_dns_name(qname)) {
    deliver(std::move(cb), failure(lookup_status::error, "not a valid DNS name"));
    return;
  }
  const std::int64_t now = util::monotonic_ms();
  if (auto hit = _cache.find(qname, type, now)) {
    ++_stats.cache_hits;
    deliver(std::move(cb), std::move(*hit));
    return;
  }
  std::string key = cache::key(qname, type);
  if (auto it = _inflight.find(key); it != _inflight.end()) {
    ++_stats.joined;
    it->second->waiters.push_back(std::move(cb));
    return;
  }
  auto* q = new query{this, key, std::move(qname), type, now + _timeout_ms, {}, false};
  q->waiters.push_back(std::move(cb));
  _inflight.emplace(std::move(key), q);
  ++_outstanding;
  ++_stats.queries;
  // May call on_answer before it returns (a query c-ares cannot send): q is
  // not touched after this.
  ares_query(_channel, q->name.c_str(), ns_c_in, static_cast<int>(type), &resolver::on_answer, q);
  arm_timer();
}

void resolver::on_completion(std::uint8_t op, const io_uring_cqe&) {
  if (op != op_timer) return;
  _timer_armed = false;
  // No socket is ready: c-ares only looks at its timeouts.
  ares_process_fd(_channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  expire(util::monotonic_ms());
  arm_timer();
}

void resolver::on_socket_state(void* self, int fd, int readable, int writable) {
  static_cast<resolver*>(self)->socket_state(fd, readable != 0, writable != 0);
}

void resolver::on_answer(void* arg, int status, int, unsigned char* abuf, int alen) {
  std::unique_ptr<query> q(static_cast<query*>(arg));
  q->owner->answered(*q, status, abuf, alen);
}

void resolver::socket_state(int fd, bool readable, bool writable) {
  if (!readable && !writable) {
    retire(fd);
    return;
  }
  auto it = _watches.find(fd);
  if (it == _watches.end()) {
    watch(fd, readable, writable);
    return;
  }
  socket_watch& w = *it->second;
  const unsigned wanted = (readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u);
  // A poll armed for more than is wanted now only wakes us spuriously
  // (socket_ready filters by what is wanted); one armed for less would
  // never report the new interest, so it is replaced.
  if (!w.armed || (wanted & ~w.armed_mask) == 0) {
    w.readable = readable;
    w.writable = writable;
    return;
  }
  retire(fd);
  watch(fd, readable, writable);
}

void resolver::watch(int fd, bool readable, bool writable) {
  auto w = std::make_unique<socket_watch>(*this, fd, readable, writable);
  w->arm();
  _watches.emplace(fd, std::move(w));
}

void resolver::retire(int fd) {
  auto it = _watches.find(fd);
  if (it == _watches.end()) return;
  it->second->retire();
  _retired.push_back(std::move(it->second));
  _watches.erase(it);
  schedule_run();
}

void resolver::socket_ready(socket_watch& w, int res) {
  w.armed = false;
  // A failed poll (res < 0) is passed on as readiness in both directions:
  // c-ares's own read or write then meets the error and drops the socket.
  const auto events = static_cast<unsigned>(res < 0 ? POLLIN | POLLOUT | POLLERR : res);
  const bool error = events & (POLLERR | POLLHUP);
  const int read_fd = w.readable && (error || (events & POLLIN)) ? w.fd : ARES_SOCKET_BAD;
  const int write_fd = w.writable && (error || (events & POLLOUT)) ? w.fd : ARES_SOCKET_BAD;
  ares_process_fd(_channel, read_fd, write_fd);
  // c-ares may have closed the socket meanwhile (w is then retired, and
  // stays allocated until the batch is over).
  if (!w.retired && !w.armed) w.arm();
  arm_timer();
}

void resolver::answered(query& q, int status, const unsigned char* abuf, int alen) {
  --_outstanding;
  if (status == ARES_EDESTRUCTION || q.expired) return;
  _inflight.erase(q.key);
  lookup_result r = result_from(status, abuf, alen, q.type, _cache.limits());
  _cache.store(q.name, q.type, r, util::monotonic_ms());
  RR_DEBUG("dns lookup name=%s type=%s status=%s ttl=%u%s%s", q.name.c_str(), type_name(q.type),
           status_name(r.status), r.ttl, r.detail.empty() ? "" : " detail=", r.detail.c_str());
  for (auto& cb : q.waiters) deliver(std::move(cb), r);
}

void resolver::arm_timer() {
  if (_timer_armed || _outstanding == 0) return;
  timeval longest{0, max_timer_ms * 1000};
  timeval tv{};
  const timeval* next = ares_timeout(_channel, &longest, &tv);
  const std::int64_t ms = std::clamp<std::int64_t>(
      std::int64_t{next->tv_sec} * 1000 + next->tv_usec / 1000, 1, max_timer_ms);
  _timer_ts.tv_sec = 0;
  _timer_ts.tv_nsec = ms * 1000000;
  io_uring_sqe* s = _loop.sqe();
  io_uring_prep_timeout(s, &_timer_ts, 0, 0);
  io_uring_sqe_set_data64(s, _loop.token(_slot, op_timer));
  _timer_armed = true;
}

// Lookups past their deadline end with `timeout`; their c-ares queries run
// on unobserved until c-ares gives up on them, and a new lookup of the same
// name sends a fresh query.
void resolver::expire(std::int64_t now_ms) {
  for (auto it = _inflight.begin(); it != _inflight.end();) {
    query& q = *it->second;
    if (q.deadline_ms > now_ms) {
      ++it;
      continue;
    }
    q.expired = true;
    const auto r =
        failure(lookup_status::timeout, "no answer within " + std::to_string(_timeout_ms) + " ms");
    RR_DEBUG("dns lookup name=%s type=%s status=timeout", q.name.c_str(), type_name(q.type));
    for (auto& cb : q.waiters) deliver(std::move(cb), r);
    q.waiters.clear();
    it = _inflight.erase(it);
  }
}

void resolver::deliver(lookup_callback cb, lookup_result r) {
  _ready.push_back({std::move(cb), std::move(r)});
  schedule_run();
}

void resolver::schedule_run() {
  if (_run_scheduled) return;
  _run_scheduled = true;
  _loop.defer([this, alive = std::weak_ptr<char>(_alive)] {
    if (!alive.expired()) run_ready();
  });
}

void resolver::run_ready() {
  _run_scheduled = false;
  _retired.clear();
  auto ready = std::move(_ready);
  _ready.clear();
  for (auto& r : ready) r.cb(r.result);
}

}  // namespace ringrelay::dns
