#include "engine/migration.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace tranche {

namespace {

using nlohmann::json;

json optional_time(const std::optional<TimePoint>& t) { return t ? json(format_rfc3339(*t)) : json(nullptr); }

json perform_json(const MigrationPerform& p) {
  return json{{"toRevision", p.to_revision},
              {"member", p.member.empty() ? json(nullptr) : json(p.member)},
              {"by", p.by},
              {"startedAt", format_rfc3339(p.started_at)},
              {"rollout", p.rollout ? json(*p.rollout) : json(nullptr)},
              {"successor", p.successor.empty() ? json(nullptr) : json(p.successor)},
              {"finished", p.finished},
              {"succeeded", p.succeeded},
              {"message", p.message},
              {"finishedAt", optional_time(p.finished_at)}};
}

Result<TimePoint> time_field(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) {
    return fail(ErrorCode::kInternal, std::string("migration lock detail: ") + key + " is not a time");
  }
  return parse_rfc3339(j[key].get<std::string>());
}

}  // namespace

std::string detail_to_json(const MigrationDetail& detail) {
  json j = {{"perform", detail.perform ? perform_json(*detail.perform) : json(nullptr)},
            {"pausedRollouts", detail.paused_rollouts}};
  return j.dump();
}

Result<MigrationDetail> detail_from_json(const std::string& text) {
  MigrationDetail detail;
  try {
    const json j = json::parse(text);
    if (j.contains("pausedRollouts")) {
      detail.paused_rollouts = j["pausedRollouts"].get<std::map<std::string, int64_t>>();
    }
    if (j.contains("perform") && j["perform"].is_object()) {
      const json& p = j["perform"];
      MigrationPerform perform;
      perform.to_revision = p.at("toRevision").get<int64_t>();
      perform.member = p.at("member").is_null() ? "" : p.at("member").get<std::string>();
      perform.by = p.at("by").get<std::string>();
      auto started = time_field(p, "startedAt");
      if (!started) {
        return std::unexpected(started.error());
      }
      perform.started_at = *started;
      if (!p.at("rollout").is_null()) {
        perform.rollout = p.at("rollout").get<int64_t>();
      }
      perform.successor = p.at("successor").is_null() ? "" : p.at("successor").get<std::string>();
      perform.finished = p.at("finished").get<bool>();
      perform.succeeded = p.at("succeeded").get<bool>();
      perform.message = p.at("message").get<std::string>();
      if (!p.at("finishedAt").is_null()) {
        auto finished = time_field(p, "finishedAt");
        if (!finished) {
          return std::unexpected(finished.error());
        }
        perform.finished_at = *finished;
      }
      detail.perform = std::move(perform);
    }
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInternal, std::string("migration lock detail does not read: ") + e.what());
  }
  return detail;
}

std::string lock_subject(const MigrationLockRecord& lock) {
  return lock.app.empty() ? std::string("the platform") : lock.app;
}

std::string describe_lock(const MigrationLockRecord& lock) {
  return fmt::format("the migration lock of {}, taken by {} at {}", lock_subject(lock), lock.locked_by,
                     format_rfc3339(lock.locked_at));
}

std::string describe_perform(const std::string& app, const MigrationPerform& p) {
  return fmt::format("{} to revision {}, started by {} at {}", p.member.empty() ? app : p.member, p.to_revision, p.by,
                     format_rfc3339(p.started_at));
}

Result<std::optional<MigrationLockRecord>> lock_holding(Store& store, const std::string& app) {
  if (!app.empty()) {
    auto own = store.get_migration_lock(app);
    if (!own || *own) {
      return own;
    }
  }
  return store.get_migration_lock("");
}

Status refuse_if_locked(Store& store, const std::string& app) {
  auto lock = lock_holding(store, app);
  if (!lock) {
    return std::unexpected(lock.error());
  }
  if (!*lock) {
    return {};
  }
  // The command that lifts it: a platform lock is lifted with --all.
  const std::string lift = (*lock)->app.empty() ? "--all" : (*lock)->app;
  return fail(ErrorCode::kConflict,
              fmt::format("{} is locked for migration ({}): only migration calls are taken until `tranche migration "
                          "complete {}` (or `cancel {}`) lifts it",
                          app.empty() ? std::string("the platform") : app, describe_lock(**lock), lift, lift));
}

json lock_json(const MigrationLockRecord& lock) {
  json j = {{"application", lock.app.empty() ? json(nullptr) : json(lock.app)},
            {"platform", lock.app.empty()},
            {"lockedBy", lock.locked_by},
            {"lockedAt", format_rfc3339(lock.locked_at)},
            {"perform", nullptr},
            {"performInProgress", false},
            {"pausedRollouts", json::object()}};
  if (auto detail = detail_from_json(lock.detail_json)) {
    j["perform"] = detail->perform ? perform_json(*detail->perform) : json(nullptr);
    j["performInProgress"] = detail->running();
    j["pausedRollouts"] = detail->paused_rollouts;
  }
  return j;
}

}  // namespace tranche
