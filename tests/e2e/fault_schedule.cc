// The campaign's schedule: drawn from the seed alone, so that a failing run
// replays the same operations and faults in the same order with the same
// lengths (what the processes do in between still depends on timing).

#include <string>

#include "fault_campaign.h"

namespace tranche::e2e::campaign {

using std::chrono::milliseconds;

std::vector<Step> make_schedule(uint64_t seed, int faults, const WebSpec& first, int hosts, int linked_hosts) {
  std::mt19937_64 random(seed);
  auto pick = [&](int low, int high) { return std::uniform_int_distribution<int>(low, high)(random); };
  WebSpec spec = first;
  int next_version = 2;
  bool autohealing = true;
  std::vector<Step> steps;
  for (int i = 0; i < faults; ++i) {
    Step step;
    // Most faults land on something moving; some on a cluster at rest.
    if (pick(1, 10) <= 7) {
      Operation op;
      const int roll = pick(1, 100);
      if (roll <= 20) {
        op.kind = OperationKind::kScale;
        const int before = spec.desired;
        while (spec.desired == before) {
          spec.desired = pick(3, 6);
        }
      } else if (roll <= 45) {
        op.kind = OperationKind::kUpdateInPlace;
        spec.version = "v" + std::to_string(next_version++);
        spec.in_place = true;
        spec.max_unavailable = pick(1, 2);
        spec.max_surge = 1;
      } else if (roll <= 65) {
        op.kind = OperationKind::kUpdateReplace;
        spec.version = "v" + std::to_string(next_version++);
        spec.in_place = false;
        spec.max_unavailable = pick(0, 1);
        spec.max_surge = pick(1, 2);
      } else if (roll <= 77) {
        op.kind = OperationKind::kMaintenanceRestart;
      } else if (roll <= 81) {
        op.kind = OperationKind::kMaintenanceRestartAllAtOnce;
      } else if (roll <= 91) {
        op.kind = OperationKind::kMaintenanceReplace;
      } else {
        op.kind = autohealing ? OperationKind::kAutohealingOff : OperationKind::kAutohealingOn;
        autohealing = !autohealing;
      }
      op.spec = spec;
      step.operation = op;
    }
    step.lead = milliseconds(pick(300, 2500));
    const int roll = pick(1, 100);
    if (roll <= 30) {
      step.fault = Fault{FaultKind::kKillController, 0, milliseconds(0)};
    } else if (roll <= 55) {
      step.fault = Fault{FaultKind::kKillAgent, pick(0, hosts - 1), milliseconds(pick(0, 1000))};
    } else if (roll <= 80) {
      step.fault = Fault{FaultKind::kPauseAgent, pick(0, hosts - 1), milliseconds(pick(500, 4000))};
    } else {
      step.fault = Fault{FaultKind::kCutLink, pick(0, linked_hosts - 1), milliseconds(pick(1000, 6000))};
    }
    steps.push_back(step);
  }
  return steps;
}

std::string describe(const Operation& op) {
  const WebSpec& s = op.spec;
  const std::string policy = " (maxUnavailable " + std::to_string(s.max_unavailable) + ", maxSurge " +
                             std::to_string(s.max_surge) + ", desired " + std::to_string(s.desired) + ")";
  switch (op.kind) {
    case OperationKind::kScale:
      return "scale to " + std::to_string(s.desired);
    case OperationKind::kUpdateInPlace:
      return "update in-place to " + s.version + policy;
    case OperationKind::kUpdateReplace:
      return "update replace to " + s.version + policy;
    case OperationKind::kMaintenanceRestart:
      return "maintenance restart";
    case OperationKind::kMaintenanceRestartAllAtOnce:
      return "maintenance restart --all-at-once";
    case OperationKind::kMaintenanceReplace:
      return "maintenance replace";
    case OperationKind::kAutohealingOff:
      return "autohealing off";
    case OperationKind::kAutohealingOn:
      return "autohealing on";
  }
  return "?";
}

const char* name_of(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKillController:
      return "kill-controller";
    case FaultKind::kKillAgent:
      return "kill-agent";
    case FaultKind::kPauseAgent:
      return "pause-agent";
    case FaultKind::kCutLink:
      return "cut-link";
  }
  return "?";
}

std::string describe(const Fault& fault) {
  const std::string ms = std::to_string(fault.hold.count()) + " ms";
  switch (fault.kind) {
    case FaultKind::kKillController:
      return "SIGKILL the controller";
    case FaultKind::kKillAgent:
      return "SIGKILL agent " + std::to_string(fault.host) + ", restart after " + ms;
    case FaultKind::kPauseAgent:
      return "SIGSTOP agent " + std::to_string(fault.host) + " for " + ms;
    case FaultKind::kCutLink:
      return "cut host " + std::to_string(fault.host) + "'s link for " + ms;
  }
  return "?";
}

}  // namespace tranche::e2e::campaign
