// The controller's settings: controller_settings.h.

#include "api/controller_settings.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace tranche::api {

namespace fs = std::filesystem;

Status read_config(ControllerOptions& options, const std::vector<std::string>& flags_given) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(options.config_file);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalid, options.config_file + ": " + e.what());
  }
  if (!root.IsMap()) {
    return fail(ErrorCode::kInvalid, options.config_file + ": expected a mapping of settings");
  }
  auto given = [&](const char* flag) {
    return std::find(flags_given.begin(), flags_given.end(), flag) != flags_given.end();
  };
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    const YAML::Node& value = item.second;
    try {
      if (key == "listen") {
        if (!given("listen")) options.listen = value.as<std::string>();
      } else if (key == "dataDir") {
        if (!given("data-dir")) options.data_dir = value.as<std::string>();
      } else if (key == "store") {
        const std::string store = value.as<std::string>();
        if (!store.starts_with("sqlite:")) {
          return fail(ErrorCode::kInvalid, "only sqlite:PATH stores are supported by this version", "store");
        }
        if (store.substr(7) != (fs::path(options.data_dir) / "tranche.db").string()) {
          return fail(ErrorCode::kInvalid, "the SQLite store lives at DATA_DIR/tranche.db; set dataDir instead",
                      "store");
        }
      } else if (key == "bodyLimitBytes") {
        options.body_limit = value.as<size_t>();
      } else if (key == "artifactMaxBytes") {
        options.artifact_max_bytes = value.as<int64_t>();
        if (options.artifact_max_bytes < 1) {
          return fail(ErrorCode::kInvalid, "artifactMaxBytes must be at least 1", key);
        }
      } else if (key == "maxConnections") {
        options.max_connections = value.as<size_t>();
      } else if (key == "maxUnauthenticatedAgents") {
        options.max_unauthenticated_agents = value.as<size_t>();
      } else if (key == "heartbeatIntervalSeconds") {
        options.heartbeat_interval = std::chrono::milliseconds(static_cast<int64_t>(value.as<double>() * 1000));
      } else if (key == "heartbeatTimeoutSeconds") {
        options.heartbeat_timeout = std::chrono::milliseconds(static_cast<int64_t>(value.as<double>() * 1000));
      } else if (key == "haproxySocket") {
        if (!given("haproxy-socket")) options.haproxy_socket = value.as<std::string>();
      } else if (key == "tlsCert") {
        if (!given("tls-cert")) options.tls_certificate = value.as<std::string>();
      } else if (key == "tlsKey") {
        if (!given("tls-key")) options.tls_key = value.as<std::string>();
      } else if (key == "logFormat") {
        if (!given("log-format")) options.log_format = value.as<std::string>();
      } else if (key == "apiThreads") {
        options.threads = std::clamp(value.as<int>(), 1, 64);
      } else {
        return fail(ErrorCode::kInvalid, "unknown setting '" + key + "'", key);
      }
    } catch (const YAML::Exception&) {
      return fail(ErrorCode::kInvalid, "bad value", key);
    }
  }
  return {};
}

Result<std::pair<std::string, unsigned short>> parse_listen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return fail(ErrorCode::kInvalid, "expected ADDR:PORT, got '" + listen + "'", "listen");
  }
  const std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) || std::stoi(port) > 65535) {
    return fail(ErrorCode::kInvalid, "bad port in '" + listen + "'", "listen");
  }
  return std::pair{listen.substr(0, colon), static_cast<unsigned short>(std::stoi(port))};
}

Status check_tls_options(const ControllerOptions& options) {
  if (options.tls_certificate.empty() != options.tls_key.empty()) {
    return fail(ErrorCode::kInvalid, "--tls-cert and --tls-key go together", "tls-cert");
  }
  if (options.dev_tls && !options.dev) {
    return fail(ErrorCode::kInvalid, "--tls makes a private CA for --dev; without --dev give --tls-cert and --tls-key",
                "tls");
  }
  if (options.dev_tls && !options.tls_certificate.empty()) {
    return fail(ErrorCode::kInvalid, "--tls makes its own certificate; give it or --tls-cert/--tls-key, not both",
                "tls");
  }
  return {};
}

Status check_heartbeat_options(const ControllerOptions& options) {
  if (options.heartbeat_interval <= std::chrono::milliseconds::zero()) {
    return fail(ErrorCode::kInvalid, "the heartbeat interval must be positive", "heartbeat-interval");
  }
  if (options.heartbeat_timeout <= options.heartbeat_interval) {
    return fail(ErrorCode::kInvalid,
                fmt::format("the heartbeat timeout ({} ms) must be longer than the heartbeat interval ({} ms), "
                            "or every host is Unreachable between two heartbeats",
                            options.heartbeat_timeout.count(), options.heartbeat_interval.count()),
                "heartbeat-timeout");
  }
  return {};
}

}  // namespace tranche::api
