// The interaction table (interactions.h). Each row says what the fleet
// does; the unit test interactions_test.cc has one scenario per row and
// fails for a row without one.

#include "engine/reconcile/interactions.h"

#include <array>

#include <fmt/format.h>

namespace tranche {

namespace {

using C = Command;
using R = Resolution;

constexpr std::array kTable = {
    // A rollout holds the cluster: maintenance replace creates members on the
    // current revision, which would roll a waiting or stuck rollout forward.
    Interaction{C::kRollout, C::kMaintenanceReplace, R::kRunningFirst,
                "the rollout keeps the cluster; a marked member the rollout replaces counts as replaced (its marker "
                "ends with it); the others are replaced once the rollout is done with the cluster",
                "MaintenanceWaiting event, once: \"maintenance replace of APP/CLUSTER waits for rollout N\""},
    Interaction{C::kRolloutCanaryHold, C::kMaintenanceReplace, R::kRunningFirst,
                "the canary holds; replacements wait for promote (or abort) and the rest of the rollout",
                "MaintenanceWaiting event, once, naming the rollout"},
    Interaction{C::kRolloutStuck, C::kMaintenanceReplace, R::kRunningFirst,
                "no member is replaced onto the revision that does not get healthy; replacements wait until the "
                "rollout is done, rolled back or aborted",
                "MaintenanceWaiting event, once, naming the rollout"},
    Interaction{C::kRolloutPaused, C::kMaintenanceReplace, R::kRunningFirst,
                "replacements wait until the rollout is resumed and done with the cluster, or aborted",
                "MaintenanceWaiting event, once, naming the rollout"},
    Interaction{C::kMaintenanceReplace, C::kApply, R::kArrivingFirst,
                "the new revision's rollout takes the cluster; replacements not begun wait and go on after it, onto "
                "the new revision; members the rollout replaces count as replaced",
                "MaintenanceWaiting event, once, naming the rollout"},
    Interaction{C::kRollout, C::kMaintenanceRestart, R::kSharedBudget,
                "both go on; a member in Maintenance is unavailable to the rollout and a member being updated or "
                "replaced to the maintenance: together never fewer than desired - maxUnavailable Active",
                "the usual MemberStateChanged events"},
    Interaction{C::kMaintenanceRestart, C::kApply, R::kSharedBudget,
                "as a restart given during a rollout: one maxUnavailable budget for both",
                "the usual MemberStateChanged events"},
    Interaction{C::kMaintenanceRestart, C::kMaintenanceReplace, R::kLatestWins,
                "replace wins: members not yet in Maintenance are replaced; a member in Maintenance finishes its "
                "restart (the step is at its agent) and is replaced after it resumes",
                "CommandSuperseded event and the replace's operation record name the restart's operation, whose "
                "record says Superseded"},
    Interaction{C::kMaintenanceReplace, C::kMaintenanceRestart, R::kLatestWins,
                "restart wins: replacements not begun are cancelled and the marked members are restarted instead; "
                "members already stopping finish, successors already created serve, surplus is scaled down",
                "CommandSuperseded event and the restart's operation record name the replace's operation, whose "
                "record says Superseded"},
    Interaction{C::kMaintenanceRestart, C::kMaintenanceOff, R::kLatestWins,
                "pending restarts are cancelled; members in Maintenance finish and resume",
                "CommandSuperseded event; the restart's operation record says Superseded"},
    Interaction{C::kMaintenanceReplace, C::kMaintenanceOff, R::kLatestWins,
                "pending replacements are cancelled; members already stopping finish, successors serve",
                "CommandSuperseded event; the replace's operation record says Superseded"},
    Interaction{C::kMaintenanceRestart, C::kScaleDown, R::kSpareInFlight,
                "a member in Maintenance is never stopped in the middle of its hook; being out of service already, "
                "it is among the first surplus and is stopped once it resumes; no Active member is taken in its place",
                "ScaleDownWaits event, once: \"scaling down to N: M members in the middle of a step at its agent are "
                "stopped once they are done\""},
    Interaction{C::kMaintenanceReplace, C::kScaleDown, R::kSpareInFlight,
                "members marked for replacement are taken out first (nothing replaces them: the cluster shrinks, "
                "their markers end with them)",
                "MemberStateChanged events: \"scaling down to N\""},
    Interaction{C::kMaintenanceRestart, C::kAutoscalingOn, R::kSpareInFlight,
                "the autoscaler's count is the cluster's desired; its scale-downs treat members in Maintenance as "
                "an operator's do (first surplus, stopped once they resume)",
                "ClusterScaled event; ScaleDownWaits when it must wait"},
    Interaction{C::kMaintenanceRestart, C::kScaleUp, R::kIndependent,
                "new members are not put into maintenance (model.md: it acts on the members that exist when "
                "accepted); they count as Active for its budget once Active",
                "the usual MemberStateChanged events"},
    Interaction{C::kRolloutStuck, C::kScaleUp, R::kServingRevision,
                "the members added go to the revision that serves, in proportion to Active members (none to a "
                "revision nothing of which is Active); the rollout replaces them later like the others",
                "MemberStateChanged events: \"scaling up while rollout N holds: on revision R, which serves\""},
    Interaction{C::kRollout, C::kDelete, R::kCancels,
                "the rollout is Aborted; every member is stopped (members being updated in place finish first)",
                "RolloutPhaseChanged event: \"the application was undeployed\""},
    Interaction{C::kMaintenanceRestart, C::kDelete, R::kCancels,
                "no member is taken into Maintenance any more; a member in Maintenance finishes its hook and is "
                "stopped once it resumes; the node's maintenance ends",
                "OperationalStateChanged event: \"maintenance restart of X ended: the application was undeployed\""},
    Interaction{C::kMaintenanceReplace, C::kDelete, R::kCancels,
                "no member is replaced any more; every member is stopped; the node's maintenance ends",
                "OperationalStateChanged event: \"maintenance replace of X ended: the application was undeployed\""},
    Interaction{C::kRolloutCanaryHold, C::kHostDrain, R::kIndependent,
                "the canary holds; members on the drained host keep running, no new member is placed there",
                "HostStateChanged event"},
    Interaction{C::kRollout, C::kAutohealingOff, R::kIndependent,
                "a failed member keeps its place: neither replaced nor compensated for; the rollout goes on with "
                "the others (desired less the members held), within maxUnavailable, and a failure on the new "
                "revision still counts; autohealing on again heals it onto the current revision",
                "HealingDelayed, then HealingResumed events"},
    Interaction{C::kRollout, C::kApply, R::kLatestWins,
                "the running rollout is Superseded; the new one starts from what members run now",
                "RolloutPhaseChanged event: Superseded"},
    Interaction{C::kDelete, C::kApply, R::kLatestWins, "the application is deployed again at the new revision",
                "ApplicationDeployed event"},
    Interaction{C::kRollout, C::kMigrationLock, R::kArrivingFirst,
                "the rollout pauses at its batch boundary (members already at their agents finish, no new batch) "
                "and resumes when the lock is lifted (complete or cancel); a migration perform supersedes it",
                "RolloutPhaseChanged events: Paused \"paused at its batch boundary by the migration lock of APP "
                "(taken by WHO at WHEN)\", then \"resumed: the migration lock of APP was lifted\""},
    Interaction{C::kMigrationLock, C::kApply, R::kRunningFirst,
                "refused with 409 naming the lock, who took it and when, as every mutating call but migration "
                "calls (set, scale, restart, rollout controls, undo, delete); re-submitted after complete it "
                "proceeds; a dry run still answers",
                "the 409 error: \"APP is locked for migration (the migration lock of APP, taken by WHO at WHEN)\""},
    Interaction{C::kMigrationLock, C::kScaleUp, R::kRunningFirst,
                "the autoscaler's decision is observed, not acted on: the count stays until the lock is lifted, "
                "then the autoscaler decides again",
                "AutoscalingSuspended event, once per decision, naming the lock"},
    Interaction{C::kMigrationLock, C::kAutohealingOn, R::kRunningFirst,
                "a failed member is neither restarted nor replaced (nor compensated for) while the lock holds; it "
                "is healed once the lock is lifted",
                "HealingDelayed event naming the lock, once per member; HealingResumed after the lock is lifted"},
};

constexpr Interaction kIndependentRow{C::kApply, C::kApply, R::kIndependent,
                                      "each command does its part; neither changes what the other does", ""};

}  // namespace

std::span<const Interaction> interactions() { return kTable; }

const Interaction& interaction(Command running, Command arriving) {
  for (const Interaction& row : kTable) {
    if (row.running == running && row.arriving == arriving) {
      return row;
    }
  }
  return kIndependentRow;
}

Resolution resolve(Command running, Command arriving) { return interaction(running, arriving).resolution; }

std::string_view to_string(Command command) {
  switch (command) {
    case C::kRollout:
      return "rollout";
    case C::kRolloutCanaryHold:
      return "rollout (canary hold)";
    case C::kRolloutStuck:
      return "rollout (stuck on an unhealthy revision)";
    case C::kRolloutPaused:
      return "rollout (paused)";
    case C::kMaintenanceRestart:
      return "maintenance restart";
    case C::kMaintenanceReplace:
      return "maintenance replace";
    case C::kMaintenanceOff:
      return "maintenance off";
    case C::kScaleUp:
      return "scale up";
    case C::kScaleDown:
      return "scale down";
    case C::kAutohealingOff:
      return "autohealing off";
    case C::kAutohealingOn:
      return "autohealing on";
    case C::kAutoscalingOff:
      return "autoscaling off";
    case C::kAutoscalingOn:
      return "autoscaling on";
    case C::kDelete:
      return "delete";
    case C::kHostDrain:
      return "host drain";
    case C::kApply:
      return "apply";
    case C::kMigrationLock:
      return "migration lock";
  }
  return "?";
}

std::string_view to_string(Resolution resolution) {
  switch (resolution) {
    case R::kLatestWins:
      return "latest wins";
    case R::kRunningFirst:
      return "running first";
    case R::kArrivingFirst:
      return "arriving first";
    case R::kSharedBudget:
      return "shared budget";
    case R::kSpareInFlight:
      return "spare in flight";
    case R::kServingRevision:
      return "serving revision";
    case R::kCancels:
      return "cancels";
    case R::kIndependent:
      return "independent";
  }
  return "?";
}

std::string interaction_table_markdown() {
  std::string out = "| running | given meanwhile | resolution | outcome | the operator is told |\n";
  out += "| --- | --- | --- | --- | --- |\n";
  for (const Interaction& row : kTable) {
    out += fmt::format("| {} | {} | {} | {} | {} |\n", to_string(row.running), to_string(row.arriving),
                       to_string(row.resolution), row.outcome, row.told);
  }
  return out;
}

}  // namespace tranche
