// tranche-agent-simulator's command line: the Options every other part reads
// (the server, the fleet's size and pace, the simulated durations, the stats
// and kill files) and parse_options, which turns argv into them, prints the
// usage text on --help and refuses, with the usage text, what it cannot use.
// Nothing here connects or simulates anything.

#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace tranche::sim {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

struct Options {
  std::string server;
  std::string host;  // of the server URL
  std::string port;
  std::string join_token;
  int hosts = 0;
  int members_per_host = 0;  // informational: the controller's placement decides
  milliseconds duration = 60s;
  double connect_rate = 500;  // new connections per second
  int threads = 2;
  milliseconds start_delay = 0ms;
  milliseconds update_time = 0ms;       // how long every in-place update takes (quality.md P2's T)
  milliseconds maintenance_time = 0ms;  // how long every maintenance restart takes
  int64_t slots = 10000;
  milliseconds progress = 10s;
  std::string stats_file;  // rewritten every second with the running totals (JSON)
  // At the end, one line per in-place update: when its command arrived and
  // when its result left, Unix ms (quality.md P2: where a batch's time goes).
  std::string update_trace;
  // Host i connects from 127.0.0.(2 + i % K): one source address has ~28,000
  // ephemeral ports to one destination, fewer than 40,000 hosts need. 0: the
  // kernel picks the source.
  int source_addresses = 0;
  // quality.md P3: K hosts die abruptly, after --kill-after or on each
  // SIGUSR1 (K others each time), and never come back. close: the TCP connection ends without a WebSocket
  // close frame, as when the agent is SIGKILLed; silent: nothing more is sent
  // or answered on a connection left open, as when its network is cut off.
  int kill_hosts = 0;
  std::optional<milliseconds> kill_after;
  std::string kill_mode = "close";
  std::string kill_file;  // one JSON line per killed host: {host, hostId, killedAtMs}
};

// The options of argv, or nullopt after the reason and the usage text went
// to stderr. --help prints the usage text to stdout and exits 0.
std::optional<Options> parse_options(int argc, char** argv);

}  // namespace tranche::sim
