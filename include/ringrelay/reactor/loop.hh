// reactor/loop — one io_uring ring and its event loop, owned by one shard.
//
// The ring is created with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN: only
// the shard thread that runs the loop may submit, and completions are
// processed only when the loop waits, so a handler never races the kernel.
//
// Completions are routed by token: user_data packs an owner slot (32 bits),
// that slot's generation (24 bits) and an owner-defined op (8 bits). Freeing
// an owner bumps the slot's generation, so completions still in flight for
// it are recognised as stale and dropped (CONVENTIONS.md §8). Owners must
// not be destroyed inside their own completion handler: use `defer`.
//
// Errors: construction throws (startup); everything after returns negative
// errno values in completions. Threads: all methods on the loop's thread
// except `post`, which any thread may call.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace ringrelay::reactor {

// Something that receives completions.
class owner {
 public:
  virtual void on_completion(std::uint8_t op, const io_uring_cqe& cqe) = 0;

 protected:
  ~owner() = default;
};

struct loop_options {
  unsigned ring_entries = 4096;
  unsigned tick_ms = 100;  // period of the tick callbacks (timeouts, retries)
};

class loop {
 public:
  explicit loop(const loop_options& opt);
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // Checks that this kernel has every opcode and feature ringrelay needs.
  // Throws std::runtime_error naming what is missing.
  static void probe_kernel();

  io_uring* ring() { return &_ring; }

  // A submission entry; submits the queue first when it is full. Never null.
  io_uring_sqe* sqe();
  // Makes room for `n` entries in a row (submitting first if needed), so a
  // linked chain is never split by an early submission: a split chain's
  // later entries would run unordered.
  void reserve(unsigned n);

  std::uint32_t add_owner(owner* o);
  void remove_owner(std::uint32_t slot);
  std::uint64_t token(std::uint32_t slot, std::uint8_t op) const;

  // Runs `fn` after the current batch of completions (never inside one).
  void defer(std::function<void()> fn) { _deferred.push_back(std::move(fn)); }
  // Called once per loop turn, after completions and deferred work: output
  // flushing happens here so pipelined replies go out in one send.
  void on_turn_end(std::function<void()> fn) { _turn_end.push_back(std::move(fn)); }
  // Called every tick_ms with the monotonic time in milliseconds.
  void on_tick(std::function<void(std::int64_t)> fn) { _tick.push_back(std::move(fn)); }

  // Runs `fn` on the loop's thread soon. Any thread.
  void post(std::function<void()> fn);

  // Monotonic milliseconds, read once per loop turn.
  std::int64_t now_ms() const { return _now_ms; }

  void run();
  void stop() { _running = false; }

 private:
  struct slot {
    owner* o = nullptr;
    std::uint32_t gen = 0;
  };
  class internal;

  void dispatch(const io_uring_cqe& cqe);
  void arm_tick();
  void arm_mailbox();
  void drain_mailbox();
  void flush_log();

  io_uring _ring;
  std::vector<slot> _slots;
  std::vector<std::uint32_t> _free;
  std::vector<std::function<void()>> _deferred;
  std::vector<std::function<void()>> _turn_end;
  std::vector<std::function<void(std::int64_t)>> _tick;
  __kernel_timespec _tick_ts{};
  std::int64_t _now_ms = 0;
  bool _running = false;

  int _mailbox_fd = -1;
  std::uint64_t _mailbox_value = 0;
  std::mutex _mailbox_mutex;  // control path only (reload, shutdown)
  std::vector<std::function<void()>> _mailbox;

  std::string _log_inflight;
  bool _log_writing = false;
};

}  // namespace ringrelay::reactor
