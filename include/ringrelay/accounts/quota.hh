// accounts/quota — the quota's day: day numbers and reset times in the
// configured time zone.
//
// The daily quota resets at 00:00 in one time zone, UTC unless configured
// (SPEC.md §5). A `quota_clock` turns Unix seconds into the day number that
// counter_slot's usage word carries (days since 1970-01-01, local time) and
// into the time of the next reset, which the 452 reply names. It reads no
// clock: callers pass the time in, so tests inject any instant.
//
// A zone other than "UTC" comes from the system's TZif file
// (/usr/share/zoneinfo/<name>, RFC 8536), read and checked once at startup:
// its transitions, then its footer's POSIX TZ rule, expanded for 400 years
// (after which the Gregorian calendar, weekdays included, repeats exactly)
// so any later instant maps into that table. No TZ environment variable,
// no tzset, no localtime_r: those share process state and are not safe on
// shards. (std::chrono::locate_zone would do this, but GCC 12's libstdc++
// does not have it.)
//
// The domain is 1970 to about the year 47,000 (day numbers fit the usage
// word's 24 bits); instants outside it are clamped. A local midnight that a
// clock change skips (the day starts at 01:00) resets at the change. A
// clock set back across midnight would show the previous day again for a
// while; counters never move a usage word back a day, so the quota still
// resets once.
//
// Threads: `load` and `from_tzif` are startup code (they read a file,
// allocate and throw). A built clock is immutable: any thread may use it
// at once, and its queries never allocate except `format`.
//
// Errors: `load` and `from_tzif` throw config::config_error naming the zone
// and what is wrong with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::accounts {

class quota_clock {
 public:
  // UTC.
  quota_clock();

  // The zone named `zone`: "UTC", or an IANA name ("Europe/Berlin") read
  // from `zoneinfo`/<zone>.
  static quota_clock load(std::string_view zone,
                          const std::string& zoneinfo = "/usr/share/zoneinfo");
  // The zone `zone` from the contents of its TZif file.
  static quota_clock from_tzif(std::string_view zone, std::string_view tzif);

  const std::string& zone() const { return _zone; }
  // Seconds east of UTC at `unix_seconds`.
  std::int32_t utc_offset(std::int64_t unix_seconds) const;
  // The local day of `unix_seconds`, as days since 1970-01-01.
  std::uint32_t day_number(std::int64_t unix_seconds) const;
  // The first instant after `unix_seconds` that has a later day number.
  std::int64_t next_reset(std::int64_t unix_seconds) const;
  // "2026-11-29T00:00:00+01:00": RFC 3339 in the zone's local time.
  std::string format(std::int64_t unix_seconds) const;

 private:
  struct segment {
    std::int32_t offset;  // seconds east of UTC
    std::int64_t end;     // the next change, or INT64_MAX
  };
  segment segment_at(std::int64_t unix_seconds) const;

  std::string _zone = "UTC";
  std::int32_t _first_offset = 0;     // before _at.front()
  std::vector<std::int64_t> _at;      // instants of offset changes, ascending
  std::vector<std::int32_t> _offset;  // the offset from _at[i] on
  // From here on the offsets repeat every 400 Gregorian years; _at runs
  // past _cycle_start + one cycle, so every instant maps into the table.
  std::int64_t _cycle_start = INT64_MAX;
};

}  // namespace ringrelay::accounts
