// Maintenance (model.md "maintenance restart|replace"), autohealing off,
// and the autoscaler's load windows.

#include "engine/fleet.h"

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

// model.md, "autohealing off": the fact is recorded and published once, and
// nothing is started or stopped for the member.
void Fleet::delay_healing(MemberEntry& m) {
  if (m.record.healing_delayed_since) {
    return;
  }
  const std::string message =
      "autohealing is off: " + m.record.id + " (" + m.record.state + ") is neither restarted nor replaced";
  spdlog::warn("{}", message);
  record_healing(m, clock_.now(), "HealingDelayed", message);
}

// Autohealing is back on for a member that still needs it: say for how long
// healing waited, then heal as usual.
void Fleet::resume_healing(MemberEntry& m) {
  const auto waited = duration_cast<milliseconds>(clock_.now() - *m.record.healing_delayed_since);
  const std::string message = "autohealing is on again: healing of " + m.record.id + " had been delayed since " +
                              format_rfc3339(*m.record.healing_delayed_since) + " (" + format_duration(waited) + ")";
  spdlog::info("{}", message);
  record_healing(m, std::nullopt, "HealingResumed", message);
}

// The member's healing waits since `delayed_since` (or no longer waits),
// staged with the event that tells the operator.
void Fleet::record_healing(MemberEntry& m, std::optional<TimePoint> delayed_since, const char* event,
                           const std::string& message) {
  MemberRecord next = m.record;
  next.healing_delayed_since = delayed_since;
  WriteBatch batch;
  batch.mutations.push_back(PutMember{next});
  batch.mutations.push_back(AppendEvent{make_event(clock_.now(), m.record.app, full_path(m.record.app, m.record.cluster),
                                                   m.record.id, event, m.record.state, m.record.state, message)});
  stage(std::move(batch));
  m.record = std::move(next);
}

int Fleet::autoscale(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& values,
                     const std::vector<ClusterScaleRecord>& scales) {
  const TimePoint now = clock_.now();
  const AutoscalingPolicy& policy = cluster.spec->autoscaling;
  const MemberCounts& counts = cluster.spec->members;
  const std::string where = cluster.app->name + "/" + cluster.path;
  ClusterLoad& load = loads_[where];

  load.expire_before(now - std::chrono::seconds(policy.window_seconds));
  const bool window_covered =
      load.observed_since && now - *load.observed_since >= std::chrono::seconds(policy.window_seconds);
  if (!load.samples.empty() && window_covered) {
    load.average = load.sum / static_cast<double>(load.samples.size());
    const std::string state = *load.average > policy.scale_up_above     ? "overload"
                              : *load.average < policy.scale_down_below ? "underload"
                                                                        : "normal";
    if (state != load.state) {
      const std::string message =
          fmt::format("average load {:.2f} over {}s (scale up above {}, down below {})", *load.average,
                      policy.window_seconds, policy.scale_up_above, policy.scale_down_below);
      WriteBatch batch;
      batch.mutations.push_back(
          AppendEvent{make_event(now, cluster.app->name, where, "", "LoadStateChanged", load.state, state, message)});
      stage(std::move(batch));
      spdlog::info("{}: load {} -> {}: {}", where, load.state, state, message);
      load.state = state;
    }
  }

  // The autoscaler's count holds while the operator's desired is unchanged.
  int desired = counts.desired;
  auto scale = std::find_if(scales.begin(), scales.end(),
                            [&](const ClusterScaleRecord& s) { return s.cluster == cluster.path; });
  if (scale != scales.end() && scale->base_desired == counts.desired) {
    desired = static_cast<int>(std::clamp<int64_t>(scale->desired, counts.min, counts.max));
  }
  scaled_[where] = desired != counts.desired ? std::optional<int>(desired) : std::nullopt;

  const bool enabled = resolve(values, cluster.path, Setting::kAutoscaling).effective == "on";
  const bool cooled = !load.last_decision || now - *load.last_decision >= std::chrono::seconds(policy.cooldown_seconds);
  const int wanted = load.state == "overload" && desired < counts.max    ? desired + 1
                     : load.state == "underload" && desired > counts.min ? desired - 1
                                                                         : desired;
  if (!enabled || !cooled || wanted == desired || !cluster.app->deployed) {
    return desired;
  }
  const std::string reason = load.state + ": " + fmt::format("average load {:.2f}", *load.average);
  WriteBatch batch;
  batch.mutations.push_back(PutClusterScale{{cluster.app->name, cluster.path, wanted, counts.desired, reason, now}});
  batch.mutations.push_back(AppendEvent{make_event(now, cluster.app->name, where, "", "ClusterScaled",
                                                   std::to_string(desired), std::to_string(wanted),
                                                   "autoscaling " + where + " from " + std::to_string(desired) +
                                                       " to " + std::to_string(wanted) + " members (" + reason + ")")});
  stage(std::move(batch));
  spdlog::info("{}: autoscaling {} -> {} ({})", where, desired, wanted, reason);
  load.last_decision = now;
  scaled_[where] = wanted != counts.desired ? std::optional<int>(wanted) : std::nullopt;
  return wanted;
}

json Fleet::load_json(const std::string& app) const {
  std::lock_guard lock(mu_);
  json out = json::object();
  const std::string prefix = app + "/";
  for (const auto& [key, load] : loads_) {
    if (key.starts_with(prefix)) {
      json j = {{"state", load.state}};
      j["average"] = load.average ? json(*load.average) : json(nullptr);
      auto scaled = scaled_.find(key);
      j["scaledDesired"] = scaled != scaled_.end() && scaled->second ? json(*scaled->second) : json(nullptr);
      out[key.substr(prefix.size())] = std::move(j);
    }
  }
  return out;
}

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

}  // namespace tranche
