#pragma once
// `tranche controller`: opens the store, bootstraps the admin token, serves
// the API until SIGTERM/SIGINT, then drains and returns 0.

#include <chrono>
#include <string>
#include <vector>

namespace tranche::api {

struct ControllerOptions {
  bool dev = false;
  std::string listen = "127.0.0.1:7468";
  std::string data_dir = "./tranche-data";
  std::string config_file;  // YAML; flags given on the command line win
  size_t body_limit = 1024 * 1024;
  // An artifact upload's limit (its body is streamed to disk, not held).
  int64_t artifact_max_bytes = int64_t{1} << 30;
  size_t max_connections = 0;  // 0: derived from the open-files limit
  size_t max_unauthenticated_agents = 1024;
  int threads = 4;  // connection threads (apiThreads), each with its own share of the connections
  std::chrono::milliseconds heartbeat_interval{2000};
  std::chrono::milliseconds heartbeat_timeout{6000};
  std::string haproxy_socket;  // empty: no load balancer
  // TLS for the API and the agents' WebSocket: a certificate chain and its
  // key (PEM), or with `dev_tls` (only with `dev`) a private CA and a server
  // certificate made in the data dir (ca.crt is what clients pin).
  std::string tls_certificate;
  std::string tls_key;
  bool dev_tls = false;
  bool no_lb_drain = false;
  std::string log_format = "text";  // or "json": api/log_format.h
};

// Reads `options.config_file` into the fields not set on the command line
// (`flags_given` names them: "listen", "data-dir", "haproxy-socket", "tls-cert", "tls-key", "log-format").
// Errors name the key.
int run_controller(ControllerOptions options, const std::vector<std::string>& flags_given);

}  // namespace tranche::api
