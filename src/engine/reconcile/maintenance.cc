// Maintenance (model.md "maintenance restart|replace").

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"

namespace tranche {

namespace {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

}  // namespace

Fleet::MaintenanceMarkers Fleet::index_markers(const std::vector<OperationalValueRecord>& values) {
  MaintenanceMarkers markers;
  for (const auto& v : values) {
    if (v.setting == Setting::kMaintenance && v.value != "off") {
      markers.emplace(v.path, &v);  // node values too: a node path is never a member's
    }
  }
  return markers;
}

// model.md, "maintenance restart": marked members go into Maintenance a few
// at a time, never leaving fewer than desired - maxUnavailable Active;
// members marked --all-at-once go in the same pass, whatever the budget.
// What is counted is the Active members, as the rollout planner does: a
// member out for any other reason (failed, unreachable, being stopped, not
// yet serving) has already spent the budget.
void Fleet::start_maintenance(const ClusterRef& cluster, const std::vector<MemberEntry*>& members,
                              const MaintenanceMarkers& markers, int desired) {
  int active = 0;
  for (const MemberEntry* m : members) {
    active += planned_state(*m) == MemberState::kActive ? 1 : 0;
  }
  // The rollouts' rule (resolve_max_unavailable, against the same desired),
  // but at least one: a restart has no surge to make progress with.
  const int budget = std::max(resolve_max_unavailable(cluster.spec->update, desired), 1);
  std::vector<MemberEntry*> taken;
  for (MemberEntry* m : members) {
    if (m->state != MemberState::kActive) {
      continue;
    }
    auto marker = markers.find(member_path(m->record));
    if (marker != markers.end() && marker->second->value == "restart" &&
        (active - 1 >= desired - budget || marker->second->all_at_once)) {
      taken.push_back(m);
      --active;
    }
  }
  if (!taken.empty()) {
    (void)set_states(taken, MemberState::kMaintenance, "maintenance restart (autohealing off for it meanwhile)");
  }
}

// The agent restarted the member after its hook: back to Starting (Active
// again once healthy) and the marker cleared, in one commit.
void Fleet::resume_after_maintenance(MemberEntry& m, const std::string& message,
                                     const protocol::ProcessStarted* started) {
  if (started) {
    m.record.pid = started->pid;
    m.record.ports = started->ports.value_or(m.record.ports);
  }
  (void)set_state(m, MemberState::kStarting, "resumed after maintenance" + (message.empty() ? "" : ": " + message),
                  {DeleteOperationalValue{m.record.app, member_path(m.record), Setting::kMaintenance}});
}

// A node's maintenance returns to off by itself once every member it took in
// has resumed (its markers are gone).
void Fleet::complete_maintenance(const std::string& app, const std::vector<OperationalValueRecord>& values) {
  const bool any = std::any_of(values.begin(), values.end(), [](const OperationalValueRecord& v) {
    return v.setting == Setting::kMaintenance && v.value != "off";
  });
  if (!any) {
    return;
  }
  std::set<std::string> member_paths;
  for (const auto& [key, index] : by_cluster_) {
    if (key.starts_with(app + "/")) {
      for (const auto& [id, m] : index) {
        member_paths.insert(member_path(m->record));
      }
    }
  }
  for (const auto& v : values) {
    if (v.setting != Setting::kMaintenance || v.value == "off" || member_paths.contains(v.path)) {
      continue;
    }
    const bool pending = std::any_of(values.begin(), values.end(), [&](const OperationalValueRecord& marker) {
      return marker.setting == Setting::kMaintenance && marker.value != "off" && member_paths.contains(marker.path) &&
             is_below(marker.path, v.path);
    });
    if (pending) {
      continue;
    }
    const TimePoint now = clock_.now();
    const std::string message = "maintenance " + v.value + " of " + full_path(app, v.path) +
                                " completed: every member " + (v.value == "replace" ? "replaced" : "resumed");
    WriteBatch batch;
    batch.mutations.push_back(DeleteOperationalValue{app, v.path, Setting::kMaintenance});
    batch.mutations.push_back(AppendEvent{
        make_event(now, app, full_path(app, v.path), "", "OperationalStateChanged", v.value, nullptr, message)});
    stage(std::move(batch));
    spdlog::info("{}", message);
  }
}

bool Fleet::replace_for_maintenance(const ClusterRef& cluster, const std::vector<MemberEntry*>& members,
                                    const MaintenanceMarkers& markers, int desired) {
  auto marker = [&](const MemberEntry& m) -> const OperationalValueRecord* {
    auto it = markers.find(member_path(m.record));
    return it != markers.end() && it->second->value == "replace" ? it->second : nullptr;
  };
  const std::vector<MemberEntry*> ordered = in_ordinal_order(members);
  std::vector<RolloutMember> view;
  std::map<std::string, MemberEntry*> by_id;
  bool any = false;
  bool all_at_once = false;
  for (MemberEntry* m : ordered) {
    const OperationalValueRecord* v = marker(*m);
    const bool replace = v != nullptr;
    all_at_once = all_at_once || (replace && v->all_at_once);
    any = any || (replace && is_live(m->state));
    view.push_back(RolloutMember{m->record.id, planned_state(*m), !replace, m->record.revision, m->record.updated_at});
    by_id[m->record.id] = m;
  }
  if (!any) {
    return false;
  }
  // The cluster's own pacing, always rolling replace: the old member serves
  // until its replacement is Active.
  UpdatePolicy policy = cluster.spec->update;
  policy.method = UpdatePolicy::Method::kReplace;
  policy.strategy = UpdatePolicy::Strategy::kRolling;
  policy.canary = 0;
  if (all_at_once) {
    // --all-at-once: every successor is created in one pass (surge = all);
    // the old members serve until their successors are Active.
    policy.max_surge = IntOrPercent{100, true};
  }
  const ClusterRolloutStep step =
      plan_cluster_rollout(ClusterRolloutInput{policy, desired, std::move(view), true, clock_.now()});
  for (const auto& id : step.retire) {
    MemberEntry& m = *by_id[id];
    retire(m, "maintenance replace: replaced by a new member",
           {DeleteOperationalValue{m.record.app, member_path(m.record), Setting::kMaintenance}});
  }
  for (int i = 0; i < step.create; ++i) {
    if (!create_member(cluster, cluster.app->current_revision, "maintenance replace")) {
      break;
    }
  }
  return true;
}

}  // namespace tranche
