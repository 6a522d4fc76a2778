#include "engine/rollout.h"

#include <algorithm>
#include <array>
#include <initializer_list>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tranche {

namespace {

using nlohmann::json;
using P = RolloutPhase;

struct PhaseRow {
  P from;
  std::initializer_list<P> to;
};

// Why each edge exists:
//  Progressing  -> Paused (operator, or onFailure: pause), CanaryPaused (canary Active), RollingBack
//                  (onFailure: rollback), Succeeded, Failed (cannot roll back), Aborted, Superseded (newer apply)
//  Paused       -> Progressing / RollingBack (resume: back to what it was doing), Aborted, Superseded
//  CanaryPaused -> Progressing (promote), Paused / RollingBack (a canary failed), Aborted, Superseded
//  RollingBack  -> Paused (operator), Failed (rolled back, or the rollback failed too), Aborted, Superseded
const PhaseRow kPhases[] = {
    {P::kProgressing,
     {P::kPaused, P::kCanaryPaused, P::kRollingBack, P::kSucceeded, P::kFailed, P::kAborted, P::kSuperseded}},
    {P::kPaused, {P::kProgressing, P::kRollingBack, P::kAborted, P::kSuperseded}},
    {P::kCanaryPaused, {P::kProgressing, P::kPaused, P::kRollingBack, P::kFailed, P::kAborted, P::kSuperseded}},
    {P::kRollingBack, {P::kPaused, P::kFailed, P::kAborted, P::kSuperseded}},
    {P::kSucceeded, {}},
    {P::kFailed, {}},
    {P::kAborted, {}},
    {P::kSuperseded, {}},
};

constexpr std::array<std::pair<P, std::string_view>, 8> kPhaseNames = {{
    {P::kProgressing, "Progressing"},
    {P::kPaused, "Paused"},
    {P::kCanaryPaused, "CanaryPaused"},
    {P::kRollingBack, "RollingBack"},
    {P::kSucceeded, "Succeeded"},
    {P::kFailed, "Failed"},
    {P::kAborted, "Aborted"},
    {P::kSuperseded, "Superseded"},
}};

using C = ClusterRolloutStatus;
constexpr std::array<std::pair<C, std::string_view>, 4> kStatusNames = {{
    {C::kWaiting, "Waiting"},
    {C::kProgressing, "Progressing"},
    {C::kCanaryPaused, "CanaryPaused"},
    {C::kDone, "Done"},
}};

template <class E, size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& names, E value) {
  for (const auto& [v, name] : names) {
    if (v == value) {
      return name;
    }
  }
  return "Unknown";
}

template <class E, size_t N>
std::optional<E> value_of(const std::array<std::pair<E, std::string_view>, N>& names, std::string_view name) {
  for (const auto& [v, n] : names) {
    if (n == name) {
      return v;
    }
  }
  return std::nullopt;
}

// "" + "web" -> "web"; "backend" + "db" -> "backend/db".
std::string child_path(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "/" + name;
}

std::string parent_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

bool at_or_below(const std::string& path, const std::string& node) {
  return path == node || path.starts_with(node + "/");
}

}  // namespace

std::string_view to_string(RolloutPhase phase) { return name_of(kPhaseNames, phase); }

std::optional<RolloutPhase> rollout_phase_from_string(std::string_view name) { return value_of(kPhaseNames, name); }

bool can_transition(RolloutPhase from, RolloutPhase to) {
  for (const auto& row : kPhases) {
    if (row.from == from) {
      return std::find(row.to.begin(), row.to.end(), to) != row.to.end();
    }
  }
  return false;
}

bool is_finished(RolloutPhase phase) {
  switch (phase) {
    case P::kSucceeded:
    case P::kFailed:
    case P::kAborted:
    case P::kSuperseded:
      return true;
    case P::kProgressing:
    case P::kPaused:
    case P::kCanaryPaused:
    case P::kRollingBack:
      return false;
  }
  return false;
}

std::string_view to_string(ClusterRolloutStatus status) { return name_of(kStatusNames, status); }

std::optional<ClusterRolloutStatus> cluster_rollout_status_from_string(std::string_view name) {
  return value_of(kStatusNames, name);
}

std::string progress_to_json(const RolloutProgress& progress) {
  json doc = json::object();
  for (const auto& [path, c] : progress) {
    doc[path] = {{"status", to_string(c.status)}, {"failures", c.failures}, {"failed", c.failed}};
  }
  return doc.dump();
}

Result<RolloutProgress> progress_from_json(const std::string& text) {
  const json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) {
    return fail(ErrorCode::kInternal, "rollout progress is not a JSON object");
  }
  RolloutProgress progress;
  try {
    for (const auto& [path, c] : doc.items()) {
      auto status = cluster_rollout_status_from_string(c.at("status").get<std::string>());
      if (!status) {
        return fail(ErrorCode::kInternal, "rollout progress of " + path + " has an unknown status");
      }
      progress[path] =
          ClusterProgress{*status, c.at("failures").get<int>(), c.at("failed").get<std::set<std::string>>()};
    }
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInternal, std::string("rollout progress does not parse: ") + e.what());
  }
  return progress;
}

std::map<std::string, std::set<std::string>> rollout_prerequisites(const ApplicationSpec& spec) {
  const auto nodes = flatten(spec);
  std::vector<std::string> clusters;
  std::map<std::string, const std::vector<std::string>*> depends_on;  // node path -> sibling names
  for (const auto& n : nodes) {
    if (n.cluster) {
      clusters.push_back(n.path);
      depends_on[n.path] = &n.cluster->depends_on;
    } else if (n.group) {
      depends_on[n.path] = &n.group->depends_on;
    }
  }
  std::map<std::string, std::set<std::string>> after;  // under `dependencies`
  for (const auto& c : clusters) {
    after[c];
    // The cluster and each group above it wait for the siblings they name.
    for (std::string node = c; !node.empty(); node = parent_path(node)) {
      for (const auto& sibling : *depends_on[node]) {
        const std::string target = child_path(parent_path(node), sibling);
        for (const auto& other : clusters) {
          if (at_or_below(other, target)) {
            after[c].insert(other);
          }
        }
      }
    }
  }
  switch (spec.update_order) {
    case ApplicationSpec::UpdateOrder::kDependencies:
      return after;
    case ApplicationSpec::UpdateOrder::kReverse: {
      std::map<std::string, std::set<std::string>> reversed;
      for (const auto& c : clusters) {
        reversed[c];
      }
      for (const auto& [c, prerequisites] : after) {
        for (const auto& p : prerequisites) {
          reversed[p].insert(c);
        }
      }
      return reversed;
    }
    case ApplicationSpec::UpdateOrder::kParallel:
      for (auto& [c, prerequisites] : after) {
        prerequisites.clear();
      }
      return after;
  }
  return after;
}

std::string describe_update_policy(const ClusterSpec& c) {
  const UpdatePolicy& u = c.update;
  const bool replace = u.method == UpdatePolicy::Method::kReplace;
  const int desired = c.members.desired;
  if (u.strategy == UpdatePolicy::Strategy::kAllAtOnce) {
    return fmt::format(
        "all-at-once {}: all {} members go out of service together; the cluster is unavailable until they are back",
        replace ? "replace" : "in-place", desired);
  }
  std::string text = fmt::format("rolling {} of {} members, maxUnavailable {}", replace ? "replace" : "in-place",
                                 desired, resolve_max_unavailable(u, desired));
  if (replace) {
    text += fmt::format(", maxSurge {}", resolve_max_surge(u, desired));
  }
  if (u.canary > 0) {
    text += fmt::format(", canary {}", u.canary);
  }
  return text;
}

ClusterRolloutStep plan_cluster_rollout(const ClusterRolloutInput& in) {
  using S = MemberState;
  const UpdatePolicy& policy = in.policy;
  const int desired = in.desired;
  const bool replace = policy.method == UpdatePolicy::Method::kReplace;
  const bool all_at_once = policy.strategy == UpdatePolicy::Strategy::kAllAtOnce;
  const int max_unavailable = resolve_max_unavailable(policy, desired);
  const int max_surge = replace && !all_at_once ? resolve_max_surge(policy, desired) : 0;
  const auto deadline = std::chrono::seconds(policy.progress_deadline_seconds);

  ClusterRolloutStep step;
  int live = 0, exists = 0, available = 0, new_live = 0, new_active = 0, in_flight = 0, old_live = 0, old_leaving = 0;
  std::optional<TimePoint> last_settled;  // when the newest target member became Active
  std::map<int64_t, int> old_revisions;
  std::vector<const RolloutMember*> old_active, old_idle, new_not_serving, new_serving;
  for (const RolloutMember& m : in.members) {
    const bool is_live_member = is_live(m.state);
    exists += is_live_member || m.state == S::kDraining || m.state == S::kStopping ? 1 : 0;
    if (!m.on_target && m.state != S::kTerminated) {
      ++old_revisions[m.revision];  // also of failed ones: the revision to heal onto
    }
    if (!is_live_member) {
      old_leaving += !m.on_target && (m.state == S::kDraining || m.state == S::kStopping) ? 1 : 0;
      continue;
    }
    ++live;
    available += m.state == S::kActive ? 1 : 0;
    if (m.on_target) {
      ++new_live;
      if (m.state == S::kActive) {
        ++new_active;
        new_serving.push_back(&m);
        last_settled = std::max(last_settled.value_or(m.since), m.since);
        continue;
      }
      ++in_flight;
      const bool changing = m.state == S::kCreated || m.state == S::kStarting || m.state == S::kUpdating;
      if (changing && in.now - m.since > deadline) {
        step.overdue.emplace_back(m.id);
      }
      new_not_serving.push_back(&m);
      continue;
    }
    ++old_live;
    if (m.state == S::kActive) {
      old_active.push_back(&m);
    } else if (m.state == S::kCreated || m.state == S::kStarting) {
      old_idle.push_back(&m);  // not serving yet: taking it out costs no availability
    }
  }
  int most = 0;
  for (const auto& [revision, count] : old_revisions) {
    if (count > most) {
      most = count;
      step.old_revision = revision;
    }
  }
  if (most == 0) {
    step.old_revision = in.from_revision;
  }

  step.done = old_live == 0 && live == desired && new_active == desired;
  if (step.done) {
    return step;
  }
  if (old_live == 0 && live > desired) {
    // Scaled down meanwhile: the least useful first, as the reconciler does.
    new_not_serving.insert(new_not_serving.end(), new_serving.rbegin(), new_serving.rend());
    for (size_t i = 0; i < static_cast<size_t>(live - desired); ++i) {
      const RolloutMember* m = new_not_serving[i];
      if (in.spare_in_flight && (m->state == S::kMaintenance || m->state == S::kUpdating)) {
        continue;  // surplus, but its step is at its agent: it goes once that is done
      }
      step.retire.emplace_back(m->id);
    }
    return step;
  }

  if (all_at_once) {
    // The whole cluster out of service together, then back on the target.
    for (const RolloutMember* m : old_active) {
      (replace ? step.retire : step.update).emplace_back(m->id);
    }
    for (const RolloutMember* m : old_idle) {
      step.retire.emplace_back(m->id);
    }
    const bool old_gone = old_live == 0 && old_leaving == 0;
    if (!replace || old_gone) {
      step.create = std::max(0, desired - (live - static_cast<int>(step.retire.size())));
    }
    if (step.retire.empty() && step.update.empty() && step.create == 0) {
      step.waiting = old_gone ? "waiting for new members to become Active" : "waiting for old members to stop";
    }
    return step;
  }

  // Rolling. The canary holds back all but its first members until promoted.
  const int new_target = policy.canary > 0 && !in.promoted ? std::min(desired, policy.canary) : desired;
  const int old_target = desired - new_target;
  step.canary_reached = new_target < desired && new_active >= new_target;

  const auto pause = std::chrono::seconds(policy.pause_between_batches_seconds);
  const bool batch_settled = in_flight == 0;
  const bool paused_between = batch_settled && last_settled && in.now < *last_settled + pause;
  const bool gate_open = batch_settled && !paused_between;

  // Missing members while the batch is in flight, and how many of them go
  // to the old revision: in proportion to Active members (rounded down, the
  // rest to the new revision, as Kubernetes gives leftovers to the newest).
  int fill_old = 0;
  const bool fill_serving = in.fill_where_serving && !gate_open && step.old_revision != 0;
  if (fill_serving && !old_active.empty()) {
    const int missing = std::max(0, desired - live);
    const int old_serving = static_cast<int>(old_active.size());
    fill_old = missing * old_serving / (old_serving + new_active);
  }
  int old_kept = old_live;
  for (const RolloutMember* m : old_idle) {
    // Old members still starting while the batch is in flight are capacity
    // that will serve: kept when filling where it serves.
    if (old_kept > old_target && !fill_serving) {
      step.retire.emplace_back(m->id);
      --old_kept;
      --live;
    }
  }
  // Whatever takes an available member out starts a batch: only once the
  // previous one is Active (for minReadySeconds) plus the pause.
  int still_available = available;
  if (gate_open) {
    for (const RolloutMember* m : old_active) {
      if (still_available - 1 < desired - max_unavailable) {
        break;
      }
      if (!replace && new_live < new_target) {
        step.update.emplace_back(m->id);
        ++new_live;
        --still_available;
      } else if (old_kept > old_target) {
        // Replaced by a new member (created below); or, in place, left over
        // once the target has its members (scaled down meanwhile): surplus,
        // which nothing else retires while the rollout holds the cluster.
        step.retire.emplace_back(m->id);
        --old_kept;
        --live;
        --still_available;
      }
    }
  }
  // Retired members still exist until stopped: room comes when they are gone.
  int room = desired + max_surge - exists;
  int create = std::min(new_target - new_live, room);
  if (!gate_open) {
    create = std::min(create, desired - live - fill_old);  // a closed gate only fills what is missing
  }
  step.create = std::max(0, create);
  live += step.create;
  new_live += step.create;
  room -= step.create;
  step.create_serving = std::max(0, std::min(fill_old, room));
  live += step.create_serving;
  room -= step.create_serving;
  if (new_live >= new_target && old_target > 0 && step.old_revision != 0) {
    step.create_old = std::max(0, std::min(desired - live, room));
  }

  if (step.retire.empty() && step.update.empty() && step.create == 0 && step.create_old == 0 &&
      step.create_serving == 0) {
    step.waiting = step.canary_reached ? "canary of " + std::to_string(new_target) + " Active: waiting for promote"
                   : !batch_settled    ? "waiting for the batch to become Active"
                   : paused_between    ? "pausing between batches"
                   : room <= 0         ? "waiting for members to stop (maxSurge)"
                                       : "waiting for availability (maxUnavailable)";
  }
  return step;
}

}  // namespace tranche
