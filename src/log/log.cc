#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <ringrelay/log/log.hh>

namespace ringrelay::log {
namespace {

std::atomic<int> min_level{static_cast<int>(level::info)};
thread_local const char* thread_name = "main";
thread_local bool buffered = false;
thread_local std::string buffer;

constexpr const char* level_names[] = {"debug", "info", "warn", "error"};

}  // namespace

void set_level(level l) { min_level.store(static_cast<int>(l), std::memory_order_relaxed); }

bool enabled(level l) { return static_cast<int>(l) >= min_level.load(std::memory_order_relaxed); }

void set_thread_name(const char* name) { thread_name = name; }

void set_buffered(bool on) { buffered = on; }

std::string& pending() { return buffer; }

void write(level l, const char* fmt, ...) {
  char line[2048];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  int n = static_cast<int>(strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc));
  n += snprintf(line + n, sizeof line - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000, thread_name,
                level_names[static_cast<int>(l)]);
  va_list ap;
  va_start(ap, fmt);
  int body = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  // A line longer than the buffer is cut, never split: one event, one line.
  n = body < 0 ? n : std::min<int>(n + body, sizeof line - 2);
  line[n++] = '\n';
  if (buffered) {
    buffer.append(line, n);
    return;
  }
  ssize_t off = 0;
  while (off < n) {
    ssize_t w = ::write(2, line + off, n - off);
    if (w <= 0) break;
    off += w;
  }
}

}  // namespace ringrelay::log
