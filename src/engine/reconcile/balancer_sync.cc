#include "engine/reconcile/balancer_sync.h"

#include <spdlog/spdlog.h>

#include "common/time_format.h"

namespace tranche {

namespace {
using std::chrono::duration_cast;
using std::chrono::milliseconds;
}  // namespace

std::string_view to_string(BalancerPresence presence) {
  switch (presence) {
    case BalancerPresence::kUnknown:
      return "unknown";
    case BalancerPresence::kServing:
      return "serving";
    case BalancerPresence::kDraining:
      return "draining";
    case BalancerPresence::kOut:
      return "out";
  }
  return "unknown";
}

// What one pass works on and finds; merged into the object at its end.
struct BalancerSync::Pass {
  std::map<std::string, BalancerTarget> targets;
  std::map<std::string, BalancerPresence> presence;
  std::map<std::string, BalancerProblem> problems;  // the first failure per backend
  std::string backend;                              // the one being synced
  TimePoint now;

  // Records a failure of the balancer; true when `done` succeeded.
  bool note(const Status& done) {
    if (!done) {
      problems.try_emplace(backend, BalancerProblem{done.error().message, now});
    }
    return done.has_value();
  }
};

BalancerSync::BalancerSync(lb::LoadBalancer& balancer, const Clock& clock) : balancer_(balancer), clock_(clock) {}

void BalancerSync::set_targets(std::map<std::string, BalancerTarget> targets) {
  std::lock_guard lock(mu_);
  for (const auto& [member, target] : targets) {
    backends_.insert(target.backend);
  }
  targets_ = std::move(targets);
}

BalancerPresence BalancerSync::presence(const std::string& member) const {
  std::lock_guard lock(mu_);
  auto it = presence_.find(member);
  return it == presence_.end() ? BalancerPresence::kUnknown : it->second;
}

std::optional<BalancerProblem> BalancerSync::problem(const std::string& backend) const {
  std::lock_guard lock(mu_);
  auto it = problems_.find(backend);
  return it == problems_.end() ? std::nullopt : std::optional(it->second);
}

void BalancerSync::run_once() {
  Pass pass;
  std::set<std::string> backends;
  {
    std::lock_guard lock(mu_);
    pass.targets = targets_;
    backends = backends_;
  }
  for (const auto& backend : backends) {
    pass.backend = backend;
    pass.now = clock_.now();
    sync_backend(backend, pass);
  }
  std::lock_guard lock(mu_);
  for (const auto& [member, presence] : pass.presence) {
    presence_[member] = presence;
  }
  // A member's presence outlives a pass that could not see it (the last
  // known is kept), but not the member.
  std::erase_if(presence_, [&](const auto& entry) { return !targets_.contains(entry.first); });
  for (const auto& [backend, problem] : pass.problems) {
    if (!problems_.contains(backend)) {
      spdlog::warn("load balancer, backend {}: {}", backend, problem.message);
    }
  }
  for (const auto& [backend, problem] : problems_) {
    if (!pass.problems.contains(backend)) {
      spdlog::info("load balancer, backend {}: answering again", backend);
    }
  }
  problems_ = std::move(pass.problems);
}

void BalancerSync::sync_backend(const std::string& backend, Pass& pass) {
  auto servers = balancer_.list_servers(backend);
  if (!servers) {
    (void)pass.note(std::unexpected(servers.error()));
    return;  // presence of its members stays as last seen
  }
  std::map<std::string, const lb::ServerInfo*> by_name;
  for (const auto& server : *servers) {
    by_name[server.name] = &server;
  }
  std::set<std::string> named;
  // Servers join before others leave, so that a backend never dips below
  // what the fleet counts on.
  for (const bool serving : {true, false}) {
    for (const auto& [member, target] : pass.targets) {
      if (target.backend != backend || target.serve != serving) {
        continue;
      }
      named.insert(target.server);
      auto it = by_name.find(target.server);
      const lb::ServerInfo* server = it == by_name.end() ? nullptr : it->second;
      pass.presence[member] = serving ? serve(target, server, pass) : leave(target, server, pass);
    }
  }
  // Servers of members the fleet no longer has (terminated while the
  // balancer was away, or before a controller restart): nothing to drain for.
  for (const auto& [name, server] : by_name) {
    if (!named.contains(name) && lb::is_member_server_name(name)) {
      (void)leave(BalancerTarget{backend, name, std::nullopt, false, {}}, server, pass);
    }
  }
}

BalancerPresence BalancerSync::serve(const BalancerTarget& target, const lb::ServerInfo* server, Pass& pass) {
  drain_started_.erase(target.server);
  const std::string ref = target.backend + "/" + target.server;
  if (server && target.address && server->address != lb::to_string(*target.address)) {
    // The member listens elsewhere now (an in-place update allocates new
    // ports): a server's address is fixed, so it is added again.
    spdlog::info("load balancer: {} moved from {} to {}; registering it again", ref, server->address,
                 lb::to_string(*target.address));
    if (!pass.note(balancer_.set_state(target.backend, target.server, lb::AdminState::kMaintenance)) ||
        !pass.note(balancer_.delete_server(target.backend, target.server))) {
      return BalancerPresence::kUnknown;
    }
    server = nullptr;
  }
  if (!server) {
    if (!target.address) {
      return BalancerPresence::kOut;
    }
    if (!pass.note(balancer_.add_server(target.backend, lb::ServerSpec{target.server, *target.address, false}))) {
      return BalancerPresence::kUnknown;
    }
    spdlog::info("load balancer: {} added at {}", ref, lb::to_string(*target.address));
    return BalancerPresence::kServing;
  }
  if (server->state == lb::ServerState::kDrain || server->state == lb::ServerState::kMaintenance) {
    if (!pass.note(balancer_.set_state(target.backend, target.server, lb::AdminState::kReady))) {
      return BalancerPresence::kUnknown;
    }
    spdlog::info("load balancer: {} enabled again", ref);
  }
  return BalancerPresence::kServing;
}

// drain -> (sessions 0 or drain timeout) -> maint -> del. Sessions are read
// only once the drain is in force (a later pass), so a request that arrived
// just before it is waited for too.
BalancerPresence BalancerSync::leave(const BalancerTarget& target, const lb::ServerInfo* server, Pass& pass) {
  const std::string ref = target.backend + "/" + target.server;
  if (!server) {
    drain_started_.erase(target.server);
    return BalancerPresence::kOut;
  }
  if (server->state != lb::ServerState::kMaintenance) {
    const bool draining = server->state == lb::ServerState::kDrain;
    if (!draining && target.drain_timeout.count() > 0) {
      if (!pass.note(balancer_.set_state(target.backend, target.server, lb::AdminState::kDrain))) {
        return BalancerPresence::kUnknown;
      }
      drain_started_[target.server] = pass.now;
      spdlog::info("load balancer: {} draining ({} sessions, waiting at most {} s)", ref, server->sessions,
                   target.drain_timeout.count());
      return BalancerPresence::kDraining;
    }
    // A drain set before a controller restart is timed from now.
    const TimePoint started = drain_started_.try_emplace(target.server, pass.now).first->second;
    const auto waited = duration_cast<milliseconds>(pass.now - started);
    const bool timed_out = waited >= target.drain_timeout;
    if (draining && server->sessions > 0 && !timed_out) {
      return BalancerPresence::kDraining;
    }
    if (!pass.note(balancer_.set_state(target.backend, target.server, lb::AdminState::kMaintenance))) {
      return draining ? BalancerPresence::kDraining : BalancerPresence::kUnknown;
    }
    if (!draining) {
      spdlog::info("load balancer: {} out of traffic without a drain", ref);
    } else if (server->sessions > 0) {
      spdlog::warn("load balancer: {} drain timeout after {} with {} sessions open", ref, format_duration(waited),
                   server->sessions);
    } else {
      spdlog::info("load balancer: {} drained in {}", ref, format_duration(waited));
    }
  }
  // Refused while connections remain (idle ones included): the next pass
  // tries again; the server takes no traffic meanwhile.
  if (auto deleted = balancer_.delete_server(target.backend, target.server); deleted) {
    drain_started_.erase(target.server);
    spdlog::info("load balancer: {} removed", ref);
  } else {
    spdlog::debug("load balancer: {} not removed yet: {}", ref, deleted.error().message);
  }
  return BalancerPresence::kOut;
}

}  // namespace tranche
