// What the API reads of the fleet, and what the load balancer is told.

#include "engine/fleet.h"

#include <algorithm>

#include "common/time_format.h"
#include "lb/load_balancer.h"

namespace tranche {

namespace {

using nlohmann::json;

}  // namespace

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

TimePoint Fleet::phase_seen_since(const ActiveRollout& rollout) {
  PhaseSeen& seen = phases_seen_[rollout.record.app];
  if (seen.rollout != rollout.record.id || seen.phase != rollout.phase) {
    seen = PhaseSeen{rollout.record.id, rollout.phase, clock_.now()};
  }
  return seen.since;
}

json Fleet::hosts_json(const std::optional<std::string>& visible_app) const {
  std::lock_guard lock(mu_);
  json items = json::array();
  for (const auto& [id, h] : hosts_) {
    int members = 0;
    if (auto on_host = by_host_.find(id); on_host != by_host_.end()) {
      for (const auto& [mid, m] : on_host->second) {
        members += may_run(m->state) && (!visible_app || m->record.app == *visible_app) ? 1 : 0;
      }
    }
    items.push_back({{"id", id},
                     {"hostname", h.record.hostname},
                     {"state", h.record.state},
                     {"connected", h.link != nullptr},
                     {"labels", h.record.labels},
                     {"slots", h.record.slots},
                     {"members", members},
                     {"lastSeen", format_rfc3339(h.last_seen)}});
  }
  return json{{"items", items}};
}

Result<json> Fleet::set_host_draining(const std::string& host_id, bool draining, const Caller& caller) {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    return fail(ErrorCode::kNotFound, "host '" + host_id + "' not found");
  }
  HostEntry& h = it->second;
  const std::string from = h.record.state;
  if (draining && from == kHostReady) {
    set_host_state(h, kHostDraining, "cordoned by " + caller.actor);
  } else if (!draining && from == kHostDraining) {
    set_host_state(h, kHostReady, "uncordoned by " + caller.actor);
  } else if (from != (draining ? kHostDraining : kHostReady)) {
    return fail(ErrorCode::kConflict, "host " + host_id + " is " + from);
  }
  WriteBatch audit;
  audit.mutations.push_back(
      AppendAudit{{0, clock_.now(), caller.actor, caller.action, "host " + host_id, from + " -> " + h.record.state}});
  stage(std::move(audit));
  // Acknowledged only once durable.
  if (auto done = commit_staged(lock, false); !done) {
    return std::unexpected(done.error());
  }
  return json{{"id", host_id}, {"state", h.record.state}, {"message", "host " + host_id + " is " + h.record.state}};
}

json Fleet::to_json(const MemberEntry& m) {
  json j = {{"id", m.record.id},           {"app", m.record.app},
            {"cluster", m.record.cluster}, {"host", m.record.host},
            {"state", m.record.state},     {"revision", m.record.revision},
            {"version", m.record.version}, {"ports", m.record.ports},
            {"healthy", m.healthy},        {"updatedAt", format_rfc3339(m.record.updated_at)}};
  j["pid"] = m.record.pid ? json(*m.record.pid) : json(nullptr);
  j["load"] = m.stats ? json(m.stats->load) : json(nullptr);
  j["healingDelayedSince"] =
      m.record.healing_delayed_since ? json(format_rfc3339(*m.record.healing_delayed_since)) : json(nullptr);
  const ClusterSpec* spec = balancer_ ? cluster_spec(m) : nullptr;
  if (spec && !spec->load_balancer.haproxy_backend.empty()) {
    j["loadBalancer"] = {{"backend", spec->load_balancer.haproxy_backend},
                         {"state", to_string(balancer_->presence(m.record.id))}};
  }
  return j;
}

Result<json> Fleet::members_json(const MemberQuery& query, const std::optional<std::string>& visible_app) {
  if (visible_app && query.app && *query.app != *visible_app) {
    return json{{"items", json::array()}};
  }
  MemberQuery q = query;
  if (visible_app) {
    q.app = visible_app;
  }
  // Terminated members are history: only in the store, and only when asked for.
  const bool history = q.state && *q.state == "Terminated";
  std::lock_guard lock(mu_);
  json items = json::array();
  if (history) {
    auto records = store_.list_members(q);
    if (!records) {
      return std::unexpected(records.error());
    }
    for (const auto& r : *records) {
      items.push_back(to_json(MemberEntry{r, MemberState::kTerminated}));
    }
  } else {
    // From the cluster index when the query names an application: O(result).
    std::vector<const MemberEntry*> candidates;
    if (q.app && q.cluster) {
      auto found = members_of(*q.app, *q.cluster);
      candidates.assign(found.begin(), found.end());
    } else if (q.app) {
      for (const auto& [key, index] : by_cluster_) {
        if (key.starts_with(*q.app + "/")) {
          for (const auto& [id, m] : index) {
            candidates.push_back(m);
          }
        }
      }
      std::sort(candidates.begin(), candidates.end(),
                [](const MemberEntry* a, const MemberEntry* b) { return a->record.id < b->record.id; });
    } else {
      for (const auto& [id, m] : members_) {
        candidates.push_back(&m);
      }
    }
    for (const MemberEntry* m : candidates) {
      if (!q.state || m->record.state == *q.state) {
        items.push_back(to_json(*m));
      }
    }
  }
  return json{{"items", items}};
}

Result<json> Fleet::member_json(const std::string& member_id, const std::optional<std::string>& visible_app) {
  std::lock_guard lock(mu_);
  auto it = members_.find(member_id);
  if (it != members_.end() && (!visible_app || it->second.record.app == *visible_app)) {
    return to_json(it->second);
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (!visible_app || app == *visible_app) {
    auto record = store_.get_member(app, member_id);
    if (record && *record) {
      return to_json(MemberEntry{**record, MemberState::kTerminated});
    }
  }
  return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
}

}  // namespace tranche
