// accounts/quota — see the header for the contract.
//
// TZif is RFC 8536: a header of six counts, a data block (version 1 with
// 32-bit times), and from version 2 on a second header and data block with
// 64-bit times, then a footer "\n<POSIX TZ string>\n" that governs every
// instant after the last transition. Only the UTC offsets matter here (not
// abbreviations or the DST flag), so the table keeps offset changes alone.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/config/config.hh>

namespace ringrelay::accounts {
namespace {

constexpr std::int64_t day_seconds = 86400;
// 400 Gregorian years: 146,097 days, a whole number of weeks, so every
// POSIX rule ("the last Sunday of March") repeats exactly after it.
constexpr std::int64_t cycle_seconds = 146097 * day_seconds;
// Every instant is clamped to ±2^50 s (35 million years, far past max_day),
// so no sum below can overflow.
constexpr std::int64_t time_limit = std::int64_t{1} << 50;
constexpr std::size_t max_tzif_size = 1 << 20;  // tzdata's largest is under 10 KB
// RFC 8536 §3.2: a UTC offset is within -24:59:59 to +25:59:59.
constexpr std::int32_t min_offset = -89999;
constexpr std::int32_t max_offset = 93599;

[[noreturn]] void fail(std::string_view zone, const std::string& why) {
  throw config::config_error("time zone \"" + std::string(zone) + "\": " + why);
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

// ---- POSIX TZ strings (RFC 8536 §3.3.1, with its hour range of ±167) ----

// When in a year a change happens: "Jn" (1 to 365, February 29 never
// counted), "n" (0 to 365, counted) or "Mm.w.d" (day d of week w of month
// m, week 5 = the last), at `time` seconds of local time (default 02:00).
struct rule_date {
  char kind = 'M';
  int day = 0;  // Jn / n
  int month = 0, week = 0, weekday = 0;
  std::int32_t time = 7200;
};

struct posix_tz {
  std::int32_t std_offset = 0;  // seconds east of UTC
  bool dst = false;
  std::int32_t dst_offset = 0;
  rule_date start, end;  // DST starts at `start` (standard time), ends at `end` (DST)
};

class tz_parser {
 public:
  explicit tz_parser(std::string_view s) : _s(s) {}

  std::optional<posix_tz> parse() {
    posix_tz tz;
    std::int32_t west = 0;
    if (!name() || !hms(west, 24)) return std::nullopt;
    tz.std_offset = -west;
    if (done()) return tz;
    tz.dst = true;
    if (!name()) return std::nullopt;
    tz.dst_offset = tz.std_offset + 3600;
    if (!done() && peek() != ',') {
      if (!hms(west, 24)) return std::nullopt;
      tz.dst_offset = -west;
    }
    if (done()) {
      // No rule: POSIX leaves it to the implementation; glibc and tzcode
      // use the US rule, "M3.2.0,M11.1.0".
      tz.start = {.month = 3, .week = 2};
      tz.end = {.month = 11, .week = 1};
      return tz;
    }
    if (!eat(',') || !date(tz.start) || !eat(',') || !date(tz.end) || !done()) return std::nullopt;
    return tz;
  }

 private:
  bool done() const { return _pos == _s.size(); }
  char peek() const { return done() ? '\0' : _s[_pos]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++_pos;
    return true;
  }
  static bool alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool digit(char c) { return c >= '0' && c <= '9'; }

  // "CET", or "<+0530>" (letters, digits, '+' and '-'), at least 3 long.
  bool name() {
    const std::size_t first = _pos;
    if (eat('<')) {
      while (alpha(peek()) || digit(peek()) || peek() == '+' || peek() == '-') ++_pos;
      return _pos - first - 1 >= 3 && eat('>');
    }
    while (alpha(peek())) ++_pos;
    return _pos - first >= 3;
  }

  // Up to `digits` decimal digits, at most `max`.
  bool number(int& out, int digits, int max) {
    const std::size_t first = _pos;
    out = 0;
    while (digit(peek()) && _pos - first < static_cast<std::size_t>(digits))
      out = out * 10 + (_s[_pos++] - '0');
    return _pos > first && out <= max;
  }

  // [+-]hh[:mm[:ss]] as seconds.
  bool hms(std::int32_t& out, int max_hours) {
    const bool minus = eat('-');
    if (!minus) eat('+');
    int h = 0, m = 0, s = 0;
    if (!number(h, 3, max_hours)) return false;
    if (eat(':') && (!number(m, 2, 59) || (eat(':') && !number(s, 2, 59)))) return false;
    out = (h * 3600 + m * 60 + s) * (minus ? -1 : 1);
    return true;
  }

  bool date(rule_date& r) {
    if (eat('J')) {
      r.kind = 'J';
      if (!number(r.day, 3, 365) || r.day < 1) return false;
    } else if (eat('M')) {
      r.kind = 'M';
      if (!number(r.month, 2, 12) || r.month < 1 || !eat('.') || !number(r.week, 1, 5) ||
          r.week < 1 || !eat('.') || !number(r.weekday, 1, 6))
        return false;
    } else {
      r.kind = 'n';
      if (!number(r.day, 3, 365)) return false;
    }
    return !eat('/') || hms(r.time, 167);
  }

  std::string_view _s;
  std::size_t _pos = 0;
};

// The local day (days since 1970-01-01) on which `r` falls in year `y`.
std::int64_t rule_day(const rule_date& r, std::int64_t y) {
  if (r.kind == 'J') return days_from_civil(y, 1, 1) + r.day - 1 + (leap(y) && r.day >= 60);
  if (r.kind == 'n') return days_from_civil(y, 1, 1) + r.day;
  const std::int64_t first = days_from_civil(y, r.month, 1);
  const std::int64_t first_weekday = (first % 7 + 7 + 4) % 7;  // 1970-01-01 was a Thursday
  std::int64_t day = first + (r.weekday - first_weekday + 7) % 7 + 7 * (r.week - 1);
  while (day >= first + days_in_month(y, r.month)) day -= 7;
  return day;
}

// ---- TZif ----

struct tzif_counts {
  std::uint64_t isut = 0, isstd = 0, leap = 0, time = 0, type = 0, chars = 0;

  // The size of a data block with `time_size`-byte times. The counts are
  // 32-bit, so this cannot overflow.
  std::uint64_t block(std::uint64_t time_size) const {
    return time * time_size + time + type * 6 + chars + leap * (time_size + 4) + isstd + isut;
  }
};

// A zone's offsets: before the first change, then from each change on.
struct tzif_table {
  std::int32_t first_offset = 0;
  std::vector<std::int64_t> at;
  std::vector<std::int32_t> offset;
  std::string_view footer;
  // The file's last transition, even one that changed only the DST flag
  // or abbreviation (so it is not in `at`): the footer governs after it.
  std::optional<std::int64_t> last;
  std::int64_t cycle_start = INT64_MAX;  // see quota_clock::_cycle_start
};

std::uint64_t big_endian(std::string_view bytes) {
  std::uint64_t v = 0;
  for (const char c : bytes) v = v << 8 | static_cast<unsigned char>(c);
  return v;
}

std::int64_t signed_big_endian(std::string_view bytes) {
  const std::uint64_t v = big_endian(bytes);
  return bytes.size() == 4 ? std::int64_t{static_cast<std::int32_t>(v)}
                           : static_cast<std::int64_t>(v);
}

// Reads a header off the front of `in` and checks that the data block after
// it, with `time_size`-byte times, is all there; returns what is wrong, or "".
std::string read_header(std::string_view& in, std::uint64_t time_size, char& version,
                        tzif_counts& c) {
  if (in.size() < 44) return "truncated TZif header";
  if (in.substr(0, 4) != "TZif") return "not a TZif file";
  version = in[4];
  if (version != '\0' && (version < '2' || version > '4'))
    return "unknown TZif version " + std::to_string(static_cast<unsigned char>(version));
  c = {big_endian(in.substr(20, 4)), big_endian(in.substr(24, 4)), big_endian(in.substr(28, 4)),
       big_endian(in.substr(32, 4)), big_endian(in.substr(36, 4)), big_endian(in.substr(40, 4))};
  in.remove_prefix(44);
  if (c.type == 0 || c.chars == 0) return "no local time types";
  if ((c.isut != 0 && c.isut != c.type) || (c.isstd != 0 && c.isstd != c.type))
    return "inconsistent counts";
  if (c.leap != 0) return "leap-second (\"right/\") zones are not supported";
  if (c.block(time_size) > in.size()) return "truncated TZif data";
  return "";
}

// Reads a data block off the front of `in` into `t`; returns what is
// wrong, or "".
std::string read_block(std::string_view& in, const tzif_counts& c, std::size_t time_size,
                       tzif_table& t) {
  const std::string_view times = in.substr(0, c.time * time_size);
  const std::string_view indices = in.substr(times.size(), c.time);
  const std::string_view types = in.substr(times.size() + indices.size(), c.type * 6);
  in.remove_prefix(c.block(time_size));
  std::vector<std::int32_t> offsets;
  for (std::size_t i = 0; i < c.type; ++i) {
    const std::string_view type = types.substr(i * 6, 6);
    const auto offset = static_cast<std::int32_t>(big_endian(type.substr(0, 4)));
    if (offset < min_offset || offset > max_offset) return "UTC offset out of range";
    if (static_cast<unsigned char>(type[4]) > 1 || big_endian(type.substr(5, 1)) >= c.chars)
      return "bad local time type";
    offsets.push_back(offset);
  }
  t = tzif_table{};
  t.first_offset = offsets[0];
  for (std::size_t i = 0; i < c.time; ++i) {
    const std::int64_t at = signed_big_endian(times.substr(i * time_size, time_size));
    const auto type = static_cast<unsigned char>(indices[i]);
    if (type >= c.type) return "transition to a missing local time type";
    if (i > 0 && at <= signed_big_endian(times.substr((i - 1) * time_size, time_size)))
      return "transition times not ascending";
    t.last = std::clamp(at, -time_limit, time_limit);
    const std::int32_t current = t.offset.empty() ? t.first_offset : t.offset.back();
    if (offsets[type] == current) continue;  // only the abbreviation or DST flag changed
    t.at.push_back(std::clamp(at, -time_limit, time_limit));
    t.offset.push_back(offsets[type]);
  }
  return "";
}

tzif_table parse_tzif(std::string_view zone, std::string_view in) {
  if (in.size() > max_tzif_size) fail(zone, "TZif file larger than 1 MiB");
  char version = 0;
  tzif_counts counts;
  tzif_table table;
  std::string why = read_header(in, 4, version, counts);
  if (why.empty() && version != '\0') {
    // Version 2+: skip the 32-bit block; the 64-bit one repeats it in full.
    in.remove_prefix(counts.block(4));
    why = read_header(in, 8, version, counts);
  }
  if (why.empty()) why = read_block(in, counts, version == '\0' ? 4 : 8, table);
  if (why.empty() && version != '\0') {
    const std::size_t end = in.find('\n', 1);
    if (in.empty() || in[0] != '\n' || end == std::string_view::npos || end + 1 != in.size())
      why = "bad TZif footer";
    else
      table.footer = in.substr(1, end - 1);
  }
  if (!why.empty()) fail(zone, why);
  return table;
}

// Adds the offset changes of `tz`'s rule after the table's last transition
// (RFC 8536 §3.2: the footer governs there, and everywhere when there is no
// transition). With DST, the rule is expanded from the year before for 405
// years, so the table holds every change of the 400-year cycle that starts
// two years after the last transition, and then some.
void follow_rule(tzif_table& t, const posix_tz& tz) {
  const std::int64_t last = t.last.value_or(-time_limit);
  std::int64_t first_year = 0;
  int month = 0, day = 0;
  civil_from_days(floor_div(std::max<std::int64_t>(last, -day_seconds), day_seconds), first_year,
                  month, day);
  struct change {
    std::int64_t at;
    std::int32_t offset;
  };
  std::vector<change> changes;
  for (std::int64_t y = first_year - 1; tz.dst && y < first_year + 404; ++y) {
    changes.push_back(
        {rule_day(tz.start, y) * day_seconds + tz.start.time - tz.std_offset, tz.dst_offset});
    changes.push_back(
        {rule_day(tz.end, y) * day_seconds + tz.end.time - tz.dst_offset, tz.std_offset});
  }
  // Stable: when a year's end and the next year's start coincide (a rule
  // for DST all year), the later year's change is the one that holds.
  std::stable_sort(changes.begin(), changes.end(),
                   [](const change& a, const change& b) { return a.at < b.at; });
  // The rule's offset just after the last transition. tzdata's files agree
  // with their last transition there, but nothing forces a file to.
  std::int32_t after_last = tz.std_offset;
  for (const change& c : changes)
    if (c.at <= last) after_last = c.offset;
  if (!t.last) {
    t.first_offset = after_last;
  } else if ((t.offset.empty() ? t.first_offset : t.offset.back()) != after_last) {
    t.at.push_back(last + 1);
    t.offset.push_back(after_last);
  }
  for (const change& c : changes) {
    if (c.at <= last) continue;
    // A change at the same instant as one before it replaces it.
    while (!t.at.empty() && t.at.back() >= c.at && t.at.back() > last) {
      t.at.pop_back();
      t.offset.pop_back();
    }
    if (c.offset == (t.offset.empty() ? t.first_offset : t.offset.back())) continue;
    t.at.push_back(c.at);
    t.offset.push_back(c.offset);
  }
  if (tz.dst) t.cycle_start = days_from_civil(first_year + 2, 1, 1) * day_seconds;
}

// Zone names as the IANA database writes them: "Europe/Berlin",
// "America/Argentina/Buenos_Aires", "Etc/GMT+5". No "." or ".."
// components and no leading "/", so the name cannot leave the directory.
bool zone_name_ok(std::string_view zone) {
  if (zone.empty() || zone.size() > 255) return false;
  std::size_t start = 0;
  while (start <= zone.size()) {
    const std::size_t slash = std::min(zone.find('/', start), zone.size());
    const std::string_view part = zone.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (const char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '+' &&
          c != '.')
        return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

quota_clock::quota_clock() = default;

quota_clock quota_clock::load(std::string_view zone, const std::string& zoneinfo) {
  if (zone == "UTC") return quota_clock();
  if (!zone_name_ok(zone))
    fail(zone,
         "not a time zone name (expected an IANA name such as \"Europe/Berlin\", or \"UTC\")");
  const std::string path = zoneinfo + "/" + std::string(zone);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    fail(zone, "no such zone: " + path + " is not a file (expected an IANA name such as " +
                   "\"Europe/Berlin\", or \"UTC\"; is the tzdata package installed?)");
  std::ifstream file(path, std::ios::binary);
  std::string bytes;
  bytes.resize(max_tzif_size + 1);
  file.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (file.bad() || (!file.eof() && !file.good())) fail(zone, "cannot read " + path);
  bytes.resize(static_cast<std::size_t>(file.gcount()));
  return from_tzif(zone, bytes);
}

quota_clock quota_clock::from_tzif(std::string_view zone, std::string_view tzif) {
  tzif_table table = parse_tzif(zone, tzif);
  if (!table.footer.empty()) {
    const auto tz = tz_parser(table.footer).parse();
    if (!tz)
      fail(zone, "bad POSIX TZ string \"" + std::string(table.footer) + "\" in the TZif footer");
    if (tz->std_offset < min_offset || tz->std_offset > max_offset || tz->dst_offset < min_offset ||
        tz->dst_offset > max_offset)
      fail(zone, "UTC offset out of range in the TZif footer");
    follow_rule(table, *tz);
  }
  quota_clock clock;
  clock._zone = zone;
  clock._first_offset = table.first_offset;
  clock._at = std::move(table.at);
  clock._offset = std::move(table.offset);
  clock._cycle_start = table.cycle_start;
  return clock;
}

quota_clock::segment quota_clock::segment_at(std::int64_t t) const {
  t = std::clamp(t, -time_limit, time_limit);
  std::int64_t shift = 0;
  if (t >= _cycle_start) {
    shift = (t - _cycle_start) / cycle_seconds * cycle_seconds;
    t -= shift;
  }
  const auto next = std::upper_bound(_at.begin(), _at.end(), t);
  const std::size_t i = static_cast<std::size_t>(next - _at.begin());
  return {i == 0 ? _first_offset : _offset[i - 1], next == _at.end() ? INT64_MAX : *next + shift};
}

std::int32_t quota_clock::utc_offset(std::int64_t unix_seconds) const {
  return segment_at(unix_seconds).offset;
}

std::uint32_t quota_clock::day_number(std::int64_t unix_seconds) const {
  const std::int64_t t = std::clamp(unix_seconds, -time_limit, time_limit);
  const std::int64_t day = floor_div(t + utc_offset(t), day_seconds);
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(day, 0, max_day));
}

std::int64_t quota_clock::next_reset(std::int64_t unix_seconds) const {
  const std::uint32_t day = day_number(unix_seconds);
  if (day == max_day) return INT64_MAX;
  // The first instant whose local time reaches the next day's 00:00: in
  // each stretch of one offset that is the local midnight, unless a change
  // jumps past it first (then the change itself starts the day).
  const std::int64_t midnight = (std::int64_t{day} + 1) * day_seconds;
  std::int64_t at = std::clamp(unix_seconds, -time_limit, time_limit);
  for (;;) {
    const segment s = segment_at(at);
    const std::int64_t reset = midnight - s.offset;
    if (reset <= at) return at;
    if (reset < s.end) return reset;
    at = s.end;
  }
}

std::string quota_clock::format(std::int64_t unix_seconds) const {
  const std::int64_t t = std::clamp(unix_seconds, -time_limit, time_limit);
  const std::int32_t offset = utc_offset(t);
  const std::int64_t local = t + offset;
  std::int64_t year = 0;
  int month = 0, day = 0;
  civil_from_days(floor_div(local, day_seconds), year, month, day);
  const auto s = static_cast<int>(local - floor_div(local, day_seconds) * day_seconds);
  const int east = offset < 0 ? -offset : offset;
  char out[80];
  std::snprintf(out, sizeof out, "%04lld-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
                static_cast<long long>(year), month, day, s / 3600, s / 60 % 60, s % 60,
                offset < 0 ? '-' : '+', east / 3600, east / 60 % 60);
  return out;
}

}  // namespace ringrelay::accounts
