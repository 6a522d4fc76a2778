#pragma once
// The controller's log lines (interfaces.md, "log format text|json"):
// spdlog's text lines, "[2026-12-05 04:38:36.436] [info] message" in local
// time (the default), or one JSON object per line for log shippers,
// {"time":"2026-12-05T04:38:36.436Z","level":"info","message":"..."}.

#include <chrono>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tranche::api {

enum class LogFormat { kText, kJson };

// "text" or "json"; anything else is an error naming the setting.
Result<LogFormat> parse_log_format(std::string_view text);

// Every later line of spdlog's default logger in that format.
void use_log_format(LogFormat format);

// One line of the JSON format, its newline included. Bytes of the message
// that are not UTF-8 (a peer's words quoted in it) are replaced, so that
// every line parses.
std::string json_log_line(std::chrono::system_clock::time_point time, std::string_view level,
                          std::string_view message);

}  // namespace tranche::api
