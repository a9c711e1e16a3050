// app/shard — one shard: a pinned thread with its ring, receive buffers,
// spool log, SMTP server, listeners and delivery queue.
//
// Shards share only the immutable configuration. The main thread talks to
// a shard through its loop's mailbox (`loop::post`): stop, and later
// reload. A shard never blocks once its loop runs.
#pragma once

#include <memory>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/auth/failure_limiter.hh>
#include <ringrelay/auth/verifier.hh>
#include <ringrelay/config/config.hh>
#include <thread>
#include <vector>

namespace ringrelay::app {

class shard {
 public:
  // `accounts` may be null (no accounts file: AUTH is not offered); then
  // `verifier` may be null too.
  shard(unsigned index, std::shared_ptr<const config::server_config> cfg,
        std::vector<int> listen_fds, std::shared_ptr<const accounts::table> accounts,
        auth::verifier* verifier, auth::shared_failure_limiter* limiter,
        const accounts::quota_clock* quota_clock);
  ~shard();

  // Starts the thread; returns once the shard has recovered its spool and
  // started its loop, or throws what went wrong there.
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

  unsigned _index;
  std::shared_ptr<const config::server_config> _cfg;
  std::vector<int> _listen_fds;
  std::shared_ptr<const accounts::table> _accounts;
  auth::verifier* _verifier;
  auth::shared_failure_limiter* _limiter;
  const accounts::quota_clock* _quota_clock;
  std::thread _thread;
  std::unique_ptr<state> _state;
  int _status = 0;
};

}  // namespace ringrelay::app
