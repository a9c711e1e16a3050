#include "file_saver.hh"

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <ringrelay/util/file.hh>
#include <stdexcept>

namespace ringrelay::app {

file_saver::file_saver(reactor::loop& loop) : _loop(loop), _thread([this] { run(); }) {}

file_saver::~file_saver() {
  {
    std::lock_guard lock(_mutex);
    _stop = true;
  }
  _wake.notify_one();
  _thread.join();
}

void file_saver::save(std::string path, std::string contents, done_callback done) {
  _busy = true;
  {
    std::lock_guard lock(_mutex);
    _path = std::move(path);
    _contents = std::move(contents);
    _done = std::move(done);
    _pending = true;
  }
  _wake.notify_one();
}

void file_saver::run() {
  pthread_setname_np(pthread_self(), "saver");
  std::unique_lock lock(_mutex);
  for (;;) {
    _wake.wait(lock, [this] { return _stop || _pending; });
    if (!_pending) return;
    _pending = false;
    std::string path = std::move(_path);
    std::string contents = std::move(_contents);
    done_callback done = std::move(_done);
    lock.unlock();
    std::string error;
    try {
      if (!util::write_file_atomically(path, contents))
        error = path + ": written, but the fsync of its directory failed: " + std::strerror(errno);
    } catch (const std::exception& e) {
      error = e.what();
    }
    _loop.post([this, done = std::move(done), error = std::move(error)] {
      _busy = false;
      done(error);
    });
    lock.lock();
  }
}

}  // namespace ringrelay::app
