#include "report.hh"

#include <signal.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace ringrelay::ringbench {

std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string grouped(double v, int decimals) {
  if (!std::isfinite(v) || v < 0) v = 0;
  double scale = std::pow(10.0, decimals);
  auto fixed = static_cast<std::uint64_t>(std::llround(v * scale));
  auto scale_int = static_cast<std::uint64_t>(scale);
  std::string out = grouped(fixed / scale_int);
  if (decimals > 0) {
    std::string frac = std::to_string(fixed % scale_int);
    out.push_back('.');
    out.append(static_cast<std::size_t>(decimals) - frac.size(), '0').append(frac);
  }
  return out;
}

std::string duration_text(std::uint64_t ns) {
  char buf[64];
  if (ns < 10'000'000)
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f ms", static_cast<double>(ns) / 1e6);
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

void json_object::key(std::string_view k) {
  if (_text.size() > 1) _text.push_back(',');
  _text += json_string(k);
  _text.push_back(':');
}

json_object& json_object::add(std::string_view k, std::uint64_t v) {
  key(k);
  _text += std::to_string(v);
  return *this;
}

json_object& json_object::add(std::string_view k, double v) {
  key(k);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", std::isfinite(v) ? v : 0.0);
  _text += buf;
  return *this;
}

json_object& json_object::add(std::string_view k, bool v) {
  key(k);
  _text += v ? "true" : "false";
  return *this;
}

json_object& json_object::add(std::string_view k, std::string_view v) {
  key(k);
  _text += json_string(v);
  return *this;
}

json_object& json_object::add_raw(std::string_view k, std::string_view json) {
  key(k);
  _text += json;
  return *this;
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int wait_signal(int timeout_ms) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
  for (;;) {
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno == EAGAIN) return 0;
    // EINTR: another signal (e.g. SIGWINCH); the remaining time is close
    // enough to the full one for a once-a-second pacing.
  }
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace ringrelay::ringbench
