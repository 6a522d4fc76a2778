// ApplicationService's migration commands (updates.md, "Migration mode"):
// begin takes the lock and pauses running rollouts at their next batch
// boundary, perform moves the application or one member to a revision,
// complete and cancel lift the lock and resume what begin paused. The lock
// is a store record written with compare-and-swap, like rollouts: the fleet
// writes it too (a perform that finished), so a lost race is read again.

#include <fmt/format.h>

#include "common/time_format.h"
#include "engine/application_service.h"
#include "engine/command_outcomes.h"
#include "engine/events.h"
#include "engine/migration.h"
#include "engine/rollout.h"

namespace tranche {

namespace {

using nlohmann::json;

constexpr int kAttempts = 10;  // compare-and-swap retries against the fleet

// Which of `lock`'s apps a call is about: the application, or every one.
Result<std::vector<std::string>> apps_under(Store& store, const std::optional<std::string>& app) {
  if (app) {
    return std::vector<std::string>{*app};
  }
  auto apps = store.list_applications();
  if (!apps) {
    return std::unexpected(apps.error());
  }
  std::vector<std::string> names;
  for (const auto& a : *apps) {
    names.push_back(a.name);
  }
  return names;
}

EventRecord phase_changed(TimePoint now, const RolloutRecord& r, const std::string& from, const std::string& message) {
  return make_event(now, r.app, r.app, "", "RolloutPhaseChanged", from, r.phase,
                    fmt::format("rollout {} of {}: {}", r.id, r.app, message));
}

bool is_live_member(const MemberRecord& m) {
  auto state = member_state_from_string(m.state);
  return state && is_live(*state);
}

}  // namespace

Result<json> ApplicationService::migration_begin(const std::optional<std::string>& app_name, const Caller& caller) {
  std::lock_guard lock(commands_);
  const std::string key = app_name.value_or("");
  for (int attempt = 0;; ++attempt) {
    std::optional<Current> current;
    if (app_name) {
      auto loaded = load(*app_name);
      if (!loaded) {
        return std::unexpected(loaded.error());
      }
      current = std::move(*loaded);
    }
    auto existing = store_.get_migration_lock(key);
    if (!existing) {
      return std::unexpected(existing.error());
    }
    if (*existing) {
      return fail(ErrorCode::kConflict, fmt::format("{} is already locked for migration ({})",
                                                    lock_subject(**existing), describe_lock(**existing)));
    }
    auto apps = apps_under(store_, app_name);
    if (!apps) {
      return std::unexpected(apps.error());
    }
    const TimePoint now = clock_.now();
    MigrationLockRecord record{key, caller.actor, now, "{}", now, 0};
    const std::string subject = lock_subject(record);
    MigrationDetail detail;
    WriteBatch batch;
    // updates.md: a rollout in progress pauses at its next batch boundary.
    // Paused is exactly that: the fleet hands no new member to an agent, and
    // those already handed over finish.
    for (const std::string& app : *apps) {
      auto latest = store_.latest_rollout(app);
      if (!latest) {
        return std::unexpected(latest.error());
      }
      if (!*latest) {
        continue;
      }
      const auto phase = rollout_phase_from_string((*latest)->phase);
      if (phase != RolloutPhase::kProgressing && phase != RolloutPhase::kRollingBack) {
        continue;  // finished, or already held (an operator's pause, a canary): not ours to resume
      }
      RolloutRecord paused = **latest;
      paused.phase = std::string(to_string(RolloutPhase::kPaused));
      paused.reason = fmt::format(
          "paused at its batch boundary by the migration lock of {} (taken by {} at {}): members already handed to "
          "agents finish; it resumes when the lock is lifted",
          subject, caller.actor, format_rfc3339(now));
      paused.updated_at = now;
      batch.mutations.push_back(PutRollout{paused});
      batch.mutations.push_back(AppendEvent{phase_changed(now, paused, (*latest)->phase, paused.reason)});
      detail.paused_rollouts[app] = paused.id;
    }
    record.detail_json = detail_to_json(detail);
    batch.mutations.push_back(PutMigrationLock{record});
    const std::string message = fmt::format(
        "{} is locked for migration by {} at {}: every other change to {} is refused, autoscaling and autohealing "
        "decisions are suspended{}; `tranche migration complete {}` lifts it",
        subject, caller.actor, format_rfc3339(now), app_name ? "it" : "any application",
        detail.paused_rollouts.empty()
            ? ""
            : fmt::format(", {} rollout{} paused at the batch boundary", detail.paused_rollouts.size(),
                          detail.paused_rollouts.size() == 1 ? "" : "s"),
        app_name.value_or("--all"));
    batch.mutations.push_back(AppendEvent{make_event(now, key, key, "", "MigrationLocked", nullptr,
                                                     json{{"by", caller.actor}, {"at", format_rfc3339(now)}},
                                                     message)});
    std::optional<OperationRecord> op;
    if (current) {
      ApplicationRecord app = current->app;
      batch.preconditions.push_back({key, app.version});
      op = next_operation(app, "migration-begin", json::object(), caller);
      op->message = message;
      batch.mutations.push_back(PutApplication{app});
      batch.mutations.push_back(PutOperation{*op});
    }
    batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, key, message}});
    auto done = store_.commit(batch);
    if (done) {
      record.version = 1;
      json out = lock_json(record);
      out["message"] = message;
      out["operation"] = op ? json(op->id) : json(nullptr);
      return out;
    }
    if (done.error().code != ErrorCode::kConflict || attempt >= kAttempts) {
      return std::unexpected(done.error());
    }
  }
}

Result<json> ApplicationService::migration_end(const std::optional<std::string>& app_name, bool complete,
                                               const Caller& caller) {
  std::lock_guard lock(commands_);
  const std::string key = app_name.value_or("");
  const std::string verb = complete ? "complete" : "cancel";
  for (int attempt = 0;; ++attempt) {
    std::optional<Current> current;
    if (app_name) {
      auto loaded = load(*app_name);
      if (!loaded) {
        return std::unexpected(loaded.error());
      }
      current = std::move(*loaded);
    }
    auto existing = store_.get_migration_lock(key);
    if (!existing) {
      return std::unexpected(existing.error());
    }
    if (!*existing) {
      return fail(ErrorCode::kConflict, fmt::format("{} is not locked for migration: nothing to {}",
                                                    app_name.value_or("the platform"), verb));
    }
    const MigrationLockRecord& record = **existing;
    auto detail = detail_from_json(record.detail_json);
    if (!detail) {
      return std::unexpected(detail.error());
    }
    if (detail->running()) {
      // updates.md refuses cancel while a perform runs; complete too: lifting
      // the lock then would let changes race with the perform it guards.
      return fail(ErrorCode::kConflict,
                  fmt::format("{} is refused while a perform is in progress ({}); wait for it to finish "
                              "(`tranche rollout status {}` or `tranche describe {}`)",
                              verb, describe_perform(key, *detail->perform), key, key));
    }
    const TimePoint now = clock_.now();
    WriteBatch batch;
    batch.mutations.push_back(DeleteMigrationLock{key, record.version});
    int resumed = 0;
    for (const auto& [app, id] : detail->paused_rollouts) {
      auto latest = store_.latest_rollout(app);
      if (!latest) {
        return std::unexpected(latest.error());
      }
      // Only if it is still the one the lock paused, still paused: a perform
      // superseded it, or it was aborted, and then there is nothing to resume.
      if (!*latest || (*latest)->id != id || (*latest)->phase != to_string(RolloutPhase::kPaused)) {
        continue;
      }
      RolloutRecord next = **latest;
      next.phase = std::string(
          to_string(next.target_revision != next.to_revision ? RolloutPhase::kRollingBack : RolloutPhase::kProgressing));
      next.reason = fmt::format("resumed: the migration lock of {} was lifted ({} by {})", lock_subject(record), verb,
                                caller.actor);
      next.updated_at = now;
      batch.mutations.push_back(PutRollout{next});
      batch.mutations.push_back(AppendEvent{phase_changed(now, next, (*latest)->phase, next.reason)});
      ++resumed;
    }
    const std::string message =
        fmt::format("{} lifted by {} ({}d): {} is no longer locked for migration{}", describe_lock(record),
                    caller.actor, verb, lock_subject(record),
                    resumed == 0 ? "" : fmt::format("; {} paused rollout{} resume{}", resumed, resumed == 1 ? "" : "s",
                                                    resumed == 1 ? "s" : ""));
    batch.mutations.push_back(AppendEvent{make_event(now, key, key, "", "MigrationUnlocked",
                                                     json{{"by", record.locked_by},
                                                          {"at", format_rfc3339(record.locked_at)}},
                                                     nullptr, message)});
    std::optional<OperationRecord> op;
    if (current) {
      ApplicationRecord app = current->app;
      batch.preconditions.push_back({key, app.version});
      op = next_operation(app, "migration-" + verb, json::object(), caller);
      op->message = message;
      batch.mutations.push_back(PutApplication{app});
      batch.mutations.push_back(PutOperation{*op});
    }
    batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, key, message}});
    auto done = store_.commit(batch);
    if (done) {
      return json{{"application", app_name ? json(*app_name) : json(nullptr)},
                  {"locked", false},
                  {"resumedRollouts", resumed},
                  {"operation", op ? json(op->id) : json(nullptr)},
                  {"message", message}};
    }
    if (done.error().code != ErrorCode::kConflict || attempt >= kAttempts) {
      return std::unexpected(done.error());
    }
  }
}

Result<json> ApplicationService::migration_perform(const std::string& app_name,
                                                   const std::optional<std::string>& member, int64_t to,
                                                   const Caller& caller) {
  std::lock_guard lock(commands_);
  for (int attempt = 0;; ++attempt) {
    auto current = load(app_name);
    if (!current) {
      return std::unexpected(current.error());
    }
    auto existing = store_.get_migration_lock(app_name);
    if (!existing) {
      return std::unexpected(existing.error());
    }
    if (!*existing) {
      return fail(ErrorCode::kConflict, fmt::format("{} is not locked for migration: `tranche migration begin {}` first",
                                                    app_name, app_name));
    }
    MigrationLockRecord record = **existing;
    auto detail = detail_from_json(record.detail_json);
    if (!detail) {
      return std::unexpected(detail.error());
    }
    if (detail->running()) {
      return fail(ErrorCode::kConflict, "a perform is already in progress: " +
                                            describe_perform(app_name, *detail->perform));
    }
    auto target = spec_at(app_name, to);
    if (!target) {
      Error e = target.error();
      e.field = "toRevision";
      return std::unexpected(std::move(e));
    }
    const TimePoint now = clock_.now();
    MigrationPerform perform{.to_revision = to, .by = caller.actor, .started_at = now};
    std::string message;

    if (member) {
      // "web/3" or "shop/web/3".
      perform.member = member->starts_with(app_name + "/") ? *member : app_name + "/" + *member;
      auto found = store_.get_member(app_name, perform.member);
      if (!found) {
        return std::unexpected(found.error());
      }
      if (!*found || !is_live_member(**found)) {
        return fail(ErrorCode::kNotFound, fmt::format("{} has no running member {}", app_name, perform.member),
                    "member");
      }
      bool has_cluster = false;
      for (const auto& node : flatten(**target)) {
        has_cluster = has_cluster || (node.cluster && node.path == (*found)->cluster);
      }
      if (!has_cluster) {
        return fail(ErrorCode::kConflict,
                    fmt::format("revision {} of {} has no cluster {}: {} cannot move to it", to, app_name,
                                (*found)->cluster, perform.member),
                    "toRevision");
      }
      message = fmt::format("migration perform: {} moves to revision {} (its cluster's update policy)",
                            perform.member, to);
      detail->perform = perform;
      record.detail_json = detail_to_json(*detail);
      record.updated_at = now;
      ApplicationRecord app = current->app;
      OperationRecord op = next_operation(app, "migration-perform", json{{"member", perform.member}, {"toRevision", to}},
                                          caller);
      op.message = message;
      WriteBatch batch;
      batch.preconditions.push_back({app_name, app.version});
      batch.mutations.push_back(PutMigrationLock{record});
      batch.mutations.push_back(AppendEvent{make_event(now, app_name, full_path(app_name, (*found)->cluster),
                                                       perform.member, "MigrationPerformStarted",
                                                       (*found)->revision, to, message)});
      batch.mutations.push_back(PutApplication{app});
      batch.mutations.push_back(PutOperation{op});
      batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, app_name, message}});
      auto done = store_.commit(batch);
      if (done) {
        record.version += 1;
        json out = lock_json(record);
        out["message"] = message;
        out["operation"] = op.id;
        out["rollout"] = nullptr;
        return out;
      }
      if (done.error().code != ErrorCode::kConflict || attempt >= kAttempts) {
        return std::unexpected(done.error());
      }
      continue;
    }

    // The whole application: revision `to`'s manifest becomes a new revision
    // (as `rollout undo` does: revisions are immutable and numbered in order)
    // and its rollout moves the members with each cluster's update policy.
    // When the manifest is already the current one, a rollout still brings
    // back members a member perform moved elsewhere.
    const auto amend = [&](ApplyOutcome& outcome, WriteBatch& batch) {
      perform.rollout = outcome.rollout;
      if (!outcome.rollout) {
        perform.finished = perform.succeeded = true;
        perform.finished_at = now;
        perform.message = fmt::format("every member already runs revision {}'s templates", to);
      }
      message = fmt::format("migration perform: {} moves to revision {}{}", app_name, to,
                            outcome.rollout ? fmt::format(" (rollout {}, as revision {})", *outcome.rollout,
                                                          outcome.revision)
                                            : ": " + perform.message);
      outcome.message = message;
      detail->perform = perform;
      record.detail_json = detail_to_json(*detail);
      record.updated_at = now;
      batch.mutations.push_back(PutMigrationLock{record});
      batch.mutations.push_back(AppendEvent{make_event(now, app_name, app_name, "", "MigrationPerformStarted",
                                                       current->app.current_revision, to, message)});
      if (perform.finished) {
        batch.mutations.push_back(AppendEvent{make_event(now, app_name, app_name, "", "MigrationPerformFinished",
                                                         nullptr, "Succeeded", perform.message)});
      }
    };
    Result<ApplyOutcome> outcome = [&]() -> Result<ApplyOutcome> {
      if (!diff_summary(current->spec.get(), **target).empty()) {
        return apply_spec(**target, false, caller, amend);
      }
      auto members = current_members(app_name);
      if (!members) {
        return std::unexpected(members.error());
      }
      ApplyOutcome same;
      same.app = app_name;
      same.revision = current->app.current_revision;
      WriteBatch batch;
      auto started = start_rollout(*current, *current->spec, same.revision, *members, caller, now, batch);
      if (!started) {
        return std::unexpected(started.error());
      }
      same.rollout = *started;
      amend(same, batch);
      ApplicationRecord app = current->app;
      OperationRecord op = next_operation(app, "migration-perform", json{{"toRevision", to}}, caller);
      op.message = same.message + end_apply_operations(store_, app_name, "Superseded",
                                                       "superseded by " + op.id + " (migration perform)", &op, now,
                                                       batch.mutations);
      same.operation_id = op.id;
      batch.preconditions.push_back({app_name, app.version});
      batch.mutations.push_back(PutApplication{app});
      batch.mutations.push_back(PutOperation{op});
      batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, app_name, same.message}});
      if (auto done = store_.commit(batch); !done) {
        return std::unexpected(done.error());
      }
      return same;
    }();
    if (outcome) {
      record.version += 1;
      json out = lock_json(record);
      out["message"] = outcome->message;
      out["operation"] = outcome->operation_id;
      out["revision"] = outcome->revision;
      out["rollout"] = outcome->rollout ? json(*outcome->rollout) : json(nullptr);
      return out;
    }
    if (outcome.error().code != ErrorCode::kConflict || attempt >= kAttempts) {
      return std::unexpected(outcome.error());
    }
  }
}

Result<json> ApplicationService::migration_view(const std::string& app) const {
  auto lock = lock_holding(store_, app);
  if (!lock) {
    return std::unexpected(lock.error());
  }
  return *lock ? lock_json(**lock) : json(nullptr);
}

Result<json> ApplicationService::migration_locks(const std::optional<std::string>& visible) const {
  auto locks = store_.list_migration_locks();
  if (!locks) {
    return std::unexpected(locks.error());
  }
  json items = json::array();
  for (const auto& lock : *locks) {
    if (lock.app.empty() || !visible || lock.app == *visible) {
      items.push_back(lock_json(lock));
    }
  }
  return json{{"items", items}};
}

}  // namespace tranche
