// Migration mode on the fleet's side (engine/migration.h): the locks read at
// the start of each pass, a member's perform driven like a one-member
// rollout (in place through the agent's update hook, or by replacement), and
// the end of a perform recorded in its lock, persisted with its event before
// anything relies on it. Autoscaling and autohealing consult the locks in
// autoscaler.cc and replicas.cc.

#include "engine/fleet/fleet.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/events.h"

namespace tranche {

void Fleet::read_migration_locks() {
  locks_.clear();
  auto locks = store_.list_migration_locks();
  if (!locks) {
    spdlog::error("reconcile: migration locks: {}", locks.error().describe());
    return;
  }
  for (auto& record : *locks) {
    auto detail = detail_from_json(record.detail_json);
    if (!detail) {
      report_failure_once("migration/" + record.app, detail.error().message);
      continue;
    }
    const std::string app = record.app;
    LockEntry& entry = locks_[app] = LockEntry{std::move(record), std::move(*detail)};
    MigrationPerform* perform = entry.detail.perform ? &*entry.detail.perform : nullptr;
    if (!perform || perform->finished) {
      continue;
    }
    if (!perform->member.empty()) {
      // Its cluster's pass drives it; one that left the fleet ends it here.
      auto member = members_.find(perform->member);
      if (member == members_.end() || member->second.state == MemberState::kTerminated) {
        finish_perform(entry, false, perform->member + " is gone");
      } else {
        // Queued until it ends, like a rollout's application: a settled
        // cluster is not looked at otherwise.
        work_.add_cluster(entry.record.app, member->second.record.cluster);
      }
      continue;
    }
    // A whole-application perform ends with its rollout, whatever ended it.
    if (!perform->rollout) {
      continue;
    }
    auto rollout = store_.latest_rollout(entry.record.app);
    if (!rollout || !*rollout) {
      continue;
    }
    const auto phase = rollout_phase_from_string((*rollout)->phase);
    if ((*rollout)->id == *perform->rollout && phase && is_finished(*phase)) {
      finish_perform(entry, phase == RolloutPhase::kSucceeded,
                     fmt::format("rollout {} {}: {}", (*rollout)->id, (*rollout)->phase, (*rollout)->reason));
    }
  }
}

const Fleet::LockEntry* Fleet::migration_lock(const std::string& app) const {
  auto own = locks_.find(app);
  if (own != locks_.end()) {
    return &own->second;
  }
  auto platform = locks_.find("");
  return platform == locks_.end() ? nullptr : &platform->second;
}

void Fleet::finish_perform(LockEntry& lock, bool succeeded, const std::string& message) {
  MigrationPerform& perform = *lock.detail.perform;
  const TimePoint now = clock_.now();
  perform.finished = true;
  perform.succeeded = succeeded;
  perform.message = message;
  perform.finished_at = now;
  MigrationLockRecord next = lock.record;
  next.detail_json = detail_to_json(lock.detail);
  next.updated_at = now;
  const std::string app = lock.record.app;
  const std::string text = fmt::format("migration perform of {} {}: {}", describe_perform(app, perform),
                                       succeeded ? "succeeded" : "failed", message);
  WriteBatch batch;
  // Compare-and-swap: a command meanwhile (cancel cannot, but a new begin
  // after a complete can) wins, and the next pass reads what won.
  batch.mutations.push_back(PutMigrationLock{next});
  batch.mutations.push_back(AppendEvent{make_event(now, app, app, perform.member, "MigrationPerformFinished", nullptr,
                                                   succeeded ? "Succeeded" : "Failed", text)});
  stage(std::move(batch));
  spdlog::info("{}", text);
  next.version += 1;
  lock.record = std::move(next);
}

bool Fleet::drive_member_perform(const ClusterRef& cluster) {
  auto found = locks_.find(cluster.app->name);
  if (found == locks_.end() || !found->second.detail.running() || found->second.detail.perform->member.empty()) {
    return false;
  }
  LockEntry& lock = found->second;
  MigrationPerform& perform = *lock.detail.perform;
  MemberEntry* m = nullptr;
  MemberEntry* successor = nullptr;
  for (MemberEntry* e : members_of(cluster.app->name, cluster.path)) {
    m = e->record.id == perform.member ? e : m;
    successor = !perform.successor.empty() && e->record.id == perform.successor ? e : successor;
  }
  if (!m) {
    return false;  // another cluster's member (read_migration_locks sees to one that is gone)
  }
  const ClusterSpec* target = cluster_of(cluster.app->name, perform.to_revision, cluster.path);
  if (!target) {
    finish_perform(lock, false, fmt::format("revision {} is no longer kept", perform.to_revision));
    return false;
  }
  const std::string why = fmt::format("migration perform to revision {}", perform.to_revision);
  // Replacement: the successor takes the member's place once it is Active.
  if (!perform.successor.empty()) {
    if (!successor || successor->state == MemberState::kFailed || successor->state == MemberState::kTerminated) {
      finish_perform(lock, false, fmt::format("{} (on revision {}) did not become Active", perform.successor,
                                              perform.to_revision));
      return false;
    }
    if (successor->state != MemberState::kActive) {
      return true;
    }
    retire(*m, why + ": replaced by " + successor->record.id);
    finish_perform(lock, true, fmt::format("{} replaced by {} on revision {}", m->record.id, successor->record.id,
                                           perform.to_revision));
    return true;
  }
  const ClusterSpec* mine = cluster_spec(*m);
  const bool on_target =
      m->record.revision == perform.to_revision || (mine && same_member_template(*mine, *target));
  if (m->state == MemberState::kFailed || !is_live(m->state)) {
    finish_perform(lock, false, fmt::format("{} is {}", m->record.id, m->record.state));
    return false;
  }
  if (m->state != MemberState::kActive) {
    return true;  // its step is under way (Updating, Starting)
  }
  if (on_target) {
    finish_perform(lock, true,
                   fmt::format("{} runs revision {}'s template and is Active", m->record.id, perform.to_revision));
    return false;
  }
  if (target->update.method == UpdatePolicy::Method::kInPlace) {
    const MemberRecord before = m->record;
    m->record.revision = perform.to_revision;
    m->record.version = target->artifact.version;
    if (!set_state(*m, MemberState::kUpdating,
                   fmt::format("{}: in-place update from revision {}", why, before.revision))) {
      m->record = before;
      note_change(*m);
    }
    return true;
  }
  const std::string key = cluster.app->name + "/" + cluster.path;
  if (!create_member(cluster, perform.to_revision, why + " of " + m->record.id)) {
    return true;  // no room yet: tried again next pass
  }
  // create_member just took the cluster's next ordinal.
  perform.successor = key + "/" + std::to_string(last_ordinal_[key]);
  MigrationLockRecord next = lock.record;
  next.detail_json = detail_to_json(lock.detail);
  next.updated_at = clock_.now();
  WriteBatch batch;
  batch.mutations.push_back(PutMigrationLock{next});
  stage(std::move(batch));
  next.version += 1;
  lock.record = std::move(next);
  return true;
}

}  // namespace tranche
