#pragma once
// Migration mode (updates.md): the lock an operator takes before a change
// that must not race with anything else. The lock itself is a store record
// (MigrationLockRecord); this is what the engine keeps in it and how a lock
// is told to a caller. ApplicationService takes and lifts locks and starts
// performs (application_migration.cc); the fleet suspends autoscaling and
// autohealing of a locked application and drives a member's perform
// (reconcile/migration.cc).

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "store/store.h"

namespace tranche {

// `migration perform`: the whole application, or one member, to a revision.
struct MigrationPerform {
  int64_t to_revision = 0;
  std::string member;  // a member id ("shop/web/3"); empty: the whole application
  std::string by;
  TimePoint started_at{};
  // The whole application: the rollout that moves it (none when every member
  // already ran the revision's templates).
  std::optional<int64_t> rollout;
  // One member of a cluster updated by replacement: the member created on
  // `to_revision` in its place, once there is one.
  std::string successor;
  bool finished = false;
  bool succeeded = false;
  std::string message;
  std::optional<TimePoint> finished_at;
};

// What a lock's detail_json holds.
struct MigrationDetail {
  std::optional<MigrationPerform> perform;  // the newest perform under this lock
  // Rollouts that taking the lock paused (by application): lifting the lock
  // resumes those still paused, and only those (an operator's own pause
  // stays).
  std::map<std::string, int64_t> paused_rollouts;

  bool running() const { return perform && !perform->finished; }
};

std::string detail_to_json(const MigrationDetail& detail);
Result<MigrationDetail> detail_from_json(const std::string& text);

// "shop" or "the platform".
std::string lock_subject(const MigrationLockRecord& lock);
// "the migration lock of shop, taken by alice at 2026-12-04T01:02:03Z".
std::string describe_lock(const MigrationLockRecord& lock);
// "shop/web/3 to revision 2, started by alice at ...".
std::string describe_perform(const std::string& app, const MigrationPerform& perform);

// The lock that holds `app`: its own, else the platform's (nullopt: none).
// `app` empty asks for the platform's only.
Result<std::optional<MigrationLockRecord>> lock_holding(Store& store, const std::string& app);

// kConflict naming the lock, who took it and when, when `app` (or the
// platform) is locked: what every mutating call but a migration call gets.
Status refuse_if_locked(Store& store, const std::string& app);

// {application, lockedBy, lockedAt, perform, pausedRollouts} for the API.
nlohmann::json lock_json(const MigrationLockRecord& lock);

}  // namespace tranche
