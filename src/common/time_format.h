#pragma once
// RFC 3339 timestamps for the API and durations like "2h", "90s", "1h30m"
// for time-boxed settings and configuration.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/error.h"

namespace tranche {

// "2026-11-23T17:53:04.123Z" (UTC, millisecond precision).
std::string format_rfc3339(TimePoint t);
Result<TimePoint> parse_rfc3339(std::string_view text);

// Milliseconds since the Unix epoch: how the store keeps time.
int64_t to_unix_millis(TimePoint t);
TimePoint from_unix_millis(int64_t ms);

// Accepts a sequence of <number><unit> with units ms, s, m, h, d: "2h",
// "1h30m", "500ms". Rejects zero, negative and unitless values.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// The shortest form parse_duration reads back: "1h30m", "5s", "250ms".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace tranche
