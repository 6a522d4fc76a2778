// Replicas: each cluster kept at its desired count (healing, scaling,
// retiring what is not wanted), and the member lifecycle's common steps.

#include "engine/fleet/fleet.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/reconcile/interactions.h"
#include "engine/reconcile/scheduler.h"

namespace tranche {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

}  // namespace

Status Fleet::create_member(const ClusterRef& cluster, int64_t revision, const std::string& reason) {
  const std::string where = cluster.app->name + "/" + cluster.path;
  const ClusterSpec* spec = cluster_of(cluster.app->name, revision, cluster.path);
  if (!spec) {
    return fail(ErrorCode::kInternal, where + " has no revision " + std::to_string(revision));
  }
  view_placement();
  if (placement_.placed >= kPlacementsPerPass) {
    // The rest waits for the next pass: its clusters stay queued.
    return fail(ErrorCode::kUnavailable, "this pass has placed " + std::to_string(kPlacementsPerPass) + " members");
  }
  auto& in_cluster = placement_.in_cluster[where];
  in_cluster.resize(placement_.hosts.size());
  const std::string candidates_key = where + "@" + std::to_string(revision);
  auto queue = placement_.candidates.find(candidates_key);
  if (queue == placement_.candidates.end()) {
    std::vector<size_t> eligible_hosts;
    for (size_t i = 0; i < placement_.hosts.size(); ++i) {
      if (eligible(placement_.hosts[i], spec->placement)) {
        eligible_hosts.push_back(i);
      }
    }
    queue = placement_.candidates.emplace(candidates_key, CandidateQueue(eligible_hosts, placement_.hosts, in_cluster))
                .first;
  }
  const std::optional<size_t> chosen = queue->second.pick(placement_.hosts, in_cluster, spec->placement.slots);
  if (!chosen) {
    const std::string why = place(placement_.hosts, spec->placement).reason;
    report_failure_once(where, "cannot place a member: " + why);
    return fail(ErrorCode::kUnavailable, why);
  }
  reported_failures_.erase(where);
  placement_.hosts[*chosen].used_slots += spec->placement.slots;
  ++in_cluster[*chosen];
  ++placement_.placed;
  const std::string host = placement_.hosts[*chosen].id;
  const TimePoint now = clock_.now();
  MemberRecord record;
  record.ordinal = next_ordinal(cluster.app->name, cluster.path);
  record.id = where + "/" + std::to_string(record.ordinal);
  record.app = cluster.app->name;
  record.cluster = cluster.path;
  record.host = host;
  record.state = std::string(to_string(MemberState::kCreated));
  record.revision = revision;
  record.version = spec->artifact.version;
  record.created_at = record.updated_at = now;
  // Created and at once Starting: the group holds both events but writes the
  // member's record once, as Starting (placement's store cost is per record).
  WriteBatch batch;
  batch.mutations.push_back(
      AppendEvent{make_event(now, record.app, where, record.id, "MemberStateChanged", "", "Created",
                             (reason.empty() ? "" : reason + ": ") + "placed on " + record.host)});
  stage(std::move(batch));
  MemberEntry& m = remember(std::move(record), MemberState::kCreated);
  return set_state(m, MemberState::kStarting, "starting on " + m.record.host);
}

void Fleet::stop_if_drained(MemberEntry& m) {
  if (m.state == MemberState::kDraining && out_of_traffic(m)) {
    (void)set_state(m, MemberState::kStopping, "out of its load balancer's traffic");
  }
}

// Takes a member out: stop it where it may run, or just mark it gone. A
// maintenance step still pending for it ends with it, in the same commit: a
// member replaced by a rollout counts as replaced, and no marker outlives
// its member.
void Fleet::retire(MemberEntry& m, const std::string& reason, std::vector<Mutation> also) {
  if (m.state != MemberState::kTerminated) {
    also.push_back(DeleteOperationalValue{m.record.app, member_path(m.record), Setting::kMaintenance});
  }
  auto host = hosts_.find(m.record.host);
  const bool host_gone = host == hosts_.end() || host->second.record.state == "Left";
  if (m.state == MemberState::kCreated || (m.state == MemberState::kFailed && host_gone)) {
    (void)set_state(m, MemberState::kTerminated, reason, std::move(also));
    return;
  }
  if (m.state == MemberState::kActive && !out_of_traffic(m)) {
    (void)set_state(m, MemberState::kDraining, reason + "; leaving its load balancer first", std::move(also));
  } else if (can_transition(m.state, MemberState::kStopping)) {
    (void)set_state(m, MemberState::kStopping, reason, std::move(also));
  }
}

std::string Fleet::replaced_by(const MemberEntry& m, int desired) const {
  if (!m.successor.empty()) {
    return "replaced by " + m.successor;
  }
  return live_in(m.roster) > desired ? fmt::format("removed as the cluster shrank to {}", desired)
                                     : "replaced by a new member";
}

bool Fleet::reconcile_cluster(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& switches,
                              const MaintenanceMarkers& markers, const std::vector<ClusterScaleRecord>& scales,
                              ActiveRollout* rollout) {
  const TimePoint now = clock_.now();
  static const Roster kNoMembers;
  const Roster* found = roster_of(cluster.app->name, cluster.path);
  const Roster& members = found ? *found : kNoMembers;
  int live = 0;
  int held = 0;  // failing members that autohealing off keeps in place
  relabel(cluster, members);
  std::vector<MemberEntry*> ready;  // Starting, healthy for minReadySeconds: Active together, below
  const auto min_ready = std::chrono::seconds(cluster.spec->update.min_ready_seconds);
  // Only members not Active have anything to do here: an Active one is
  // counted, and its entry is all that is read of it.
  for (size_t i = 0; i < members.entries.size(); ++i) {
    const RosterEntry& entry = members.entries[i];
    if (!entry.member || entry.state == MemberState::kActive) {
      live += entry.member ? 1 : 0;
      continue;
    }
    MemberEntry& m = *entry.member;
    stop_if_drained(m);
    if (m.state == MemberState::kCreated) {
      // Placed but not started: the controller stopped between the two commits.
      (void)set_state(m, MemberState::kStarting, "starting on " + m.record.host);
    }
    if (m.state == MemberState::kStarting && m.healthy_since && now - *m.healthy_since >= min_ready) {
      ready.push_back(&m);
    }
    if (m.state == MemberState::kFailed || m.state == MemberState::kUnreachable) {
      if (cluster.app->deployed && resolve(switches, member_path(m.record), Setting::kAutohealing).effective == "off") {
        delay_healing(m, "autohealing is off");
        ++held;
        continue;
      }
      // updates.md: a migration lock suspends autohealing decisions: observed
      // (said once, with the lock), not acted on.
      const bool locked_first = resolve(Command::kMigrationLock, Command::kAutohealingOn) == Resolution::kRunningFirst;
      if (const LockEntry* lock = cluster.app->deployed && locked_first ? migration_lock(cluster.app->name) : nullptr) {
        delay_healing(m, "autohealing is suspended by " + describe_lock(lock->record));
        ++held;
        continue;
      }
      if (m.record.healing_delayed_since) {
        resume_healing(m);
      }
      if (m.state == MemberState::kFailed) {
        retire(m, "cleaning up a failed member");  // a replacement follows below
      }
    }
    live += is_live(m.state) ? 1 : 0;
  }
  // A batch's 10,000 members become Active in the same pass, which then
  // starts the next batch: one change of many, not 10,000 of one. When
  // they are that many, their rows are written from now on, while the
  // rollout plans that batch, whose first updates are written after them.
  if (!ready.empty()) {
    (void)set_states(ready, MemberState::kActive,
                     "healthy for minReadySeconds (" + format_duration(duration_cast<milliseconds>(min_ready)) + ")");
    write_ahead_if_large(options_.updates_per_group * 2);
  }
  const int scaled = autoscale(cluster, switches, scales);
  // Failed members that autohealing off keeps are not compensated for.
  start_maintenance(cluster, markers, scaled - held);
  const int desired = cluster.app->deployed ? scaled : 0;
  if (cluster.app->deployed && drive_member_perform(cluster)) {
    return false;  // a migration perform owns the cluster's members for now
  }
  const bool replace_waits = cluster.app->deployed && replace_waits_for_rollout(cluster, markers, rollout);
  if (rollout && cluster.app->deployed && drive_rollout(cluster, members, desired - held, *rollout)) {
    return false;  // the rollout owns the cluster's members for now
  }
  if (cluster.app->deployed && !replace_waits && replace_for_maintenance(cluster, markers, desired - held)) {
    return false;
  }
  const int64_t revision = held_revision(cluster, members, rollout);
  if (live > desired) {
    std::vector<MemberEntry*> live_members = members_of(cluster.app->name, cluster.path);
    std::erase_if(live_members, [](const MemberEntry* m) { return !is_live(m->state); });
    scale_down(cluster, std::move(live_members), markers, desired);
  }
  for (int missing = desired - live - held; missing > 0; --missing) {
    if (!create_member(cluster, revision)) {
      break;
    }
  }
  return settled(cluster, desired);
}

// Scale down the least useful first: members marked for maintenance
// replace (they would go anyway), then those not Active (already out of
// service), then the newest. A chosen member whose step is at its agent
// (Maintenance, Updating) is never stopped in the middle of it
// (interactions.h: spare in flight): it goes once its step is done, if it is
// still surplus then; an Active member is not taken in its place, which
// would take one more member out of service than the scale-down asks for.
void Fleet::scale_down(const ClusterRef& cluster, std::vector<MemberEntry*> live, const MaintenanceMarkers& markers,
                       int desired) {
  const size_t surplus = live.size() - static_cast<size_t>(desired);
  const bool spare = resolve(Command::kMaintenanceRestart, Command::kScaleDown) == Resolution::kSpareInFlight;
  const auto marked = [&](const MemberEntry* m) {
    auto it = markers.find(member_path(m->record));
    return it != markers.end() && it->second->value == "replace";
  };
  std::sort(live.begin(), live.end(), [&](const MemberEntry* a, const MemberEntry* b) {
    const bool a_marked = marked(a);
    const bool b_marked = marked(b);
    const bool a_active = a->state == MemberState::kActive;
    const bool b_active = b->state == MemberState::kActive;
    return a_marked != b_marked   ? a_marked
           : a_active != b_active ? !a_active
                                  : a->record.ordinal > b->record.ordinal;
  });
  const std::string reason =
      cluster.app->deployed ? "scaling down to " + std::to_string(desired) : "application deleted";
  size_t waiting = 0;
  for (size_t i = 0; i < surplus; ++i) {
    MemberEntry& m = *live[i];
    if (spare && (m.state == MemberState::kMaintenance || m.state == MemberState::kUpdating)) {
      ++waiting;
      continue;
    }
    retire(m, reason);
  }
  const std::string where = full_path(cluster.app->name, cluster.path);
  std::string& said = reported_failures_["scale-down-waits/" + where];
  if (waiting == 0) {
    said.clear();
    return;
  }
  const std::string message =
      fmt::format("{}: {} member{} in the middle of a step at its agent (Maintenance or Updating) {} stopped once {} "
                  "done",
                  reason, waiting, waiting == 1 ? "" : "s", waiting == 1 ? "is" : "are", waiting == 1 ? "it is" : "they are");
  if (said != message) {
    said = message;
    WriteBatch batch;
    batch.mutations.push_back(AppendEvent{
        make_event(clock_.now(), cluster.app->name, where, "", "ScaleDownWaits", nullptr, desired, message)});
    stage(std::move(batch));
    spdlog::info("{}: {}", where, message);
  }
}

// Nothing is left for a pass to do until something changes: every member
// Active or in a maintenance step at its agent (whose answer queues the
// cluster again), as many as wanted, and no load balancer whose view of its
// servers moves on by itself. (Load windows move on with time too: a
// settled cluster's autoscaler still runs each pass, see reconcile_pass.)
bool Fleet::settled(const ClusterRef& cluster, int desired) const {
  int present = 0;
  if (const Roster* roster = roster_of(cluster.app->name, cluster.path)) {
    for (const RosterEntry& e : roster->entries) {
      if (e.state != MemberState::kActive && !e.member->in_maintenance_at_agent()) {
        return false;
      }
      ++present;
    }
  }
  return present == desired && (!balancer_ || cluster.spec->load_balancer.haproxy_backend.empty());
}

}  // namespace tranche
