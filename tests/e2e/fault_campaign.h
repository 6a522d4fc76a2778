#pragma once
// The fault campaign (quality.md "Reliability", "Fault campaign"): a seeded
// schedule of operations and faults, and the observer that checks the
// budgets of updates.md on the controller's event log at every committed
// instant. The test that drives them is fault_campaign_test.cc.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace tranche::e2e::campaign {

// ---- the schedule ----------------------------------------------------------

// What an operator does to the one cluster between faults.
enum class OperationKind {
  kScale,                        // apply with another desired count, same template
  kUpdateInPlace,                // apply a new version, method in-place, rolling
  kUpdateReplace,                // apply a new version, method replace, rolling
  kMaintenanceRestart,           // set maintenance restart (rolling)
  kMaintenanceRestartAllAtOnce,  // set maintenance restart --all-at-once
  kMaintenanceReplace,           // set maintenance replace (rolling)
  kAutohealingOff,
  kAutohealingOn,
};

// The manifest's fields the campaign varies; the rest is fixed.
struct WebSpec {
  int desired = 4;
  std::string version = "v1";
  bool in_place = true;
  int max_unavailable = 1;
  int max_surge = 1;
};

struct Operation {
  OperationKind kind = OperationKind::kScale;
  WebSpec spec;  // the manifest to apply (kScale, kUpdate*)
};

enum class FaultKind {
  kKillController,  // SIGKILL, then restarted on the same port and data dir
  kKillAgent,       // SIGKILL, then restarted with the same state dir
  kPauseAgent,      // SIGSTOP for `hold`, then SIGCONT
  kCutLink,         // the host's veth down for `hold`, then up
};

struct Fault {
  FaultKind kind = FaultKind::kKillController;
  int host = 0;                       // which agent (kCutLink: only the hosts behind a veth)
  std::chrono::milliseconds hold{0};  // pause or cut length; agent restart delay for kKillAgent
};

// One step: maybe an operation, a lead time for it to get going, then a fault.
struct Step {
  std::optional<Operation> operation;
  std::chrono::milliseconds lead{0};
  Fault fault;
};

// `faults` steps drawn from `seed` alone: the same seed gives the same
// schedule, whatever the run observes. `hosts` agents, of which the first
// `linked_hosts` sit behind a veth that can be cut.
std::vector<Step> make_schedule(uint64_t seed, int faults, const WebSpec& first, int hosts, int linked_hosts);

std::string describe(const Operation& op);
std::string describe(const Fault& fault);
const char* name_of(FaultKind kind);

// ---- the observer ----------------------------------------------------------

// The cluster's budget as the revision in force states it.
struct Budget {
  int desired = 0;
  int max_unavailable = 0;
  int max_surge = 0;
};

struct Figures {
  uint64_t events = 0;
  std::map<std::string, uint64_t> checks;  // by invariant
  std::vector<std::string> violations;
  uint64_t take_downs = 0;
  // Take-downs within the engine's rule but below desired - maxUnavailable:
  // autohealing off held Failed or Unreachable members (a spec question).
  uint64_t below_spec_budget_with_autohealing_off = 0;
  uint64_t members_created = 0;
  uint64_t hosts_unreachable = 0;
  uint64_t members_unreachable = 0;
  uint64_t members_failed = 0;

  uint64_t total_checks() const;
};

// Follows GET /api/v1/events from seq 1 on a thread of its own (polling,
// so that it outlives controller restarts) and checks at every event:
//
//  - seq: each event's seq is the previous one's + 1 (from 1);
//  - from: a MemberStateChanged's `from` is the state the log itself last
//    gave that member (every transition is committed with its event);
//  - availability: when the controller takes an Active member out
//    (Active -> Updating, Maintenance, Draining or Stopping), at least
//    desired - maxUnavailable members are still Active afterwards (for
//    Maintenance maxUnavailable counts as at least 1, as documented), except
//    Active -> Maintenance while a maintenance restart --all-at-once is in
//    force and after the application was deleted; while autohealing is off,
//    desired - held - maxUnavailable, held being the Failed and Unreachable
//    members it keeps (the engine's rule, see Figures);
//  - surge: when the controller creates a member, at most desired + maxSurge
//    members exist afterwards (Created up to Stopping, as the planner counts;
//    a member that went Failed or Unreachable no longer counts, also while
//    it is being stopped: a fault took it, not the controller);
//  - update once: no member enters Updating twice for one revision.
//
// desired, maxUnavailable and maxSurge are those of the revision in force at
// that event (read from GET /revisions/N at its RevisionCreated).
class InvariantObserver {
 public:
  InvariantObserver(std::string server, std::string token, std::string app, std::string cluster);
  ~InvariantObserver();
  InvariantObserver(const InvariantObserver&) = delete;
  InvariantObserver& operator=(const InvariantObserver&) = delete;

  void stop();
  // The highest seq read so far.
  uint64_t seen() const { return seen_; }
  Figures figures() const;
  // The member states the log gives, and what each seq said (to compare
  // with the log read again at the end).
  std::map<std::string, std::string> member_states() const;
  std::map<uint64_t, std::string> digests() const;
  // Adds a violation found outside the event stream (end checks).
  void add_violation(const std::string& what);
  void count_check(const std::string& invariant, uint64_t n = 1);

  // One event's identity: type, path, member, from and to.
  static std::string digest(const nlohmann::json& event);

 private:
  void run();
  void observe(const nlohmann::json& event);
  void on_member_event(const nlohmann::json& event, const std::string& member);
  void on_operational_event(const nlohmann::json& event);
  std::optional<Budget> budget_of_revision(int64_t revision);
  int count_states(const std::set<std::string>& states, bool skip_lost) const;
  void violation(const std::string& what, const nlohmann::json& event);

  const std::string server_;
  const std::string token_;
  const std::string app_;
  const std::string cluster_;  // "shop/web"

  mutable std::mutex mu_;
  Figures figures_;
  std::map<std::string, std::string> states_;
  std::set<std::string> lost_;  // members a fault took (Failed, Unreachable) that have not come back
  std::map<std::pair<std::string, int64_t>, int> updating_;
  std::map<uint64_t, std::string> digests_;
  Budget budget_;
  int64_t revision_ = 0;
  bool all_at_once_restart_ = false;
  bool autohealing_off_ = false;
  bool undeployed_ = false;

  std::atomic<uint64_t> seen_ = 0;
  std::atomic<bool> stopping_ = false;
  std::thread thread_;  // last: it starts once everything it reads exists
};

}  // namespace tranche::e2e::campaign
