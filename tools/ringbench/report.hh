// ringbench/report — formatting of progress lines and summaries: numbers
// with thousands separators for people, a small JSON object builder for
// machines, and the signal/second pacing the main thread runs on.
//
// Main thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringrelay::ringbench {

// 1234567 -> "1,234,567".
std::string grouped(std::uint64_t n);
// Fixed-point with `decimals` digits and thousands separators.
std::string grouped(double v, int decimals);
// Nanoseconds as microseconds with one decimal when below 10 ms, else whole
// milliseconds: "812.4 us", "35 ms".
std::string duration_text(std::uint64_t ns);

// Builds one JSON object; values are appended in call order.
class json_object {
 public:
  json_object& add(std::string_view key, std::uint64_t v);
  json_object& add(std::string_view key, double v);
  json_object& add(std::string_view key, bool v);
  json_object& add(std::string_view key, std::string_view v);
  json_object& add(std::string_view key, const char* v) { return add(key, std::string_view(v)); }
  // A nested object or array, already JSON.
  json_object& add_raw(std::string_view key, std::string_view json);
  std::string str() const { return _text + "}"; }

 private:
  void key(std::string_view k);
  std::string _text = "{";
};

std::string json_string(std::string_view s);

// Blocks SIGINT and SIGTERM in this thread and every thread it starts
// later, so `wait_signal` alone takes them.
void block_stop_signals();
// Waits up to `timeout_ms` for SIGINT or SIGTERM; returns the signal, or 0
// on timeout.
int wait_signal(int timeout_ms);
// Seconds on the monotonic clock.
double now_s();

}  // namespace ringrelay::ringbench
