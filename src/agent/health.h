#pragma once
// Probes the agent runs against its members. Blocking with a timeout each;
// the agent runs them off its event loop.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace tranche::agent {

struct ProbeResult {
  bool ok = false;
  std::string message;  // why it failed: "connect refused", "status 500", "timeout"
};

// GET http://127.0.0.1:PORT/PATH; ok on 2xx/3xx.
ProbeResult probe_http(int port, const std::string& path, std::chrono::milliseconds timeout);
// TCP connect to 127.0.0.1:PORT.
ProbeResult probe_tcp(int port, std::chrono::milliseconds timeout);
// Runs argv; ok on exit 0.
ProbeResult probe_exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

struct Stats {
  double load = 0;
  std::optional<int64_t> requests_in_flight;
};
// GET a stats endpoint returning {"load": X, "requestsInFlight": N}.
std::optional<Stats> read_stats(int port, const std::string& path, std::chrono::milliseconds timeout);
// The host's 1-minute load average divided by its cores.
double host_load();

}  // namespace tranche::agent
