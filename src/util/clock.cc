#include <ctime>
#include <ringrelay/util/clock.hh>

namespace ringrelay::util {

std::int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

std::int64_t wall_seconds() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

std::int64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

void format_rfc5322_date(std::int64_t wall, char (&out)[40]) {
  time_t t = static_cast<time_t>(wall);
  tm local;
  localtime_r(&t, &local);
  // %z is the numeric zone offset RFC 5322 3.3 asks for.
  strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S %z", &local);
}

}  // namespace ringrelay::util
