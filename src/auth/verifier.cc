// auth/verifier — see the header for the contract.
#include <pthread.h>

#include <ringrelay/auth/verifier.hh>
#include <ringrelay/log/log.hh>
#include <string>
#include <utility>

#include "secure.hh"

namespace ringrelay::auth {

verifier::verifier(unsigned threads, std::size_t queue_capacity)
    : _ring(queue_capacity == 0 ? 1 : queue_capacity) {
  if (threads == 0) threads = 1;
  _threads.reserve(threads);
  try {
    for (unsigned i = 0; i < threads; ++i) _threads.emplace_back([this, i] { work(i); });
  } catch (...) {
    stop();
    throw;
  }
}

verifier::~verifier() {
  stop();
}

bool verifier::submit(verify_job&& job) {
  {
    std::lock_guard lock(_mutex);
    if (_stopping || _count == _ring.size()) return false;
    _ring[(_head + _count) % _ring.size()] = std::move(job);
    ++_count;
  }
  _wake.notify_one();
  return true;
}

void verifier::stop() {
  {
    std::lock_guard lock(_mutex);
    _stopping = true;
    // Dropped jobs hold passwords: zero them on the way out.
    for (; _count > 0; --_count) {
      auto& job = _ring[_head];
      detail::wipe(job.password);
      job = {};
      _head = (_head + 1) % _ring.size();
    }
  }
  _wake.notify_all();
  for (auto& t : _threads)
    if (t.joinable()) t.join();
  _threads.clear();
}

std::size_t verifier::queued() const {
  std::lock_guard lock(_mutex);
  return _count;
}

void verifier::work(unsigned index) {
  const std::string name = "auth" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.c_str());
  log::set_thread_name(name.c_str());
  for (;;) {
    verify_job job;
    {
      std::unique_lock lock(_mutex);
      _wake.wait(lock, [this] { return _stopping || _count > 0; });
      if (_stopping) return;
      job = std::move(_ring[_head]);
      detail::wipe(_ring[_head].password);  // a short password stays in a moved-from string
      _head = (_head + 1) % _ring.size();
      --_count;
    }
    run(job);
  }
}

void verifier::run(verify_job& job) {
  verify_result r = verify_result::mismatch;
  if (job.encoded_hash.empty()) {
    dummy_verification(job.password);
  } else {
    r = verify_password(job.password, job.encoded_hash);
    if (r == verify_result::malformed)
      RR_ERROR(
          "auth user=%s: the stored password hash is malformed; reset it with "
          "ringrelayctl user passwd",
          job.username.c_str());
  }
  detail::wipe(job.password);
  // The completion is copied into the posted function: std::function
  // needs a copyable target, and the job dies with this frame.
  job.post([completion = std::move(job.completion), r] { completion(r); });
}

}  // namespace ringrelay::auth
