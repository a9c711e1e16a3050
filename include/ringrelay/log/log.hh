// log — one line per event, printf-style, to standard error.
//
// Every line starts with an ISO 8601 UTC timestamp, the shard (or "main")
// and the level, then the event's own "key=value" text; message events
// carry `id=QUEUEID` so a message can be traced by grepping its ID.
//
// Threads: any. On a shard thread the line goes to a thread-local buffer
// that the shard writes out through its ring once per loop turn (no
// blocking write on a shard); elsewhere it is written at once.
#pragma once

#include <string>

namespace ringrelay::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(level l);
bool enabled(level l);

// Names this thread in log lines ("main", "shard0", ...).
void set_thread_name(const char* name);

// Switches this thread to buffered output; `pending()` then holds the bytes
// to write and the caller clears what it wrote.
void set_buffered(bool on);
std::string& pending();

void write(level l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace ringrelay::log

#define RR_LOG(lvl, ...)                                                 \
  do {                                                                   \
    if (::ringrelay::log::enabled(::ringrelay::log::level::lvl))         \
      ::ringrelay::log::write(::ringrelay::log::level::lvl, __VA_ARGS__); \
  } while (0)
#define RR_DEBUG(...) RR_LOG(debug, __VA_ARGS__)
#define RR_INFO(...) RR_LOG(info, __VA_ARGS__)
#define RR_WARN(...) RR_LOG(warn, __VA_ARGS__)
#define RR_ERROR(...) RR_LOG(error, __VA_ARGS__)
