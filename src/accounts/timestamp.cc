// accounts/timestamp — see the header for the contract.
#include <cstdio>
#include <ringrelay/accounts/timestamp.hh>

namespace ringrelay::accounts {
namespace {

constexpr std::int64_t max_seconds = 253402300799;  // 9999-12-31T23:59:59Z

// Reads exactly `n` digits at `pos` into `out`; false when they are not.
bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// The offset from UTC in seconds of the text after the seconds (and any
// fraction): "Z", "+HH:MM" or "-HH:MM", and nothing after it.
std::optional<std::int64_t> offset_seconds(std::string_view s) {
  if (s == "Z" || s == "z") return 0;
  int hours = 0;
  int minutes = 0;
  if (s.size() != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' || !digits(s, 1, 2, hours) ||
      !digits(s, 4, 2, minutes) || hours > 23 || minutes > 59)
    return std::nullopt;
  const std::int64_t off = hours * 3600 + minutes * 60;
  return s[0] == '+' ? off : -off;
}

}  // namespace

// Howard Hinnant's days_from_civil / civil_from_days, with floor division so
// dates before 1970 (and before year 0) work too: no time zone database, no
// locale, no timegm.
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

}  // namespace

bool leap(std::int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int days_in_month(std::int64_t y, int m) {
  constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : days[m - 1];
}

std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  y -= m <= 2;
  const std::int64_t era = floor_div(y, 400);
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, int& m, int& d) {
  z += 719468;
  const std::int64_t era = floor_div(z, 146097);
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  y = yoe + era * 400 + (m <= 2);
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(s, 0, 4, year) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, month) ||
      s[7] != '-' || !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
      !digits(s, 11, 2, hour) || s[13] != ':' || !digits(s, 14, 2, minute) || s[16] != ':' ||
      !digits(s, 17, 2, second))
    return std::nullopt;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
      hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    const std::size_t first = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == first) return std::nullopt;
  }
  const auto offset = offset_seconds(s.substr(pos));
  if (!offset) return std::nullopt;
  const std::int64_t t =
      days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - *offset;
  if (t < 0 || t > max_seconds) return std::nullopt;
  return t;
}

std::string format_rfc3339(std::int64_t t) {
  t = t < 0 ? 0 : t > max_seconds ? max_seconds : t;
  std::int64_t year = 0;
  int month = 0, day = 0;
  civil_from_days(t / 86400, year, month, day);
  const auto s = static_cast<int>(t % 86400);
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02dZ", static_cast<int>(year), month,
                day, s / 3600, s / 60 % 60, s % 60);
  return out;
}

}  // namespace ringrelay::accounts
