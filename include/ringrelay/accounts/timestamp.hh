// accounts/timestamp — RFC 3339 date-times, as users.json writes them.
//
// `created_at` is stored as "2026-11-28T12:00:00Z"; ringrelayctl's
// `--created-at` takes any RFC 3339 date-time. Pure functions, any thread;
// a malformed text is reported as an empty optional.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringrelay::accounts {

// Unix seconds for an RFC 3339 section 5.6 date-time: "YYYY-MM-DDTHH:MM:SS"
// with an optional fraction (dropped) and "Z" or a "+HH:MM" / "-HH:MM"
// offset; "T" and "Z" may be lower case. A leap second (":60") counts as
// the next second. Years 1970 to 9999; nullopt for anything else.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

// Proleptic Gregorian calendar arithmetic (also used by the quota clock).
bool leap(std::int64_t year);
int days_in_month(std::int64_t year, int month);
// Days since 1970-01-01 of a date, and back; correct before 1970 too.
std::int64_t days_from_civil(std::int64_t year, int month, int day);
void civil_from_days(std::int64_t days, std::int64_t& year, int& month, int& day);

// "YYYY-MM-DDTHH:MM:SSZ" (UTC). Seconds outside 1970 to the end of 9999 are
// clamped to that range.
std::string format_rfc3339(std::int64_t unix_seconds);

}  // namespace ringrelay::accounts
