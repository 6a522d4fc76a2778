#include "common/time_format.h"

#include <cstdio>
#include <ctime>

namespace tranche {

int64_t to_unix_millis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint from_unix_millis(int64_t ms) { return TimePoint{std::chrono::milliseconds{ms}}; }

std::string format_rfc3339(TimePoint t) {
  const int64_t ms = to_unix_millis(t);
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<int64_t>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

Result<TimePoint> parse_rfc3339(std::string_view text) {
  std::tm tm{};
  int millis = 0;
  const std::string s(text);
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &consumed) != 6) {
    return fail(ErrorCode::kInvalid, "not an RFC 3339 timestamp: " + s);
  }
  std::string_view rest = std::string_view(s).substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    int digits = 0;
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      if (digits < 3) {
        millis = millis * 10 + (rest.front() - '0');
      }
      ++digits;
      rest.remove_prefix(1);
    }
    for (; digits < 3; ++digits) {
      millis *= 10;
    }
  }
  if (rest != "Z") {
    return fail(ErrorCode::kInvalid, "timestamp must be UTC ending in Z: " + s);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const std::time_t secs = timegm(&tm);
  return from_unix_millis(static_cast<int64_t>(secs) * 1000 + millis);
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) {
    return fail(ErrorCode::kInvalid, "empty duration");
  }
  int64_t total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    int64_t number = 0;
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      number = number * 10 + (rest[digits] - '0');
      if (number > 1'000'000'000) {
        return fail(ErrorCode::kInvalid, "duration too long: " + std::string(text));
      }
      ++digits;
    }
    if (digits == 0) {
      return fail(ErrorCode::kInvalid, "bad duration '" + std::string(text) + "' (expected e.g. 30s, 5m, 2h, 1h30m)");
    }
    rest.remove_prefix(digits);
    int64_t unit_ms = 0;
    if (rest.starts_with("ms")) {
      unit_ms = 1;
      rest.remove_prefix(2);
    } else if (rest.starts_with("s")) {
      unit_ms = 1000;
      rest.remove_prefix(1);
    } else if (rest.starts_with("m")) {
      unit_ms = 60'000;
      rest.remove_prefix(1);
    } else if (rest.starts_with("h")) {
      unit_ms = 3'600'000;
      rest.remove_prefix(1);
    } else if (rest.starts_with("d")) {
      unit_ms = 86'400'000;
      rest.remove_prefix(1);
    } else {
      return fail(ErrorCode::kInvalid, "bad duration '" + std::string(text) + "' (units: ms, s, m, h, d)");
    }
    total += number * unit_ms;
  }
  if (total <= 0) {
    return fail(ErrorCode::kInvalid, "duration must be positive: " + std::string(text));
  }
  return std::chrono::milliseconds{total};
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms <= 0) {
    return "0s";
  }
  std::string out;
  const struct {
    int64_t size;
    const char* unit;
  } units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : units) {
    if (ms >= u.size) {
      out += std::to_string(ms / u.size) + u.unit;
      ms %= u.size;
    }
  }
  return out;
}

}  // namespace tranche
