// app/shard — one shard: a pinned thread with its ring, receive buffers,
// spool log, SMTP server, listeners and delivery queue.
//
// Shards share only the immutable configuration. The main thread talks to
// a shard through its loop's mailbox (`loop::post`): stop, and later
// reload. A shard never blocks once its loop runs.
#pragma once

#include <memory>
#include <ringrelay/config/config.hh>
#include <thread>
#include <vector>

namespace ringrelay::app {

class shard {
 public:
  shard(unsigned index, std::shared_ptr<const config::server_config> cfg,
        std::vector<int> listen_fds);
  ~shard();

  // Starts the thread; returns once the shard has recovered its spool and
  // started its loop, or throws what went wrong there.
  void start();
  // Asks the shard to stop gracefully (any thread).
  void request_stop();
  void join();
  int exit_status() const { return _status; }

 private:
  struct state;
  void run();

  unsigned _index;
  std::shared_ptr<const config::server_config> _cfg;
  std::vector<int> _listen_fds;
  std::thread _thread;
  std::unique_ptr<state> _state;
  int _status = 0;
};

}  // namespace ringrelay::app
