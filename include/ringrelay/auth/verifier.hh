// auth/verifier — password verification off the shards (DESIGN.md §1).
//
// A PBKDF2 verification costs tens of milliseconds of CPU (auth/password.hh);
// a shard may not spend more than ~50 µs at a time. The verifier owns a few
// worker threads and a bounded queue of jobs. A shard submits a job with
// the credentials, the account's encoded hash and two functions of its own:
// `post`, which hands a function to the submitting shard (the shard passes
// its reactor::loop::post, which wakes the ring), and `completion`, which
// the worker sends back through `post` with the result, so the completion
// runs on the shard that asked.
//
// The intended AUTH path on a shard (the session glue does this):
//   1. account = table.find(username); disabled accounts count as absent;
//   2. key = cache.make_key(username, password, hash); if cache.lookup(key)
//      → 235 at once (auth/verification_cache.hh);
//   3. else submit({username, password, hash or "" when absent, post,
//      completion}); if submit returns false (queue full) → 454 4.7.0;
//   4. the completion, on the shard: match → cache.insert(key), 235;
//      else → failure_limiter, 535 5.7.8 (same for all non-matches).
// The completion must find its session by a handle that detects a closed
// connection (slot + generation): the session may be gone by then.
//
// Unknown users: a job with an empty `encoded_hash` spends the time of a
// verification at default_iterations and reports a mismatch, so a wrong
// username and a wrong password take the same time (SPEC.md §3).
//
// Threads: `submit` from any thread (shards); it takes the queue's mutex
// for a move and a notify, never for the hashing. `stop` and the
// destructor from the thread that owns the verifier, after which no
// `post` is called: stop the verifier before the loops it posts to are
// destroyed. Jobs still queued at stop are dropped without their
// completion (the shards are going away too). Errors: `submit` returns
// false when the queue is full or the verifier is stopped; a malformed
// stored hash is reported as verify_result::malformed and logged.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <ringrelay/auth/password.hh>
#include <string>
#include <thread>
#include <vector>

namespace ringrelay::auth {

struct verify_job {
  std::string username;      // for the log line of a malformed hash
  std::string password;      // zeroed by the worker once used
  std::string encoded_hash;  // the account's; "" when there is no such account
  // Delivers a function to the submitting shard; called once, from a
  // worker thread.
  std::function<void(std::function<void()>)> post;
  // Runs on the submitting shard (through `post`) with the result.
  std::function<void(verify_result)> completion;
};

class verifier {
 public:
  // Starts `threads` workers (at least 1) named "auth0", "auth1", ...;
  // at most `queue_capacity` jobs wait at a time. Throws std::system_error
  // when a thread cannot be started (startup).
  verifier(unsigned threads, std::size_t queue_capacity);
  ~verifier();
  verifier(const verifier&) = delete;
  verifier& operator=(const verifier&) = delete;

  // Queues the job (moving from it). Returns false, leaving `job` as it
  // was, when the queue is full or the verifier is stopped.
  bool submit(verify_job&& job);

  // Finishes the jobs being hashed, drops the queued ones and joins the
  // workers. Idempotent.
  void stop();

  // Jobs waiting for a worker (not counting those being hashed).
  std::size_t queued() const;

 private:
  void work(unsigned index);
  static void run(verify_job& job);

  mutable std::mutex _mutex;
  std::condition_variable _wake;
  std::vector<verify_job> _ring;  // the bounded queue: a ring of _ring.size() jobs
  std::size_t _head = 0;
  std::size_t _count = 0;
  bool _stopping = false;
  std::vector<std::thread> _threads;
};

}  // namespace ringrelay::auth
