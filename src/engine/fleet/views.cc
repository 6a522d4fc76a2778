// What the API reads of the fleet: hosts and members, costing what they return.

#include "engine/fleet/fleet.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/maintenance_marks.h"

namespace tranche {

namespace {

using nlohmann::json;

}  // namespace

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
                     {"agentVersion", h.agent_version.empty() ? json(nullptr) : json(h.agent_version)},
                     {"protocol", h.protocol == 0 ? json(nullptr) : json(h.protocol)},
                     {"refused", h.refused.empty() ? json(nullptr) : json(h.refused)},
                     {"lastSeen", format_rfc3339(h.last_seen)}});
  }
  return json{{"items", items}};
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
  if (!m.successor.empty() && m.state != MemberState::kTerminated) {
    // model.md: Updating, "it is being replaced". Beside its state, which
    // says whether it still serves (and counts as available) meanwhile.
    j["updating"] = {{"method", "replace"}, {"successor", m.successor}};
  }
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
  MaintenanceMarks marks(store_);
  if (history) {
    auto records = store_.list_members(q);
    if (!records) {
      return std::unexpected(records.error());
    }
    for (const auto& r : *records) {
      items.push_back(to_json(MemberEntry{r, MemberState::kTerminated}));
      items.back()["maintenance"] = marks.of(r);
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
        items.back()["maintenance"] = marks.of(m->record);
      }
    }
  }
  return json{{"items", items}};
}

Result<json> Fleet::member_json(const std::string& member_id, const std::optional<std::string>& visible_app) {
  std::lock_guard lock(mu_);
  MaintenanceMarks marks(store_);
  auto it = members_.find(member_id);
  if (it != members_.end() && (!visible_app || it->second.record.app == *visible_app)) {
    json j = to_json(it->second);
    j["maintenance"] = marks.of(it->second.record);
    return j;
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (!visible_app || app == *visible_app) {
    auto record = store_.get_member(app, member_id);
    if (record && *record) {
      json j = to_json(MemberEntry{**record, MemberState::kTerminated});
      j["maintenance"] = marks.of(**record);
      return j;
    }
  }
  return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
}

}  // namespace tranche
