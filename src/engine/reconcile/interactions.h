#pragma once
// What happens when one command is given while another still runs on the
// same cluster (model.md "Ordering": the last accepted command wins; a
// superseding command cancels pending steps; steps already handed to an
// agent finish and are reported). Every pair the fleet can meet is one row
// of kInteractions; the reconcilers ask resolve() at each point where two
// of them could contend, instead of deciding it in scattered `if`s, and
// docs/operational-state.md publishes the same table (interaction_table_markdown()).
//
// A pair not in the table does not contend: each command does its part and
// neither changes what the other does (Resolution::kIndependent).

#include <span>
#include <string>
#include <string_view>

namespace tranche {

// A command, or the state a running one is in, as far as contention goes.
enum class Command {
  kRollout,             // an apply's rollout moving members (Progressing, RollingBack)
  kRolloutCanaryHold,   // its canary members are Active, waiting for promote
  kRolloutStuck,        // its new members never get healthy (Starting, Failed)
  kRolloutPaused,       // onFailure: pause, a balancer that does not answer, or the operator
  kMaintenanceRestart,
  kMaintenanceReplace,
  kMaintenanceOff,
  kScaleUp,             // a new desired or the autoscaler's count, upwards
  kScaleDown,
  kAutohealingOff,
  kAutohealingOn,
  kAutoscalingOff,
  kAutoscalingOn,
  kDelete,              // delete/undeploy
  kHostDrain,
  kApply,               // a new revision (its rollout begins)
  kMigrationLock,       // migration begin: the application (or the platform) locked until complete or cancel
};

enum class Resolution {
  // The arriving command replaces the running one's pending steps; steps at
  // an agent finish first.
  kLatestWins,
  // The arriving command waits until the running one is done with the cluster.
  kRunningFirst,
  // The arriving command takes the cluster; the running one's pending steps
  // wait and go on after it.
  kArrivingFirst,
  // Both go on, and together they never leave fewer than
  // desired - maxUnavailable members Active.
  kSharedBudget,
  // Both go on, but a member whose step is at an agent (Maintenance,
  // Updating) is never stopped by the arriving command: it takes others
  // first, and that member only once its step is done.
  kSpareInFlight,
  // New members go where they can serve: missing members are split between
  // the old and the new revision in proportion to their Active members
  // (Kubernetes' proportional scaling), so a revision nothing of which is
  // Active gets none.
  kServingRevision,
  // The arriving command ends the running one: its pending steps are
  // cancelled, steps at an agent finish, and its end is reported.
  kCancels,
  kIndependent,
};

struct Interaction {
  Command running;
  Command arriving;
  Resolution resolution;
  std::string_view outcome;  // who wins, what is cancelled, what finishes
  std::string_view told;     // the event and message the operator gets
};

std::span<const Interaction> interactions();
// The row for (running, arriving); for a pair without one, a row that says
// kIndependent.
const Interaction& interaction(Command running, Command arriving);
Resolution resolve(Command running, Command arriving);

std::string_view to_string(Command command);
std::string_view to_string(Resolution resolution);

// The table as docs/operational-state.md shows it.
std::string interaction_table_markdown();

}  // namespace tranche
