// The fleet's side of rollouts (updates.md): each tick reads the
// application's rollout, counts failures of members on the target revision
// and applies onFailure (persisted before anything acts on it), lets the
// planner (engine/rollout.h) take each cluster's next step in update order,
// and moves the phase on. Member changes are the fleet's usual persisted
// transitions; the rollout record keeps only what members cannot say.

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <map>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/command_outcomes.h"
#include "engine/events.h"
#include "engine/reconcile/interactions.h"

namespace tranche {

TimePoint Fleet::phase_seen_since(const ActiveRollout& rollout) {
  PhaseSeen& seen = phases_seen_[rollout.record.app];
  if (seen.rollout != rollout.record.id || seen.phase != rollout.phase) {
    seen = PhaseSeen{rollout.record.id, rollout.phase, clock_.now()};
  }
  return seen.since;
}

std::optional<Fleet::ActiveRollout> Fleet::load_rollout(const ApplicationRecord& app) {
  auto record = store_.latest_rollout(app.name);
  if (!record || !*record) {
    return std::nullopt;
  }
  auto phase = rollout_phase_from_string((*record)->phase);
  if (!phase || is_finished(*phase)) {
    return std::nullopt;
  }
  auto progress = progress_from_json((*record)->progress_json);
  const auto target = spec_of(app.name, (*record)->target_revision);
  if (!progress || !target) {
    report_failure_once("rollout/" + app.name,
                        "rollout " + std::to_string((*record)->id) + " cannot be read: " +
                            (progress ? "its target revision is gone" : progress.error().message));
    return std::nullopt;
  }
  ActiveRollout rollout{**record, *phase, std::move(*progress), rollout_prerequisites(*target), {}, {}, false};
  return rollout;
}

void Fleet::set_phase(ActiveRollout& rollout, RolloutPhase to, const std::string& reason) {
  if (rollout.phase == to || !can_transition(rollout.phase, to)) {
    return;
  }
  const TimePoint now = clock_.now();
  const std::string app = rollout.record.app;
  rollout.events.push_back(make_event(now, app, app, "", "RolloutPhaseChanged", std::string(to_string(rollout.phase)),
                                      std::string(to_string(to)),
                                      fmt::format("rollout {} of {}: {}", rollout.record.id, app, reason)));
  rollout.phase = to;
  rollout.record.phase = std::string(to_string(to));
  rollout.record.reason = reason;
  if (is_finished(to)) {
    rollout.record.finished_at = now;
    // A newer apply supersedes a rollout in its own commit (application_rollouts.cc).
    const std::string status = to == RolloutPhase::kSucceeded ? "Succeeded"
                               : to == RolloutPhase::kFailed  ? "Failed"
                                                              : "Cancelled";
    (void)end_apply_operations(store_, app, status, rollout.events.back().message, nullptr, now, rollout.outcome);
  }
  rollout.dirty = true;
}

void Fleet::stage_rollout(ActiveRollout& rollout, WriteBatch batch) {
  RolloutRecord next = rollout.record;
  next.progress_json = progress_to_json(rollout.progress);
  next.updated_at = clock_.now();
  batch.mutations.push_back(PutRollout{next});
  for (auto& e : rollout.events) {
    batch.mutations.push_back(AppendEvent{std::move(e)});
  }
  rollout.events.clear();
  std::move(rollout.outcome.begin(), rollout.outcome.end(), std::back_inserter(batch.mutations));
  rollout.outcome.clear();
  rollout.dirty = false;
  // An operator's control may win the race (the version differs): the group
  // then rejects this batch alone, and the next pass reads what won.
  stage(std::move(batch));
  next.version += 1;
  rollout.record = std::move(next);
}

// updates.md, "health gating": a member on the target revision that failed
// counts once; beyond maxFailures the cluster's onFailure applies.
bool Fleet::observe_rollout(const ApplicationRecord& app, ActiveRollout& rollout) {
  std::string exceeded;
  UpdatePolicy::OnFailure on_failure = UpdatePolicy::OnFailure::kPause;
  for (auto& [path, progress] : rollout.progress) {
    if (progress.status != ClusterRolloutStatus::kProgressing &&
        progress.status != ClusterRolloutStatus::kCanaryPaused) {
      continue;
    }
    const ClusterSpec* spec = cluster_of(app.name, rollout.record.target_revision, path);
    if (!spec) {
      continue;
    }
    const Roster* roster = roster_of(app.name, path);
    for (size_t i = 0; roster && i < roster->entries.size(); ++i) {
      const RosterEntry& e = roster->entries[i];
      if (e.state != MemberState::kFailed || e.revision != rollout.record.target_revision) {
        continue;
      }
      const MemberEntry* m = e.member;
      if (progress.failed.insert(m->record.id).second) {
        ++progress.failures;
        rollout.dirty = true;
        rollout.events.push_back(
            make_event(clock_.now(), app.name, full_path(app.name, path), m->record.id, "RolloutFailureCounted",
                       progress.failures - 1, progress.failures,
                       fmt::format("{} failed on revision {} ({} of {} tolerated)", m->record.id,
                                   rollout.record.target_revision, progress.failures, spec->update.max_failures)));
      }
    }
    if (progress.failures > spec->update.max_failures && exceeded.empty()) {
      exceeded = fmt::format("{}: {} failed members, more than maxFailures {}", full_path(app.name, path),
                             progress.failures, spec->update.max_failures);
      on_failure = spec->update.on_failure;
    }
  }
  if (!rollout.dirty) {
    return true;
  }
  if (!exceeded.empty()) {
    if (rollout.phase == RolloutPhase::kRollingBack) {
      set_phase(rollout, RolloutPhase::kFailed, "the rollback failed too: " + exceeded);
    } else if (rollout.phase != RolloutPhase::kPaused) {
      if (on_failure == UpdatePolicy::OnFailure::kRollback) {
        begin_rollback(app, rollout, exceeded);
        return false;  // the application record changed: reconcile it next tick
      }
      set_phase(rollout, RolloutPhase::kPaused, exceeded + "; waiting for the operator (onFailure: pause)");
    }
  }
  stage_rollout(rollout);
  return true;
}

// onFailure: rollback. A new revision restores the templates of the revision
// the rollout started from, and the same rollout moves members to it.
void Fleet::begin_rollback(const ApplicationRecord& app, ActiveRollout& rollout, const std::string& reason) {
  const TimePoint now = clock_.now();
  const int64_t from = rollout.record.from_revision;
  auto source = store_.get_revision(app.name, from);
  if (!source || !*source) {
    set_phase(rollout, RolloutPhase::kFailed,
              reason + "; cannot roll back: revision " + std::to_string(from) + " is no longer kept");
    stage_rollout(rollout);
    return;
  }
  const int64_t number = app.current_revision + 1;
  const std::string summary = fmt::format("rollback to revision {} ({})", from, reason);
  ApplicationRecord next_app = app;
  next_app.current_revision = number;
  next_app.updated_at = now;
  set_phase(rollout, RolloutPhase::kRollingBack, reason);
  rollout.events.back().message += fmt::format("; rolling back to revision {} as revision {}", from, number);
  rollout.record.target_revision = number;
  for (auto& [path, progress] : rollout.progress) {
    progress = ClusterProgress{};  // the rollback is a rollout of its own, in the same order
  }
  // Compare-and-swap on the application too: an apply meanwhile wins.
  WriteBatch batch;
  batch.preconditions.push_back({app.name, app.version});
  batch.mutations.push_back(PutRevision{{app.name, number, (*source)->manifest_json, "tranche", summary, now}});
  batch.mutations.push_back(PutApplication{next_app});
  batch.mutations.push_back(AppendEvent{make_event(now, app.name, app.name, "", "RevisionCreated", app.current_revision,
                                                   number, "revision " + std::to_string(number) + ": " + summary)});
  stage_rollout(rollout, std::move(batch));
}

int64_t Fleet::held_revision(const ClusterRef& cluster, const Roster& roster, const ActiveRollout* rollout) const {
  if (!rollout) {
    return cluster.app->current_revision;
  }
  auto it = rollout->progress.find(cluster.path);
  if (it != rollout->progress.end() && it->second.status == ClusterRolloutStatus::kDone) {
    return cluster.app->current_revision;
  }
  // Waiting or paused: heal onto what most members run, so that healing
  // neither rolls the cluster forward nor back.
  std::map<int64_t, int> count;
  for (const RosterEntry& e : roster.entries) {
    count[e.revision] += e.member && is_live(e.state) ? 1 : 0;
  }
  int64_t best = cluster.app->current_revision;
  for (const auto& [revision, n] : count) {
    if (n > 0 && n >= count[best]) {
      best = revision;
    }
  }
  return best;
}

bool Fleet::drive_rollout(const ClusterRef& cluster, const Roster& roster, int desired, ActiveRollout& rollout) {
  ClusterProgress& progress = rollout.progress[cluster.path];
  const ClusterRolloutStatus before = progress.status;
  if (before == ClusterRolloutStatus::kDone) {
    return false;
  }
  const std::string where = full_path(cluster.app->name, cluster.path);
  auto change_status = [&](ClusterRolloutStatus to, const std::string& message) {
    if (progress.status == to) {
      return;
    }
    rollout.events.push_back(make_event(clock_.now(), cluster.app->name, where, "", "RolloutClusterChanged",
                                        std::string(to_string(progress.status)), std::string(to_string(to)),
                                        where + ": " + message));
    progress.status = to;
    rollout.dirty = true;
  };
  std::vector<std::string> waiting_for;
  for (const auto& p : rollout.prerequisites[cluster.path]) {
    if (rollout.progress[p].status != ClusterRolloutStatus::kDone) {
      waiting_for.push_back(p);
    }
  }
  if (!waiting_for.empty()) {
    return false;  // Waiting, as it starts
  }
  if (rollout.phase == RolloutPhase::kPaused) {
    return false;
  }

  std::vector<RolloutMember> view;
  view.reserve(roster.entries.size());
  for (const RosterEntry& e : roster.entries) {
    if (e.member) {
      const MemberState state = e.state == MemberState::kActive && balancer_ ? planned_state(*e.member) : e.state;
      view.push_back(RolloutMember{e.id, state, e.revision == rollout.record.target_revision, e.revision, e.since});
    }
  }
  const bool promoted = rollout.record.promoted || rollout.phase == RolloutPhase::kRollingBack;
  const ClusterRolloutStep step = plan_cluster_rollout(
      ClusterRolloutInput{cluster.spec->update, desired, std::move(view), promoted, clock_.now(),
                          rollout.record.from_revision,
                          resolve(Command::kRolloutStuck, Command::kScaleUp) == Resolution::kServingRevision,
                          resolve(Command::kMaintenanceRestart, Command::kScaleDown) == Resolution::kSpareInFlight});

  if (step.done) {
    change_status(ClusterRolloutStatus::kDone,
                  fmt::format("all {} members on revision {} and Active", desired, rollout.record.target_revision));
    return true;
  }
  change_status(step.canary_reached ? ClusterRolloutStatus::kCanaryPaused : ClusterRolloutStatus::kProgressing,
                step.canary_reached ? step.waiting
                                    : fmt::format("moving to revision {}: {}", rollout.record.target_revision,
                                                  describe_update_policy(*cluster.spec)));
  // The step names a few of the cluster's members: found by id among all,
  // not through a map of the cluster's (100,000 entries each pass).
  auto by_id = [&](const std::string& id) -> MemberEntry& { return members_.at(id); };
  const std::string why = fmt::format("rollout {} to revision {}", rollout.record.id, rollout.record.target_revision);
  for (const auto& id : step.overdue) {
    (void)set_state(
        by_id(id), MemberState::kFailed,
        fmt::format("not Active within progressDeadlineSeconds ({}s)", cluster.spec->update.progress_deadline_seconds));
  }
  for (const auto& id : step.retire) {
    retire(by_id(id), why + ": " + replaced_by(by_id(id), desired));
  }
  // A batch's updates go in groups: a group's agents have their commands
  // once its rows are durable, not once the last member's are. Host by
  // host: a host's members of the batch share a group, so its commands
  // leave in one frame and its results come back together, rather than a
  // frame for each group that holds one of them.
  std::vector<MemberEntry*> updating;
  updating.reserve(step.update.size());
  for (const auto& id : step.update) {
    updating.push_back(&by_id(id));
  }
  std::stable_sort(updating.begin(), updating.end(),
                   [](const MemberEntry* a, const MemberEntry* b) { return a->record.host < b->record.host; });
  const size_t group = std::max<size_t>(options_.updates_per_group, 1);
  for (size_t first = 0; first < updating.size(); first += group) {
    begin_updates(std::span(updating).subspan(first, std::min(group, updating.size() - first)), cluster,
                  rollout.record.id);
    write_ahead_if_large(options_.updates_per_group * 2);
  }
  for (int i = 0; i < step.create; ++i) {
    if (!create_member(cluster, rollout.record.target_revision, why)) {
      break;
    }
  }
  if (cluster.spec->update.method == UpdatePolicy::Method::kReplace) {
    std::vector<MemberEntry*> replaced;
    std::vector<MemberEntry*> successors;
    for (MemberEntry* m : members_of(cluster.app->name, cluster.path)) {
      if (!is_live(m->state)) {
        continue;
      }
      if (m->record.revision != rollout.record.target_revision) {
        replaced.push_back(m);
      } else if (m->record.created_at >= rollout.record.created_at) {
        successors.push_back(m);
      }
    }
    pair_successors(replaced, successors);
  }
  for (int i = 0; i < step.create_serving; ++i) {
    const std::string serving = fmt::format("scaling up while rollout {} holds revision {} back: on revision {}, "
                                            "which serves",
                                            rollout.record.id, rollout.record.target_revision, step.old_revision);
    if (!create_member(cluster, step.old_revision, serving)) {
      break;
    }
  }
  for (int i = 0; i < step.create_old; ++i) {
    if (!create_member(cluster, step.old_revision, "replacing a failed member while the canary holds")) {
      break;
    }
  }
  return true;
}

void Fleet::advance_rollout(const ApplicationRecord& app, ActiveRollout& rollout) {
  const bool all_done = std::all_of(rollout.prerequisites.begin(), rollout.prerequisites.end(), [&](const auto& c) {
    return rollout.progress[c.first].status == ClusterRolloutStatus::kDone;
  });
  const bool canary = std::any_of(rollout.progress.begin(), rollout.progress.end(),
                                  [](const auto& c) { return c.second.status == ClusterRolloutStatus::kCanaryPaused; });
  if (!app.deployed) {
    set_phase(rollout, RolloutPhase::kAborted, "the application was undeployed");
  } else if (all_done && rollout.phase == RolloutPhase::kRollingBack) {
    set_phase(rollout, RolloutPhase::kFailed,
              fmt::format("{}; rolled back to the templates of revision {} (as revision {})", rollout.record.reason,
                          rollout.record.from_revision, rollout.record.target_revision));
  } else if (all_done) {
    set_phase(rollout, RolloutPhase::kSucceeded,
              fmt::format("every member is on revision {}", rollout.record.target_revision));
  } else if (canary && rollout.phase == RolloutPhase::kProgressing && !rollout.record.promoted) {
    set_phase(rollout, RolloutPhase::kCanaryPaused, "the canary members are Active; `rollout promote` goes on");
  }
  if (rollout.dirty) {
    (void)stage_rollout(rollout);
  }
}

std::string Fleet::update_command_id(const MemberEntry& m) {
  return "update:" + m.record.id + ":" + std::to_string(m.record.revision);
}

// updates.md, "method: in-place": a member takes the target revision as it
// enters Updating, so the command id names the revision and a resent command
// can never update it twice. One state change per revision the members come
// from (in a rollout, nearly always one): one log line each, not one per
// member.
void Fleet::begin_updates(std::span<MemberEntry* const> members, const ClusterRef& cluster, int64_t rollout_id) {
  std::map<int64_t, std::vector<MemberEntry*>> by_revision;
  for (MemberEntry* m : members) {
    by_revision[m->record.revision].push_back(m);
  }
  for (const auto& [from, moving] : by_revision) {
    std::vector<std::string> versions;
    for (MemberEntry* m : moving) {
      versions.push_back(std::exchange(m->record.version, cluster.spec->artifact.version));
      m->record.revision = cluster.app->current_revision;
    }
    if (!set_states(moving, MemberState::kUpdating,
                    fmt::format("rollout {}: in-place update from revision {} to {}", rollout_id, from,
                                cluster.app->current_revision))) {
      for (size_t i = 0; i < moving.size(); ++i) {  // refused before any change: none of them moves
        moving[i]->record.revision = from;
        moving[i]->record.version = std::move(versions[i]);
      }
    }
  }
}

// Asked of every member each pass while a rollout runs (90,000 of 100,000
// on another revision): the answer is looked up once per revision found.
void Fleet::relabel(const ClusterRef& cluster, const Roster& roster) {
  const int64_t current = cluster.app->current_revision;
  std::map<int64_t, bool> same;  // a revision found -> whether its member template is the current one
  auto same_as_current = [&](int64_t revision) {
    auto [known, first] = same.try_emplace(revision, false);
    if (first) {
      const auto key = std::tuple{cluster.app->name, cluster.path, revision, current};
      auto cached = same_template_.find(key);
      if (cached == same_template_.end()) {
        const ClusterSpec* mine = cluster_of(cluster.app->name, revision, cluster.path);
        cached = same_template_.emplace(key, mine && same_member_template(*mine, *cluster.spec)).first;
      }
      known->second = cached->second;
    }
    return known->second;
  };
  for (const RosterEntry& e : roster.entries) {
    if (!e.member || e.revision == current || !is_live(e.state) || e.state == MemberState::kUpdating ||
        !same_as_current(e.revision)) {
      continue;
    }
    MemberEntry* m = e.member;
    MemberRecord next = m->record;
    next.revision = current;
    WriteBatch batch;
    batch.mutations.push_back(PutMember{next});
    stage(std::move(batch));
    spdlog::info("member {}: revision {} -> {} (same member template, nothing to change)", m->record.id,
                 m->record.revision, current);
    m->record = std::move(next);
    note_change(*m);
  }
}

}  // namespace tranche
