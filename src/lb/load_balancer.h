#pragma once
// What the controller needs from a load balancer in front of a cluster
// (updates.md, "load balancer"): register a member as a server of a backend,
// take it out of new traffic (drain) and watch its sessions fall, put it in
// maintenance, remove it, and list a backend's servers so that members lost on
// a balancer reload can be found and registered again. HAProxy's runtime API
// is the one implementation today (haproxy_runtime.h).
//
// Calls block for at most the implementation's timeout per command; call them
// off an event loop. Every failure of the balancer itself (unreachable, slow,
// or answering an error) is kUnavailable with a message naming the command and
// the balancer's answer, so that a rollout can pause on it and say why.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tranche::lb {

struct ServerAddress {
  std::string ip;  // IPv4, dotted quad
  uint16_t port = 0;
};

// "127.0.0.1:8080".
std::string to_string(const ServerAddress& address);

struct ServerSpec {
  std::string name;  // server_name_for(member id)
  ServerAddress address;
  // Run the backend's health checks on this server too. Only meaningful when
  // the backend declares checks (e.g. `option httpchk`); without it the server
  // is taken as up whenever it is enabled.
  bool health_checks = false;
};

// The administrative state an operator (here: the controller) sets.
enum class AdminState {
  kReady,        // takes new traffic
  kDrain,        // existing sessions go on, no new traffic from balancing
  kMaintenance,  // no traffic, no checks; the only state a server can be deleted from
};

std::string_view to_string(AdminState state);

// What a server does now: its administrative state combined with its checks.
enum class ServerState {
  kUp,           // takes new traffic
  kDown,         // ready, but failing its health checks
  kDrain,        // takes no new traffic, existing sessions go on
  kMaintenance,  // takes no traffic at all
};

std::string_view to_string(ServerState state);

struct ServerInfo {
  std::string name;
  ServerState state = ServerState::kMaintenance;
  std::string status;    // the balancer's own words, e.g. "UP 1/3", "no check", "MAINT (via web/a)"
  std::string address;   // as the balancer reports it, e.g. "127.0.0.1:8080"
  int64_t sessions = 0;  // current sessions
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;

  // Adds the server to `backend`, starts its health checks when asked, and
  // enables it. A server that was added but could not be enabled stays in
  // maintenance (the error says so): enable it with set_state or delete it.
  virtual Status add_server(std::string_view backend, const ServerSpec& server) = 0;

  virtual Status set_state(std::string_view backend, std::string_view server, AdminState state) = 0;

  // The server, or nullopt when `backend` has no server of that name.
  virtual Result<std::optional<ServerInfo>> find_server(std::string_view backend, std::string_view server) = 0;

  // Every server of `backend` (also those not added by Tranche), in the
  // balancer's order.
  virtual Result<std::vector<ServerInfo>> list_servers(std::string_view backend) = 0;

  // Refused by the balancer unless the server is in maintenance with no
  // connection left.
  virtual Status delete_server(std::string_view backend, std::string_view server) = 0;
};

// The server name of a member: its id "app/cluster/ordinal" with '/' made
// '_' ("shop/web/3" -> "shop_web_3"). Names of the model never hold '_', so
// two members never share a server name. kInvalid for anything that is not
// a member id.
Result<std::string> server_name_for(std::string_view member_id);

// Whether server_name_for gives `name` to some member: the servers Tranche
// may remove from a backend (an operator's own servers never match).
bool is_member_server_name(std::string_view name);

}  // namespace tranche::lb
