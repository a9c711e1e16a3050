// app/shard — one shard: a pinned thread with its ring, receive buffers,
// spool log, SMTP server, listeners and delivery queue.
//
// Shards share only the immutable configuration. The main thread talks to
// a shard through its loop's mailbox (`loop::post`): stop, and later
// reload. A shard never blocks once its loop runs.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/accounts/usage_ledger.hh>
#include <ringrelay/auth/failure_limiter.hh>
#include <ringrelay/auth/verifier.hh>
#include <ringrelay/config/config.hh>
#include <thread>
#include <vector>

namespace ringrelay::app {

// Holds every shard's listeners shut until all shards have added their
// recovered usage to the shared counters: a shard that took mail earlier
// would charge against counters still missing another shard's usage.
class startup_gate {
 public:
  explicit startup_gate(unsigned shards) : _waiting(shards) {}
  // A shard has restored its usage.
  void arrive();
  // Blocks until every shard arrived (true) or startup was abandoned (false).
  bool wait();
  // Startup failed: every waiting shard gives up.
  void abandon();

 private:
  std::mutex _mutex;
  std::condition_variable _changed;
  unsigned _waiting;
  bool _abandoned = false;
};

class shard {
 public:
  // `accounts` may be null (no accounts file: AUTH is not offered); then
  // `verifier` may be null too.
  shard(unsigned index, std::shared_ptr<const config::server_config> cfg,
        std::vector<int> listen_fds, std::shared_ptr<const accounts::table> accounts,
        auth::verifier* verifier, auth::shared_failure_limiter* limiter,
        const accounts::quota_clock* quota_clock, accounts::counter_store* counters,
        startup_gate* gate);
  ~shard();

  // Starts the thread; returns once the shard has recovered its spool and
  // its usage, or throws what went wrong there. It takes mail once every
  // shard has passed the gate.
  void start();
  // Asks the shard to stop gracefully (any thread).
  void request_stop();
  // Hands a reloaded account table to the shard (any thread).
  void set_accounts(std::shared_ptr<const accounts::table> table);
  void join();
  int exit_status() const { return _status; }

 private:
  struct state;
  void run();
  void restore_usage(const accounts::usage_ledger& ledger);

  unsigned _index;
  std::shared_ptr<const config::server_config> _cfg;
  std::vector<int> _listen_fds;
  std::shared_ptr<const accounts::table> _accounts;
  auth::verifier* _verifier;
  auth::shared_failure_limiter* _limiter;
  const accounts::quota_clock* _quota_clock;
  accounts::counter_store* _counters;
  startup_gate* _gate;
  std::thread _thread;
  std::unique_ptr<state> _state;
  int _status = 0;
};

}  // namespace ringrelay::app
