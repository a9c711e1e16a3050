// reactor/loop and reactor/buffer_pool on a real ring: completions reach
// their owner with their op, stale completions are dropped by generation,
// deferred work runs after the completion batch, `post` crosses threads,
// ticks fire, and buffer references decide when a buffer goes back.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <string>
#include <thread>
#include <vector>

namespace ringrelay::reactor {
namespace {

// A loop with a tick budget, so a bug stops the test instead of hanging it.
class bounded_loop {
 public:
  bounded_loop() : loop(loop_options{64, 5}) {
    loop.on_tick([this](std::int64_t) {
      if (++_ticks >= _limit) {
        _out_of_ticks = true;
        loop.stop();
      }
    });
  }

  // Runs until something calls `loop.stop()`; false when the budget ran out.
  [[nodiscard]] bool run(int max_ticks = 1000) {
    _ticks = 0;
    _limit = max_ticks;
    _out_of_ticks = false;
    loop.run();
    return !_out_of_ticks;
  }

  reactor::loop loop;

 private:
  int _ticks = 0;
  int _limit = 0;
  bool _out_of_ticks = false;
};

struct seen {
  std::string who;
  std::uint8_t op;
  int res;
};

// Records every completion it gets; stops the loop after `stop_after`.
class recorder final : public owner {
 public:
  recorder(std::string name, reactor::loop& l, std::vector<seen>& log, std::size_t stop_after)
      : _name(std::move(name)), _loop(l), _log(log), _stop_after(stop_after) {}

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override {
    in_handler = true;
    _log.push_back({_name, op, cqe.res});
    if (on_event) on_event();
    in_handler = false;
    if (_log.size() >= _stop_after) _loop.stop();
  }

  std::function<void()> on_event;
  bool in_handler = false;

 private:
  std::string _name;
  reactor::loop& _loop;
  std::vector<seen>& _log;
  std::size_t _stop_after;
};

void submit_nop(reactor::loop& l, std::uint32_t slot, std::uint8_t op) {
  io_uring_sqe* s = l.sqe();
  io_uring_prep_nop(s);
  io_uring_sqe_set_data64(s, l.token(slot, op));
}

TEST(loop, a_completion_reaches_its_owner_with_its_op) {
  bounded_loop b;
  std::vector<seen> log;
  recorder a("a", b.loop, log, 3), c("c", b.loop, log, 3);
  auto slot_a = b.loop.add_owner(&a);
  auto slot_c = b.loop.add_owner(&c);
  ASSERT_NE(slot_a, slot_c);
  submit_nop(b.loop, slot_a, 7);
  submit_nop(b.loop, slot_c, 200);
  submit_nop(b.loop, slot_a, 255);
  ASSERT_TRUE(b.run());
  ASSERT_EQ(log.size(), 3u);
  std::vector<std::pair<std::string, int>> got;
  for (const auto& s : log) {
    EXPECT_EQ(s.res, 0);
    got.emplace_back(s.who, s.op);
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int>>{{"a", 7}, {"a", 255}, {"c", 200}}));
  b.loop.remove_owner(slot_a);
  b.loop.remove_owner(slot_c);
}

TEST(loop, a_completion_for_a_removed_owner_is_dropped_even_when_its_slot_is_reused) {
  bounded_loop b;
  std::vector<seen> log;
  recorder old_owner("old", b.loop, log, 1), new_owner("new", b.loop, log, 1);
  auto slot = b.loop.add_owner(&old_owner);
  submit_nop(b.loop, slot, 1);  // still in flight when its owner goes
  b.loop.remove_owner(slot);
  auto reused = b.loop.add_owner(&new_owner);
  ASSERT_EQ(reused, slot) << "the test needs the slot reused";
  submit_nop(b.loop, reused, 2);
  ASSERT_TRUE(b.run());
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].who, "new");
  EXPECT_EQ(log[0].op, 2);

  // And when the slot stays empty.
  recorder other("other", b.loop, log, 2);
  auto other_slot = b.loop.add_owner(&other);
  submit_nop(b.loop, reused, 3);
  b.loop.remove_owner(reused);
  submit_nop(b.loop, other_slot, 4);
  ASSERT_TRUE(b.run());
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].who, "other");
  EXPECT_EQ(log[1].op, 4);
  b.loop.remove_owner(other_slot);
}

TEST(loop, deferred_work_runs_after_the_whole_completion_batch) {
  bounded_loop b;
  std::vector<seen> log;
  recorder first("first", b.loop, log, 99), second("second", b.loop, log, 99);
  auto s1 = b.loop.add_owner(&first);
  auto s2 = b.loop.add_owner(&second);
  std::size_t seen_when_deferred_ran = 0;
  bool ran_inside_a_handler = true;
  auto defer_once = [&] {
    if (log.size() != 1) return;
    b.loop.defer([&] {
      seen_when_deferred_ran = log.size();
      ran_inside_a_handler = first.in_handler || second.in_handler;
      b.loop.stop();
    });
  };
  first.on_event = defer_once;
  second.on_event = defer_once;
  // Both NOPs complete at submission, so their completions form one batch.
  submit_nop(b.loop, s1, 1);
  submit_nop(b.loop, s2, 2);
  ASSERT_TRUE(b.run());
  EXPECT_EQ(seen_when_deferred_ran, 2u);
  EXPECT_FALSE(ran_inside_a_handler);
  b.loop.remove_owner(s1);
  b.loop.remove_owner(s2);
}

TEST(loop, posted_work_runs_on_the_loop_thread) {
  bounded_loop b;
  const auto loop_thread = std::this_thread::get_id();
  std::thread::id ran_on;
  int runs = 0;
  std::thread poster([&] {
    b.loop.post([&] {
      ran_on = std::this_thread::get_id();
      ++runs;
      b.loop.stop();
    });
  });
  ASSERT_TRUE(b.run());
  poster.join();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(ran_on, loop_thread);
  EXPECT_NE(ran_on, std::thread::id());
}

TEST(loop, tick_callbacks_fire_with_a_monotonic_clock) {
  bounded_loop b;
  std::vector<std::int64_t> times;
  b.loop.on_tick([&](std::int64_t now) {
    times.push_back(now);
    if (times.size() == 5) b.loop.stop();
  });
  ASSERT_TRUE(b.run());
  ASSERT_EQ(times.size(), 5u);
  for (std::size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i], times[i - 1]);
  EXPECT_GT(times.front(), 0);
}

TEST(loop, turn_end_callbacks_run_once_per_turn_after_completions) {
  bounded_loop b;
  std::vector<seen> log;
  recorder r("r", b.loop, log, 99);
  auto slot = b.loop.add_owner(&r);
  std::vector<std::size_t> completions_at_turn_end;
  b.loop.on_turn_end([&] {
    completions_at_turn_end.push_back(log.size());
    if (log.size() == 2) b.loop.stop();
  });
  submit_nop(b.loop, slot, 1);
  submit_nop(b.loop, slot, 2);
  ASSERT_TRUE(b.run());
  ASSERT_FALSE(completions_at_turn_end.empty());
  EXPECT_EQ(completions_at_turn_end.back(), 2u);
  b.loop.remove_owner(slot);
}

TEST(buffer_pool, a_buffer_returns_when_its_last_reference_goes_and_after_publish) {
  bounded_loop b;
  buffer_pool pool(b.loop.ring(), 3, 8, 4096);
  EXPECT_EQ(pool.count(), 8u);
  EXPECT_EQ(pool.size(), 4096u);
  EXPECT_EQ(pool.group(), 3);
  EXPECT_EQ(pool.available(), 8u);

  pool.taken(5);  // a recv completion picked buffer 5: one reference
  pool.taken(2);
  EXPECT_EQ(pool.available(), 6u);
  pool.ref(5);  // a spool write from it
  pool.ref(5);  // and a second one
  pool.unref(5);
  pool.unref(5);
  pool.publish();
  EXPECT_EQ(pool.available(), 6u) << "buffer 5 still has a user";
  pool.unref(5);  // the last user
  EXPECT_EQ(pool.available(), 6u) << "returned buffers count only once published";
  pool.publish();
  EXPECT_EQ(pool.available(), 7u);
  pool.unref(2);
  pool.publish();
  EXPECT_EQ(pool.available(), 8u);
  pool.publish();  // nothing returned: no change
  EXPECT_EQ(pool.available(), 8u);

  // The memory of a buffer is its own slice.
  EXPECT_EQ(pool.data(1, 10).data(), pool.data(0, 10).data() + 4096);
  EXPECT_EQ(pool.data(1, 10).size(), 10u);
}

TEST(buffer_pool, a_recv_completion_hands_out_a_buffer_holding_the_bytes) {
  bounded_loop b;
  buffer_pool pool(b.loop.ring(), 0, 4, 4096);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  const std::string sent = "EHLO client.test\r\n";
  ASSERT_EQ(::write(fds[1], sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));

  std::string got;
  int buffer = -1;
  struct catcher final : owner {
    void on_completion(std::uint8_t, const io_uring_cqe& cqe) override { fn(cqe); }
    std::function<void(const io_uring_cqe&)> fn;
  } c;
  c.fn = [&](const io_uring_cqe& cqe) {
    if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
      auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
      pool.taken(id);
      buffer = id;
      auto bytes = pool.data(id, static_cast<std::uint32_t>(cqe.res));
      got.assign(bytes.begin(), bytes.end());
    }
    b.loop.stop();
  };
  auto cslot = b.loop.add_owner(&c);
  io_uring_sqe* s = b.loop.sqe();
  io_uring_prep_recv(s, fds[0], nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = pool.group();
  io_uring_sqe_set_data64(s, b.loop.token(cslot, 1));
  ASSERT_TRUE(b.run());
  EXPECT_EQ(got, sent);
  ASSERT_GE(buffer, 0);
  EXPECT_EQ(pool.available(), 3u);
  pool.unref(static_cast<std::uint16_t>(buffer));
  pool.publish();
  EXPECT_EQ(pool.available(), 4u);
  b.loop.remove_owner(cslot);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace ringrelay::reactor
