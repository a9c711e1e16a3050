#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <ringrelay/log/log.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/util/clock.hh>
#include <stdexcept>

namespace ringrelay::reactor {
namespace {

// Completions the loop handles itself carry this slot.
constexpr std::uint32_t internal_slot = 0xffffffffu;
enum internal_op : std::uint8_t { op_tick = 1, op_mailbox = 2, op_log = 3 };

constexpr std::uint32_t gen_mask = 0xffffff;

std::uint64_t pack(std::uint32_t slot, std::uint32_t gen, std::uint8_t op) {
  return (std::uint64_t{op} << 56) | (std::uint64_t{gen & gen_mask} << 32) | slot;
}

}  // namespace

void loop::probe_kernel() {
  io_uring_probe* probe = io_uring_get_probe();
  if (!probe) throw std::runtime_error("io_uring is not available (kernel too old or disabled)");
  struct need {
    int op;
    const char* name;
  };
  static constexpr need ops[] = {
      {IORING_OP_ACCEPT, "ACCEPT"},
      {IORING_OP_RECV, "RECV"},
      {IORING_OP_SEND, "SEND"},
      {IORING_OP_WRITEV, "WRITEV"},
      {IORING_OP_WRITE, "WRITE"},
      {IORING_OP_READ, "READ"},
      {IORING_OP_FSYNC, "FSYNC"},
      {IORING_OP_TIMEOUT, "TIMEOUT"},
      {IORING_OP_CONNECT, "CONNECT"},
      {IORING_OP_CLOSE, "CLOSE"},
      {IORING_OP_SPLICE, "SPLICE"},
      {IORING_OP_SOCKET, "SOCKET"},
      {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
      {IORING_OP_FALLOCATE, "FALLOCATE"},
      {IORING_OP_OPENAT, "OPENAT"},
      {IORING_OP_UNLINKAT, "UNLINKAT"},
  };
  std::string missing;
  for (const auto& n : ops)
    if (!io_uring_opcode_supported(probe, n.op)) missing += std::string(" ") + n.name;
  io_uring_free_probe(probe);
  if (!missing.empty())
    throw std::runtime_error("this kernel's io_uring lacks required opcodes:" + missing +
                             " (ringrelay needs Linux 6.1 or newer)");
}

loop::loop(const loop_options& opt) {
  io_uring_params p{};
  // SINGLE_ISSUER: only this shard's thread submits, so the kernel can skip
  // its submission locking. DEFER_TASKRUN: completion work runs when we wait,
  // not on interrupts, which batches it and keeps the CQ ordering ours.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  p.flags |= IORING_SETUP_CQSIZE;
  p.cq_entries = opt.ring_entries * 4;
  int rc = io_uring_queue_init_params(opt.ring_entries, &_ring, &p);
  if (rc < 0)
    throw std::runtime_error(
        std::string("io_uring setup with SINGLE_ISSUER|DEFER_TASKRUN failed: ") + strerror(-rc) +
        " (needs Linux 6.1 or newer)");
  _mailbox_fd = eventfd(0, EFD_CLOEXEC);
  if (_mailbox_fd < 0) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
  _tick_ts.tv_sec = opt.tick_ms / 1000;
  _tick_ts.tv_nsec = (opt.tick_ms % 1000) * 1000000L;
}

loop::~loop() {
  io_uring_queue_exit(&_ring);
  if (_mailbox_fd >= 0) ::close(_mailbox_fd);
}

io_uring_sqe* loop::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&_ring);
  while (!s) {
    io_uring_submit(&_ring);
    s = io_uring_get_sqe(&_ring);
  }
  return s;
}

void loop::reserve(unsigned n) {
  if (io_uring_sq_space_left(&_ring) < n) io_uring_submit(&_ring);
}

std::uint32_t loop::add_owner(owner* o) {
  std::uint32_t idx;
  if (!_free.empty()) {
    idx = _free.back();
    _free.pop_back();
  } else {
    idx = static_cast<std::uint32_t>(_slots.size());
    _slots.emplace_back();
  }
  _slots[idx].o = o;
  return idx;
}

void loop::remove_owner(std::uint32_t idx) {
  _slots[idx].o = nullptr;
  _slots[idx].gen = (_slots[idx].gen + 1) & gen_mask;
  _free.push_back(idx);
}

std::uint64_t loop::token(std::uint32_t idx, std::uint8_t op) const {
  return pack(idx, _slots[idx].gen, op);
}

void loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(_mailbox_mutex);
    _mailbox.push_back(std::move(fn));
  }
  std::uint64_t one = 1;
  // eventfd writes never block while the counter is below 2^64-1.
  [[maybe_unused]] auto n = ::write(_mailbox_fd, &one, sizeof one);
}

void loop::arm_tick() {
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout(s, &_tick_ts, 0, 0);
  io_uring_sqe_set_data64(s, pack(internal_slot, 0, op_tick));
}

void loop::arm_mailbox() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, _mailbox_fd, &_mailbox_value, sizeof _mailbox_value, 0);
  io_uring_sqe_set_data64(s, pack(internal_slot, 0, op_mailbox));
}

void loop::drain_mailbox() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(_mailbox_mutex);
    work.swap(_mailbox);
  }
  for (auto& fn : work) fn();
}

// Log lines collect in a thread-local buffer during the turn and go out in
// one write through the ring: a shard never blocks on its log.
void loop::flush_log() {
  std::string& pending = log::pending();
  if (_log_writing || pending.empty()) return;
  _log_inflight.swap(pending);
  pending.clear();
  io_uring_sqe* s = sqe();
  io_uring_prep_write(s, 2, _log_inflight.data(), static_cast<unsigned>(_log_inflight.size()),
                      static_cast<__u64>(-1));
  io_uring_sqe_set_data64(s, pack(internal_slot, 0, op_log));
  _log_writing = true;
}

void loop::dispatch(const io_uring_cqe& cqe) {
  std::uint64_t ud = cqe.user_data;
  auto idx = static_cast<std::uint32_t>(ud);
  auto op = static_cast<std::uint8_t>(ud >> 56);
  if (idx == internal_slot) {
    switch (op) {
      case op_tick:
        for (auto& fn : _tick) fn(_now_ms);
        if (_running) arm_tick();
        break;
      case op_mailbox:
        drain_mailbox();
        if (_running) arm_mailbox();
        break;
      case op_log: {
        _log_writing = false;
        // A short write to stderr keeps the rest for the next flush.
        if (cqe.res > 0 && static_cast<std::size_t>(cqe.res) < _log_inflight.size())
          log::pending().insert(0, _log_inflight.substr(cqe.res));
        _log_inflight.clear();
        break;
      }
    }
    return;
  }
  if (idx >= _slots.size()) return;
  const slot& sl = _slots[idx];
  if (!sl.o || sl.gen != ((ud >> 32) & gen_mask)) return;  // stale: owner gone
  sl.o->on_completion(op, cqe);
}

void loop::run() {
  log::set_buffered(true);
  _running = true;
  _now_ms = util::monotonic_ms();
  arm_tick();
  arm_mailbox();
  while (_running) {
    io_uring_submit_and_wait(&_ring, 1);
    _now_ms = util::monotonic_ms();
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&_ring, head, cqe) {
      dispatch(*cqe);
      ++seen;
    }
    io_uring_cq_advance(&_ring, seen);
    while (!_deferred.empty()) {
      auto work = std::move(_deferred);
      _deferred.clear();
      for (auto& fn : work) fn();
    }
    for (auto& fn : _turn_end) fn();
    flush_log();
  }
  // Write out what is left of the log synchronously: the loop is over.
  log::set_buffered(false);
  std::string rest = std::move(log::pending());
  if (!rest.empty()) [[maybe_unused]]
    auto n = ::write(2, rest.data(), rest.size());
}

}  // namespace ringrelay::reactor
