// Maintenance (model.md "maintenance restart|replace").

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/command_outcomes.h"
#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/reconcile/interactions.h"

namespace tranche {

Fleet::MaintenanceMarkers Fleet::index_markers(const std::vector<OperationalValueRecord>& values) {
  MaintenanceMarkers markers;
  for (const auto& v : values) {
    if (v.setting == Setting::kMaintenance && v.value != "off") {
      markers.emplace(v.path, &v);  // node values too: a node path is never a member's
    }
  }
  return markers;
}

// The application's members in id order, a walk rather than a lookup per
// marker: with --all-at-once there are 100,000 markers, and a member at its
// agent (nearly all of them while the hooks run) needs no lookup at all.
// A marker naming no member (a node's value) ends with the last of its
// members.
bool Fleet::maintenance_at_agents(const std::string& app, const MaintenanceMarkers& markers) const {
  const std::string prefix = app + "/";
  for (auto it = members_.lower_bound(prefix); it != members_.end() && it->first.starts_with(prefix); ++it) {
    const MemberEntry& m = it->second;
    if (!m.in_maintenance_at_agent() && markers.contains(member_path(m.record))) {
      return false;
    }
  }
  return true;
}

// model.md, "maintenance restart": marked members go into Maintenance a few
// at a time, never leaving fewer than desired - maxUnavailable Active;
// members marked --all-at-once go in the same pass, whatever the budget.
// What is counted is the Active members, as the rollout planner does: a
// member out for any other reason (failed, unreachable, being stopped, not
// yet serving) has already spent the budget.
void Fleet::start_maintenance(const ClusterRef& cluster, const MaintenanceMarkers& markers, int desired) {
  if (markers.empty()) {
    return;  // no member is marked (each pass of a rollout of 100,000 asks)
  }
  if (!cluster.app->deployed && resolve(Command::kMaintenanceRestart, Command::kDelete) == Resolution::kCancels) {
    return;  // its members are being stopped: none starts a hook now
  }
  const std::vector<MemberEntry*> members = members_of(cluster.app->name, cluster.path);
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
// again once healthy) and the marker cleared, in one commit. Only the marker
// the restart acted on, set no later than the member entered Maintenance
// (its updated_at until now): a command given meanwhile (a `replace` after
// the `restart`) is the last accepted one and stays, so it runs next
// (interactions.h: restart, then replace: latest wins).
void Fleet::resume_after_maintenance(MemberEntry& m, const std::string& message,
                                     const protocol::ProcessStarted* started) {
  if (started) {
    m.record.pid = started->pid;
    m.record.ports = started->ports.value_or(m.record.ports);
  }
  const TimePoint entered = m.record.updated_at;
  (void)set_state(m, MemberState::kStarting, "resumed after maintenance" + (message.empty() ? "" : ": " + message),
                  {DeleteOperationalValue{m.record.app, member_path(m.record), Setting::kMaintenance, entered}});
}

// A node's maintenance returns to off by itself once every member it took
// in has resumed or been replaced (no marker of a live member below it is
// left), and its operation record says so. Which values are a node's comes
// from the application's spec: a marker whose member is gone is cleared, and
// never taken for a node whose members are all done. Undeployed, the
// maintenance ends unfinished (interactions.h: delete cancels it). A command
// given on one member ends once its marker is gone: the member resumed, or
// left the cluster.
bool Fleet::complete_maintenance(const std::string& app, const std::vector<OperationalValueRecord>& values) {
  const bool any = std::any_of(values.begin(), values.end(), [](const OperationalValueRecord& v) {
    return v.setting == Setting::kMaintenance && v.value != "off";
  });
  if (any) {
    maintenance_settled_.erase(app);
  } else if (maintenance_settled_.contains(app)) {
    return true;
  }
  auto record = store_.get_application(app);
  const auto spec = record && *record ? spec_of(app, (*record)->current_revision) : nullptr;
  if (!spec) {
    return false;  // tried again next pass
  }
  const bool deployed = (*record)->deployed;
  std::set<std::string> nodes;
  for (const auto& node : flatten(*spec)) {
    nodes.insert(node.path);
  }
  const TimePoint now = clock_.now();
  // Members' markers whose step is still to come; the others' step will
  // never run (the member is gone, or is being stopped with its
  // application), and they go. Once per pass, and each marker looked up by
  // its member's id: a maintenance of 100,000 members is as many markers.
  std::vector<const std::string*> pending_markers;
  std::string id = app + "/";
  for (const auto& v : values) {
    if (v.setting != Setting::kMaintenance || v.value == "off" || nodes.contains(v.path)) {
      continue;
    }
    id.resize(app.size() + 1);
    id += v.path;
    if (deployed && members_.contains(id)) {
      pending_markers.push_back(&v.path);
    } else {
      WriteBatch batch;
      batch.mutations.push_back(DeleteOperationalValue{app, v.path, Setting::kMaintenance, v.set_at});
      stage(std::move(batch));
    }
  }
  for (const auto& v : values) {
    if (v.setting != Setting::kMaintenance || v.value == "off" || !nodes.contains(v.path)) {
      continue;
    }
    const auto pending = static_cast<size_t>(std::count_if(
        pending_markers.begin(), pending_markers.end(), [&](const std::string* path) { return is_below(*path, v.path); }));
    ReplaceTally* tally = nullptr;
    if (v.value == "replace") {
      tally = &replace_tallies_[app + "/" + v.path];
      if (tally->set_at != v.set_at) {
        *tally = ReplaceTally{v.set_at, 0};
      }
      tally->marked = std::max(tally->marked, pending);
    }
    if (pending > 0) {
      continue;
    }
    const std::string what = "maintenance " + v.value + " of " + full_path(app, v.path);
    const std::string message = !deployed       ? what + " ended: the application was undeployed"
                                : tally != nullptr ? what + " completed: " + replaced_or_removed(app, v, *tally)
                                                   : what + " completed: every member resumed";
    if (tally != nullptr) {
      replace_tallies_.erase(app + "/" + v.path);
    }
    WriteBatch batch;
    batch.mutations.push_back(DeleteOperationalValue{app, v.path, Setting::kMaintenance, v.set_at});
    batch.mutations.push_back(AppendEvent{
        make_event(now, app, full_path(app, v.path), "", "OperationalStateChanged", v.value, nullptr, message)});
    finish_maintenance_operations(store_, app, v, deployed ? "Succeeded" : "Cancelled", message, now, batch);
    stage(std::move(batch));
    spdlog::info("{}", message);
  }
  WriteBatch batch;
  const size_t running = finish_member_maintenance_operations(
      store_, app, values, nodes,
      [&](const std::string& path, const std::string& value) -> MemberMaintenanceOutcome {
        const std::string what = "maintenance " + value + " of " + full_path(app, path);
        auto member = members_.find(app + "/" + path);
        if (member != members_.end() && member->second.state != MemberState::kTerminated && value == "restart") {
          return {"Succeeded", what + " completed: the member resumed"};
        }
        // Replaced, or retired by the replace step as the cluster shrank: the
        // step does not tell them apart (a limit, docs/operational-state.md).
        return {"Succeeded", what + " completed: the member left the cluster (replaced, or removed as it shrank)"};
      },
      now, batch);
  if (!batch.mutations.empty()) {
    stage(std::move(batch));
  }
  if (!any && running == 0) {
    maintenance_settled_.insert(app);
  }
  return !any && running == 0;
}

// A completed replace says what became of the members it marked: each left,
// and the live members created since the command are their successors; the
// cluster may have shrunk meanwhile (scaled down, or the autoscaler), and
// then the rest were removed, not replaced.
std::string Fleet::replaced_or_removed(const std::string& app, const OperationalValueRecord& v,
                                       const ReplaceTally& tally) const {
  size_t successors = 0;
  for (const auto& [key, index] : by_cluster_) {
    if (key.starts_with(app + "/")) {
      for (const auto& [id, m] : index) {
        const bool successor = is_live(m->state) && m->record.created_at >= v.set_at;
        successors += successor && is_below(member_path(m->record), v.path) ? 1 : 0;
      }
    }
  }
  if (started_at_ > tally.set_at) {
    return "no marked member is left (the controller restarted meanwhile: each member's events say whether it was "
           "replaced or removed as the cluster shrank)";
  }
  if (successors >= tally.marked) {
    return "every member replaced";
  }
  return fmt::format("{} of {} members replaced, {} removed as the cluster shrank", successors, tally.marked,
                     tally.marked - successors);
}

// interactions.h: a rollout that has not finished with a cluster keeps it;
// maintenance replace waits, and says so once per rollout.
bool Fleet::replace_waits_for_rollout(const ClusterRef& cluster, const MaintenanceMarkers& markers,
                                      const ActiveRollout* rollout) {
  if (!rollout) {
    return false;
  }
  auto progress = rollout->progress.find(cluster.path);
  if (progress != rollout->progress.end() && progress->second.status == ClusterRolloutStatus::kDone) {
    return false;
  }
  const Command holding = rollout->phase == RolloutPhase::kPaused         ? Command::kRolloutPaused
                          : rollout->phase == RolloutPhase::kCanaryPaused ? Command::kRolloutCanaryHold
                                                                          : Command::kRollout;
  if (resolve(holding, Command::kMaintenanceReplace) != Resolution::kRunningFirst) {
    return false;
  }
  const std::string prefix = cluster.path + "/";
  const bool marked = std::any_of(markers.begin(), markers.end(), [&](const auto& marker) {
    return marker.second->value == "replace" && marker.first.starts_with(prefix);
  });
  if (!marked) {
    return true;
  }
  const std::string where = full_path(cluster.app->name, cluster.path);
  const std::string message =
      fmt::format("maintenance replace of {} waits for rollout {} ({}) to finish with the cluster: {}", where,
                  rollout->record.id, to_string(rollout->phase), interaction(holding, Command::kMaintenanceReplace).outcome);
  std::string& said = reported_failures_["maintenance-waits/" + where];
  if (said != message) {
    said = message;
    WriteBatch batch;
    batch.mutations.push_back(
        AppendEvent{make_event(clock_.now(), cluster.app->name, where, "", "MaintenanceWaiting", nullptr,
                               rollout->record.id, message)});
    stage(std::move(batch));
    spdlog::info("{}", message);
  }
  return true;
}

bool Fleet::replace_for_maintenance(const ClusterRef& cluster, const MaintenanceMarkers& markers, int desired) {
  if (markers.empty()) {
    return false;
  }
  const std::vector<MemberEntry*> members = members_of(cluster.app->name, cluster.path);
  auto marker = [&](const MemberEntry& m) -> const OperationalValueRecord* {
    auto it = markers.find(member_path(m.record));
    return it != markers.end() && it->second->value == "replace" ? it->second : nullptr;
  };
  const bool marked = std::any_of(members.begin(), members.end(),
                                  [&](const MemberEntry* m) { return marker(*m) != nullptr && is_live(m->state); });
  if (!marked) {
    return false;
  }
  std::vector<RolloutMember> view;
  bool all_at_once = false;
  for (const MemberEntry* m : members) {
    const OperationalValueRecord* v = marker(*m);
    all_at_once = all_at_once || (v != nullptr && v->all_at_once);
    view.push_back(RolloutMember{m->record.id, planned_state(*m), v == nullptr, m->record.revision, m->record.updated_at});
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
    MemberEntry& m = members_.at(id);
    retire(m, "maintenance replace: " + replaced_by(m, desired));  // its marker ends with it
  }
  for (int i = 0; i < step.create; ++i) {
    if (!create_member(cluster, cluster.app->current_revision, "maintenance replace")) {
      break;
    }
  }
  // Successors: members created since the first marker was set.
  std::optional<TimePoint> since;
  for (const MemberEntry* m : members) {
    if (const OperationalValueRecord* v = marker(*m)) {
      since = std::min(since.value_or(v->set_at), v->set_at);
    }
  }
  std::vector<MemberEntry*> replaced;
  std::vector<MemberEntry*> successors;
  for (MemberEntry* m : members_of(cluster.app->name, cluster.path)) {
    if (!is_live(m->state)) {
      continue;
    }
    if (marker(*m)) {
      replaced.push_back(m);
    } else if (since && m->record.created_at >= *since) {
      successors.push_back(m);
    }
  }
  pair_successors(replaced, successors);
  return true;
}

void Fleet::pair_successors(const std::vector<MemberEntry*>& replaced, const std::vector<MemberEntry*>& successors) {
  std::set<std::string> live;
  for (const MemberEntry* s : successors) {
    live.insert(s->record.id);
  }
  std::set<std::string> taken;
  for (MemberEntry* r : replaced) {
    if (live.contains(r->successor)) {
      taken.insert(r->successor);
    } else {
      r->successor.clear();  // its successor failed or left: the next one takes its place
    }
  }
  auto next = successors.begin();
  for (MemberEntry* r : replaced) {
    if (!r->successor.empty()) {
      continue;
    }
    while (next != successors.end() && taken.contains((*next)->record.id)) {
      ++next;
    }
    if (next == successors.end()) {
      return;
    }
    r->successor = (*next)->record.id;
    taken.insert(r->successor);
    ++next;
  }
}

}  // namespace tranche
