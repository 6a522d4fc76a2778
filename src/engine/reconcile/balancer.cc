// The fleet's side of load balancing (updates.md): what each member's
// backend should be, and whether traffic has left a member.

#include "engine/fleet/fleet.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "lb/load_balancer.h"

namespace tranche {

bool Fleet::out_of_traffic(const MemberEntry& m) {
  if (!balancer_ || !options_.drain_before_stop) {
    return true;
  }
  const ClusterSpec* spec = cluster_spec(m);
  return !spec || spec->load_balancer.haproxy_backend.empty() ||
         balancer_->presence(m.record.id) == BalancerPresence::kOut;
}

MemberState Fleet::planned_state(const MemberEntry& m) {
  if (m.state != MemberState::kActive || !balancer_) {
    return m.state;
  }
  const ClusterSpec* spec = cluster_spec(m);
  const bool balanced = spec && !spec->load_balancer.haproxy_backend.empty();
  return balanced && balancer_->presence(m.record.id) != BalancerPresence::kServing ? MemberState::kStarting : m.state;
}

// One target per member of a balanced cluster: Active members serve, every
// other one leaves (at once when it never served: it is not there).
std::map<std::string, BalancerTarget> Fleet::balancer_targets() {
  std::map<std::string, BalancerTarget> targets;
  for (const auto& [id, m] : members_) {
    const ClusterSpec* spec = cluster_spec(m);
    auto server = lb::server_name_for(id);
    if (!spec || spec->load_balancer.haproxy_backend.empty() || !server) {
      continue;
    }
    BalancerTarget target{spec->load_balancer.haproxy_backend, *server, std::nullopt, m.state == MemberState::kActive,
                          std::chrono::seconds(0)};
    if (options_.drain_before_stop) {
      target.drain_timeout = std::chrono::seconds(spec->load_balancer.drain_timeout_seconds);
    }
    auto host = hosts_.find(m.record.host);
    auto port = spec->ports.empty() ? m.record.ports.end() : m.record.ports.find(spec->ports.front());
    if (host != hosts_.end() && !host->second.address.empty() && port != m.record.ports.end()) {
      target.address = lb::ServerAddress{host->second.address, static_cast<uint16_t>(port->second)};
    }
    targets.emplace(id, std::move(target));
  }
  return targets;
}

std::optional<std::string> Fleet::balancer_problem(const ApplicationSpec& spec, TimePoint since) const {
  if (!balancer_) {
    return std::nullopt;
  }
  for (const auto& node : flatten(spec)) {
    if (node.cluster && !node.cluster->load_balancer.haproxy_backend.empty()) {
      auto problem = balancer_->problem(node.cluster->load_balancer.haproxy_backend);
      if (problem && problem->seen_at >= since) {
        return "backend " + node.cluster->load_balancer.haproxy_backend + ": " + problem->message;
      }
    }
  }
  return std::nullopt;
}

}  // namespace tranche
