// The verifier pool: results come back through the submitting shard's post
// function and run on that shard's thread, under concurrency, with a
// bounded queue and a clean stop.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <ringrelay/auth/password.hh>
#include <ringrelay/auth/verifier.hh>
#include <string>
#include <thread>
#include <vector>

namespace ringrelay::auth {
namespace {

// A stand-in for a shard's loop: `post` queues a function from any
// thread; `run` executes them on the thread that calls it.
class fake_shard {
 public:
  // Notifies under the lock: the shard may be destroyed as soon as it has
  // run the last function, and the poster must not touch it after that.
  void post(std::function<void()> fn) {
    std::lock_guard lock(_mutex);
    _queue.push_back(std::move(fn));
    _cv.notify_one();
  }

  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> fn) { post(std::move(fn)); };
  }

  // Runs posted functions until `done` holds after one of them.
  void run_until(const std::function<bool()>& done) {
    while (!done()) {
      std::function<void()> fn;
      {
        std::unique_lock lock(_mutex);
        ASSERT_TRUE(_cv.wait_for(lock, std::chrono::seconds(60), [&] { return !_queue.empty(); }))
            << "no completion arrived";
        fn = std::move(_queue.front());
        _queue.pop_front();
      }
      fn();
    }
  }

  std::size_t pending() {
    std::lock_guard lock(_mutex);
    return _queue.size();
  }

 private:
  std::mutex _mutex;
  std::condition_variable _cv;
  std::deque<std::function<void()>> _queue;
};

const std::string alice_hash = hash_password("alice-pw", min_iterations);
const std::string bob_hash = hash_password("bob-pw", min_iterations);

TEST(verifier, delivers_results_through_the_shard) {
  verifier v(2, 16);
  fake_shard shard;
  struct row {
    std::string username, password, hash;
    verify_result expected;
  };
  const row rows[] = {
      {"alice", "alice-pw", alice_hash, verify_result::match},
      {"alice", "bob-pw", alice_hash, verify_result::mismatch},
      {"bob", "bob-pw", bob_hash, verify_result::match},
      {"nobody", "pw", "", verify_result::mismatch},  // no such account
      {"carol", "pw", "pbkdf2-sha256$1000$broken", verify_result::malformed},
  };
  std::vector<std::optional<verify_result>> got(std::size(rows));
  std::vector<std::thread::id> ran_on(std::size(rows));
  for (std::size_t i = 0; i < std::size(rows); ++i) {
    verify_job job{rows[i].username, rows[i].password, rows[i].hash, shard.poster(),
                   [&, i](verify_result r) {
                     got[i] = r;
                     ran_on[i] = std::this_thread::get_id();
                   }};
    ASSERT_TRUE(v.submit(std::move(job)));
  }
  std::size_t done = 0;
  shard.run_until([&] {
    done = 0;
    for (auto& g : got) done += g.has_value();
    return done == std::size(rows);
  });
  for (std::size_t i = 0; i < std::size(rows); ++i) {
    EXPECT_EQ(got[i], rows[i].expected) << rows[i].username;
    EXPECT_EQ(ran_on[i], std::this_thread::get_id()) << "completions run on the shard";
  }
}

TEST(verifier, many_shards_at_once) {
  constexpr int shards = 4;
  constexpr int jobs_per_shard = 25;
  verifier v(3, shards * jobs_per_shard);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < shards; ++s) {
    threads.emplace_back([&, s] {
      fake_shard shard;
      const auto me = std::this_thread::get_id();
      int delivered = 0;
      for (int j = 0; j < jobs_per_shard; ++j) {
        const bool right = (j + s) % 3 != 0;
        const auto expected = right ? verify_result::match : verify_result::mismatch;
        verify_job job{"alice", right ? "alice-pw" : "guess", alice_hash, shard.poster(),
                       [&, expected, me](verify_result r) {
                         if (r != expected || std::this_thread::get_id() != me) ++wrong;
                         ++delivered;
                       }};
        while (!v.submit(std::move(job))) std::this_thread::yield();
      }
      shard.run_until([&] { return delivered == jobs_per_shard; });
      EXPECT_EQ(shard.pending(), 0u) << "a completion was delivered twice";
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Holds the first job's worker inside `post` until released, so the
// queue behind it can be filled.
struct gate {
  std::promise<void> entered;
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  std::function<void(std::function<void()>)> poster(fake_shard& shard) {
    return [this, &shard](std::function<void()> fn) {
      entered.set_value();
      opened.wait();
      shard.post(std::move(fn));
    };
  }
};

TEST(verifier, bounded_queue) {
  verifier v(1, 2);
  fake_shard shard;
  gate g;
  int delivered = 0;
  auto count = [&](verify_result) { ++delivered; };
  ASSERT_TRUE(v.submit({"alice", "alice-pw", alice_hash, g.poster(shard), count}));
  g.entered.get_future().wait();  // the worker holds the first job
  EXPECT_TRUE(v.submit({"alice", "alice-pw", alice_hash, shard.poster(), count}));
  EXPECT_TRUE(v.submit({"alice", "alice-pw", alice_hash, shard.poster(), count}));
  EXPECT_EQ(v.queued(), 2u);
  verify_job refused{"alice", "alice-pw", alice_hash, shard.poster(), count};
  EXPECT_FALSE(v.submit(std::move(refused)));
  EXPECT_EQ(refused.password, "alice-pw") << "a refused job is left to its owner";
  EXPECT_TRUE(refused.completion);
  g.open.set_value();
  shard.run_until([&] { return delivered == 3; });
  EXPECT_EQ(v.queued(), 0u);
}

TEST(verifier, stop_drops_queued_jobs) {
  verifier v(1, 4);
  fake_shard shard;
  gate g;
  int delivered = 0;
  auto count = [&](verify_result) { ++delivered; };
  ASSERT_TRUE(v.submit({"alice", "alice-pw", alice_hash, g.poster(shard), count}));
  g.entered.get_future().wait();
  ASSERT_TRUE(v.submit({"alice", "alice-pw", alice_hash, shard.poster(), count}));
  ASSERT_TRUE(v.submit({"bob", "bob-pw", bob_hash, shard.poster(), count}));
  std::thread stopper([&] { v.stop(); });
  // stop() drops the queue before it waits for the worker.
  while (v.queued() != 0) std::this_thread::yield();
  g.open.set_value();
  stopper.join();
  shard.run_until([&] { return delivered == 1; });  // the job being hashed finishes
  EXPECT_EQ(shard.pending(), 0u);
  EXPECT_FALSE(v.submit({"alice", "alice-pw", alice_hash, shard.poster(), count}));
  v.stop();  // idempotent
}

TEST(verifier, zero_threads_and_capacity_still_work) {
  verifier v(0, 0);
  fake_shard shard;
  std::optional<verify_result> got;
  ASSERT_TRUE(
      v.submit({"bob", "bob-pw", bob_hash, shard.poster(), [&](verify_result r) { got = r; }}));
  shard.run_until([&] { return got.has_value(); });
  EXPECT_EQ(got, verify_result::match);
}

}  // namespace
}  // namespace ringrelay::auth
