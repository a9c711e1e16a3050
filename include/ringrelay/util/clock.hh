// util/clock — time sources.
//
// `monotonic_ms` for timeouts and delays, `wall_seconds` for queue times and
// headers. Both read the vDSO clock (no syscall); any thread.
#pragma once

#include <cstdint>

namespace ringrelay::util {

std::int64_t monotonic_ms();
std::int64_t wall_seconds();
std::int64_t wall_ms();

// RFC 5322 date-time in the local time zone, e.g.
// "Sat, 28 Nov 2026 20:40:40 +0000". Used by the Received header.
void format_rfc5322_date(std::int64_t wall_seconds, char (&out)[40]);

}  // namespace ringrelay::util
