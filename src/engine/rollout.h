#pragma once
// Rollouts (updates.md): the phases of one rollout as a table, its durable
// per-cluster memory, the order in which clusters roll, and the planner that
// decides the next safe step for one cluster.
//
// The planner is a pure function of the cluster's members and the clock:
// it is level-triggered, so a controller restarted at any instant recomputes
// the same step from the persisted member records and never updates a member
// twice or skips one. Invariants it keeps at every step (rolling):
//   Active members        >= desired - maxUnavailable
//   members that exist    <= desired + maxSurge   (replace; in-place: desired)
// where a member exists from Created until Terminated (Stopping included).

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "engine/fleet/member_state.h"
#include "model/manifest.h"

namespace tranche {

enum class RolloutPhase {
  kProgressing,
  kPaused,
  kCanaryPaused,
  kRollingBack,
  kSucceeded,
  kFailed,
  kAborted,
  kSuperseded,
};

std::string_view to_string(RolloutPhase phase);
std::optional<RolloutPhase> rollout_phase_from_string(std::string_view name);
bool can_transition(RolloutPhase from, RolloutPhase to);
// Succeeded, Failed, Aborted, Superseded: nothing moves any more.
bool is_finished(RolloutPhase phase);

// How far one cluster is in a rollout.
enum class ClusterRolloutStatus {
  kWaiting,       // for the clusters it is ordered after
  kProgressing,   // members are being changed
  kCanaryPaused,  // its canary members are Active; waits for promote
  kDone,          // every member on the target, Active
};
std::string_view to_string(ClusterRolloutStatus status);
std::optional<ClusterRolloutStatus> cluster_rollout_status_from_string(std::string_view name);

// The rollout's own memory of one cluster, persisted in the rollout record.
struct ClusterProgress {
  ClusterRolloutStatus status = ClusterRolloutStatus::kWaiting;
  int failures = 0;
  std::set<std::string> failed;  // members counted as failures, each once
  bool operator==(const ClusterProgress&) const = default;
};
using RolloutProgress = std::map<std::string, ClusterProgress>;  // by cluster path

std::string progress_to_json(const RolloutProgress& progress);
Result<RolloutProgress> progress_from_json(const std::string& text);

// For each cluster path, the clusters that must be Done before it starts:
// `dependencies` puts a node after everything it (or an ancestor) dependsOn,
// `reverse` turns that around, `parallel` orders nothing.
std::map<std::string, std::set<std::string>> rollout_prerequisites(const ApplicationSpec& spec);

// "rolling replace of 6 members, maxUnavailable 1, maxSurge 1"; for
// all-at-once it says that the cluster will be unavailable.
std::string describe_update_policy(const ClusterSpec& cluster);

// One member as the planner sees it.
struct RolloutMember {
  // The caller's member id, which outlives the plan: the view of a
  // 100,000-member cluster is built each pass, and copying every id was most
  // of that.
  std::string_view id;
  MemberState state = MemberState::kCreated;
  bool on_target = false;  // on the target revision, or on one with the same template
  int64_t revision = 0;
  TimePoint since{};  // when it entered `state`
};

struct ClusterRolloutInput {
  UpdatePolicy policy;
  int desired = 0;
  std::vector<RolloutMember> members;
  bool promoted = false;  // past the canary pause
  TimePoint now{};
  // The revision the rollout started from: where healing goes while the
  // canary holds when no old member is left to tell (0: none).
  int64_t from_revision = 0;
  // While a batch is in flight (the gate is closed), members missing below
  // desired (a scale-up, a member lost) go to the old revision in proportion
  // to the Active members of each side, as Kubernetes' proportional scaling
  // does: none to a new revision nothing of which is Active yet, so a
  // rollout stuck on a revision that never gets healthy still scales
  // (reconcile/interactions.h, "serving revision").
  bool fill_where_serving = false;
  // A member whose step is at its agent (Maintenance, Updating) is never
  // retired as surplus in the middle of it: it counts as surplus and goes
  // once its step is done (reconcile/interactions.h, "spare in flight").
  bool spare_in_flight = false;
};

struct ClusterRolloutStep {
  int create = 0;                    // new members on the target revision
  int create_old = 0;                // replacements on `old_revision` while the canary holds new ones back
  int create_serving = 0;            // on `old_revision` too: missing members placed where they serve
  int64_t old_revision = 0;          // the revision most old members are on
  std::vector<std::string> retire;   // to stop
  std::vector<std::string> update;   // to update in place
  std::vector<std::string> overdue;  // not Active within progressDeadlineSeconds: failures
  bool done = false;                 // every member on the target and Active, none extra
  bool canary_reached = false;       // the canary members are Active and promote has not been given
  std::string waiting;               // why nothing moves, when nothing does
};

ClusterRolloutStep plan_cluster_rollout(const ClusterRolloutInput& input);

}  // namespace tranche
