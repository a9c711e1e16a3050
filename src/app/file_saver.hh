// app/file_saver — writes small files durably off a shard's thread.
//
// A shard must not block on write and fsync, so it hands a whole file to
// its saver: a thread that writes it with util::write_file_atomically and
// then posts `done` back to the shard's loop (loop::post), with "" on
// success or the error's text (a failed fsync of the directory is an error
// too: the file may not survive a crash). One file at a time: `busy()` is true from
// `save` until `done` has run, and the shard does not save again before.
//
// Threads: construct, `save`, `busy` and destroy on the shard's thread;
// `done` runs there too. The destructor waits for a write in progress; a
// `done` posted after the loop stopped never runs.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <ringrelay/reactor/loop.hh>
#include <string>
#include <thread>

namespace ringrelay::app {

class file_saver {
 public:
  using done_callback = std::function<void(const std::string& error)>;

  explicit file_saver(reactor::loop& loop);
  ~file_saver();
  file_saver(const file_saver&) = delete;
  file_saver& operator=(const file_saver&) = delete;

  bool busy() const { return _busy; }
  void save(std::string path, std::string contents, done_callback done);

 private:
  void run();

  reactor::loop& _loop;
  bool _busy = false;  // shard thread only
  std::mutex _mutex;
  std::condition_variable _wake;
  bool _stop = false;
  bool _pending = false;
  std::string _path;
  std::string _contents;
  done_callback _done;
  std::thread _thread;
};

}  // namespace ringrelay::app
