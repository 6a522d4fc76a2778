#pragma once
// tranche-loadgen's command line, parsed without side effects so the unit
// tests can check every rule.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tranche::loadgen {

struct Target {
  std::string address;  // numeric loopback address to connect to: "127.0.0.1", "::1"
  uint16_t port = 80;
  std::string host_header;  // "127.0.0.1:8080", as the URL spelled it
  std::string path = "/";   // with its query string
};

struct Options {
  Target target;
  int connections = 4;              // keep-alive connections
  double keep_alive_rate = 50;      // requests per second on each keep-alive connection
  double new_connection_rate = 10;  // requests per second, each on a fresh connection
  double slow_rate = 0;             // requests per second to slow_path, each on a fresh connection
  std::string slow_path = "/slow?ms=1000";
  std::string phase_file;  // its first line names the phase requests are counted under
  std::chrono::milliseconds duration{60'000};
  std::string stop_file;  // stop once this path exists
  std::chrono::milliseconds timeout{2'000};
  std::chrono::milliseconds interval{1'000};
  bool json = false;
  bool help = false;
};

// Limits that keep a run bounded in time, memory and file descriptors.
inline constexpr int kMaxConnections = 1000;
inline constexpr double kMaxRate = 10'000;
inline constexpr std::chrono::milliseconds kMaxDuration{3'600'000};
inline constexpr std::chrono::milliseconds kMinInterval{100};
inline constexpr size_t kMaxPhaseLength = 32;

extern const char* const kUsage;

// "http://HOST[:PORT][/PATH]" with HOST a loopback address (127.0.0.0/8,
// localhost, [::1]); any other host is refused.
Result<Target> parse_url(std::string_view url);

// "20/s" or "20": requests per second, 0..kMaxRate.
Result<double> parse_rate(std::string_view text);

// The phase named by the content of --phase-file: its first line without
// surrounding blanks, 1..kMaxPhaseLength of [A-Za-z0-9._-] (it becomes a
// JSON key and a table column). Nothing for an empty or unusable content:
// the phase then stays what it was.
std::optional<std::string> phase_label(std::string_view file_content);

// The arguments after the program name; "--name value" or "--name=value".
Result<Options> parse_options(const std::vector<std::string_view>& args);

}  // namespace tranche::loadgen
