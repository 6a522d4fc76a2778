#pragma once
// The controller's commands on applications: apply (revisions), undeploy,
// operational state, and their read views. Commands on applications are
// serialized in the order they are accepted; each gets an operation record
// with a per-application sequence number, and every change is one store
// batch carrying its events and audit record.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "engine/access.h"
#include "engine/spec_cache.h"
#include "model/manifest.h"
#include "store/store.h"

namespace tranche {

struct ApplyOutcome {
  std::string app;
  int64_t revision = 0;
  bool created = false;  // a new application
  bool changed = false;  // a new revision (or would be, for a dry run)
  bool dry_run = false;
  std::string summary;
  std::string operation_id;        // empty for a dry run or a no-op
  std::optional<int64_t> rollout;  // the rollout this revision started
  std::string message;
};

struct OperationalChange {
  std::string path;  // relative to the application; "" is the application
  std::optional<std::string> autoscaling;
  std::optional<std::string> autohealing;
  std::optional<std::string> maintenance;
  bool propagate = false;
  bool all_at_once = false;
  std::optional<std::chrono::milliseconds> duration;  // time-boxed
};

// Parses a PUT /operational-state body; errors name the field.
Result<OperationalChange> parse_operational_change(const nlohmann::json& body);

class ApplicationService {
 public:
  // `specs`: the controller's one cache, shared with the fleet; without
  // one the service makes its own.
  ApplicationService(Store& store, const Clock& clock, std::shared_ptr<SpecCache> specs = nullptr)
      : store_(store), clock_(clock), specs_(specs ? std::move(specs) : std::make_shared<SpecCache>(store)) {}
  const Clock& clock() const { return clock_; }

  // `scope`: the only application the caller may see (a scoped token).
  Result<ApplyOutcome> apply(std::string_view manifest, ManifestFormat format, bool dry_run, const Caller& caller,
                             const std::optional<std::string>& scope = std::nullopt);
  Result<nlohmann::json> undeploy(const std::string& app, const Caller& caller);
  Result<nlohmann::json> set_operational_state(const std::string& app, const OperationalChange& change,
                                               const Caller& caller);
  // Rollout controls (updates.md): pause, resume, abort, promote; idempotent,
  // each answers with the rollout's phase.
  Result<nlohmann::json> rollout_control(const std::string& app, std::string_view action, const Caller& caller);
  // A new revision with revision `to`'s manifest (default: the one before the
  // current), which starts a rollout like any apply.
  Result<ApplyOutcome> undo(const std::string& app, std::optional<int64_t> to, const Caller& caller);
  // Migration mode (updates.md; application_migration.cc). `app` nullopt is
  // the platform lock. While a lock holds an application, every mutating
  // call above is refused (kConflict naming the lock); these are not.
  Result<nlohmann::json> migration_begin(const std::optional<std::string>& app, const Caller& caller);
  // Moves the whole application (`member` nullopt) or one member to revision
  // `to`, forward or backward, with the clusters' update policies. Needs the
  // application's own lock and no perform in progress.
  Result<nlohmann::json> migration_perform(const std::string& app, const std::optional<std::string>& member,
                                           int64_t to, const Caller& caller);
  // Lifts the lock (`complete` or cancel) and resumes the rollouts taking it
  // paused; both are refused while a perform is in progress.
  Result<nlohmann::json> migration_end(const std::optional<std::string>& app, bool complete, const Caller& caller);
  // The locks a caller may see: the platform's and, with `visible`, only
  // that application's.
  Result<nlohmann::json> migration_locks(const std::optional<std::string>& visible) const;
  // Reverts time-boxed values that have expired; returns how many.
  Result<int> expire_operational_values();

  // Views. `visible` limits listings to one application (a scoped token).
  Result<nlohmann::json> list_applications(const std::optional<std::string>& visible) const;
  // The tree with explicit and effective values and the recent events;
  // cluster nodes carry the manifest's member counts, not the members
  // (application_view.cc: the API adds the fleet's counts).
  Result<nlohmann::json> describe_application(const std::string& app) const;
  Result<nlohmann::json> list_revisions(const std::string& app) const;
  Result<nlohmann::json> get_revision(const std::string& app, int64_t number) const;
  Result<nlohmann::json> operational_state(const std::string& app, const std::optional<std::string>& path) const;
  Result<nlohmann::json> get_operation(const std::string& id) const;
  // What the members of each of an application's clusters (paths) do, for
  // the rollout view: live members on `revision`, and Active ones. The API
  // counts them in the fleet's index (Fleet::cluster_counts), not the store.
  struct RolloutCounts {
    int64_t updated = 0;
    int64_t available = 0;
  };
  using CountRolloutMembers =
      std::function<std::map<std::string, RolloutCounts>(const std::vector<std::string>& clusters, int64_t revision)>;
  // The newest rollout with per-cluster progress.
  Result<nlohmann::json> rollout_view(const std::string& app, const CountRolloutMembers& count) const;

 private:
  struct Current {
    ApplicationRecord app;
    std::shared_ptr<const ApplicationSpec> spec;  // of app.current_revision
  };
  Result<Current> load(const std::string& app) const;
  // apply() once its caller may change the application: commands_ held, the
  // migration lock checked (or a perform's own). `amend` adds to the batch,
  // knowing the outcome (the rollout started), before it is committed.
  using AmendApply = std::function<void(ApplyOutcome&, WriteBatch&)>;
  Result<ApplyOutcome> apply_spec(const ApplicationSpec& spec, bool dry_run, const Caller& caller,
                                  const AmendApply& amend);
  // What the read views need: the spec, current members, explicit values.
  struct View {
    Current current;
    std::vector<MemberRecord> members;
    std::vector<OperationalValueRecord> values;
  };
  Result<View> load_view(const std::string& app) const;
  // The lock holding `app` as lock_json (its own, else the platform's), or
  // null: shown by the application's views.
  Result<nlohmann::json> migration_view(const std::string& app) const;
  // Members that exist now; Terminated ones are history.
  Result<std::vector<MemberRecord>> current_members(const std::string& app) const;
  void mark_for_maintenance(const std::string& app, const std::string& path, const std::string& value, bool all_at_once,
                            const std::vector<MemberRecord>& members, const Caller& caller, TimePoint now,
                            WriteBatch& batch) const;
  struct CurrentRollout {
    Current app;
    RolloutRecord rollout;  // the newest
  };
  // kNotFound when the application or its rollout does not exist.
  Result<CurrentRollout> load_rollout(const std::string& app) const;
  // A revision's spec, if the store still has that revision (a cache holder
  // may keep one the store has deleted).
  Result<std::shared_ptr<const ApplicationSpec>> spec_at(const std::string& app, int64_t number) const;
  // Supersedes a running rollout and starts a new one when some member's
  // template differs from `spec`'s; adds both to `batch`.
  Result<std::optional<int64_t>> start_rollout(const Current& current, const ApplicationSpec& spec, int64_t revision,
                                               const std::vector<MemberRecord>& members, const Caller& caller,
                                               TimePoint now, WriteBatch& batch) const;
  // The next operation of `app`: bumps its sequence in `record`.
  OperationRecord next_operation(ApplicationRecord& record, std::string kind, nlohmann::json request,
                                 const Caller& caller) const;

  Store& store_;
  const Clock& clock_;
  std::mutex commands_;  // serializes commands; reads need no lock
  std::shared_ptr<SpecCache> specs_;
};

}  // namespace tranche
