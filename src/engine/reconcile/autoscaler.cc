// The autoscaler (model.md "Autoscaling"): load windows kept as running
// sums, and the member count they call for.

#include "engine/fleet/fleet.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/reconcile/interactions.h"

namespace tranche {

namespace {

using nlohmann::json;

}  // namespace

bool Fleet::tracks_load(const std::string& app) const {
  for (auto it = loads_.lower_bound(app + "/"); it != loads_.end() && it->first.starts_with(app + "/"); ++it) {
    if (!it->second.empty()) {
      return true;
    }
  }
  return false;
}

int Fleet::autoscale(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& switches,
                     const std::vector<ClusterScaleRecord>& scales) {
  const TimePoint now = clock_.now();
  const AutoscalingPolicy& policy = cluster.spec->autoscaling;
  const MemberCounts& counts = cluster.spec->members;
  const std::string where = cluster.app->name + "/" + cluster.path;
  ClusterLoad& load = loads_[where];

  load.expire_before(now - std::chrono::seconds(policy.window_seconds));
  const bool window_covered =
      load.observed_since && now - *load.observed_since >= std::chrono::seconds(policy.window_seconds);
  if (!load.empty() && window_covered) {
    load.average = load.sum / static_cast<double>(load.count);
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

  const bool enabled = resolve(switches, cluster.path, Setting::kAutoscaling).effective == "on";
  const bool cooled = !load.last_decision || now - *load.last_decision >= std::chrono::seconds(policy.cooldown_seconds);
  const int wanted = load.state == "overload" && desired < counts.max    ? desired + 1
                     : load.state == "underload" && desired > counts.min ? desired - 1
                                                                         : desired;
  if (!enabled || !cooled || wanted == desired || !cluster.app->deployed) {
    load.suspended.reset();
    return desired;
  }
  // updates.md: a migration lock suspends the decision: said once (per
  // count wanted), not acted on.
  const bool locked_first = resolve(Command::kMigrationLock, Command::kScaleUp) == Resolution::kRunningFirst;
  if (const LockEntry* lock = locked_first ? migration_lock(cluster.app->name) : nullptr) {
    if (load.suspended != wanted) {
      load.suspended = wanted;
      const std::string message = fmt::format("autoscaling {} from {} to {} members ({}: average load {:.2f}) is "
                                              "suspended by {}",
                                              where, desired, wanted, load.state, *load.average,
                                              describe_lock(lock->record));
      WriteBatch batch;
      batch.mutations.push_back(AppendEvent{
          make_event(now, cluster.app->name, where, "", "AutoscalingSuspended", desired, wanted, message)});
      stage(std::move(batch));
      spdlog::info("{}", message);
    }
    return desired;
  }
  load.suspended.reset();
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

}  // namespace tranche
