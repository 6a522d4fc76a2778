#pragma once
// The controller's durable state. See README.md for the design.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/error.h"
#include "store/records.h"

namespace tranche {

// Preconditions of a batch. The batch fails with kConflict, writing nothing,
// when one does not hold.
struct ExpectApplicationVersion {
  std::string app;
  int64_t version = 0;  // 0: the application must not exist
};

struct PutApplication {
  ApplicationRecord record;
};  // sets record.version = old + 1
struct PutRevision {
  RevisionRecord record;
};
struct DeleteRevision {
  std::string app;
  int64_t number = 0;
};
struct PutOperationalValue {
  OperationalValueRecord record;
};
struct DeleteOperationalValue {
  std::string app;
  std::string path;
  Setting setting;
  // Only a value set at or before this time: a compare-and-delete, so that
  // clearing the marker a step acted on never deletes a newer command's.
  std::optional<TimePoint> set_no_later_than;
};
struct PutMember {
  MemberRecord record;
};
struct PutHost {
  HostRecord record;
};
struct PutOperation {
  OperationRecord record;
};
struct PutToken {
  TokenRecord record;
};
struct AppendAudit {
  AuditRecord record;
};
struct AppendEvent {
  EventRecord record;
};  // seq assigned at commit
struct PutClusterScale {
  ClusterScaleRecord record;
};
struct DeleteClusterScale {
  std::string app;
  std::string cluster;
};
// Fails the batch with kConflict, writing nothing, unless the stored
// rollout (app, id) has record.version (0: does not exist yet).
struct PutRollout {
  RolloutRecord record;
};

// Fails the batch with kConflict, writing nothing, unless the stored lock
// of record.app has record.version (0: there is none).
struct PutMigrationLock {
  MigrationLockRecord record;
};
// Fails the batch with kConflict unless the stored lock of `app` has
// `version`.
struct DeleteMigrationLock {
  std::string app;
  int64_t version = 0;
};

// Names content for good: fails the batch with kConflict, writing nothing,
// when (name, version) already names another sha256; the same one again is
// a no-op.
struct PutArtifact {
  ArtifactRecord record;
};
struct DeleteArtifact {
  std::string name;
  std::string version;
};
// Fails the batch with kConflict, writing nothing, unless the stored
// upgrade record.id has record.version (0: does not exist yet).
struct PutAgentUpgrade {
  AgentUpgradeRecord record;
};

using Mutation = std::variant<PutApplication, PutRevision, DeleteRevision, PutOperationalValue, DeleteOperationalValue,
                              PutMember, PutHost, PutOperation, PutToken, AppendAudit, AppendEvent, PutClusterScale,
                              DeleteClusterScale, PutRollout, PutMigrationLock, DeleteMigrationLock, PutArtifact,
                              DeleteArtifact, PutAgentUpgrade>;

struct WriteBatch {
  std::vector<ExpectApplicationVersion> preconditions;
  std::vector<Mutation> mutations;  // applied in order
};

struct CommitResult {
  // Seqs given to the batch's AppendEvents, in order; empty if it had none.
  std::vector<uint64_t> event_seqs;
};

struct EventQuery {
  uint64_t after_seq = 0;  // events with seq > after_seq
  std::optional<std::string> app;
  size_t limit = 1000;
  // The newest `limit` of them, newest first (an application's recent
  // events without reading its history; etcd: a range sorted descending).
  bool newest_first = false;
};

struct MemberQuery {
  std::optional<std::string> app;
  std::optional<std::string> cluster;
  std::optional<std::string> state;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual int schema_version() const = 0;

  // Atomic and durable when it returns success. Errors: kConflict for a
  // failed precondition, kUnavailable when the medium refuses the write.
  virtual Result<CommitResult> commit(const WriteBatch& batch) = 0;

  // Commits `batches` in order, one result each. A batch whose precondition
  // or rollout version fails (kConflict) is rejected alone; any other error
  // fails every batch of the group. The default commits them one by one;
  // SQLite writes the whole group in one transaction (one fsync), each batch
  // under its own savepoint. An etcd backend would send a transaction per
  // batch (at most 128 operations each): callers keep batches that small
  // unless they must be atomic.
  virtual std::vector<Result<CommitResult>> commit_group(const std::vector<WriteBatch>& batches);

  virtual Result<std::optional<ApplicationRecord>> get_application(const std::string& name) = 0;
  virtual Result<std::vector<ApplicationRecord>> list_applications() = 0;

  virtual Result<std::optional<RevisionRecord>> get_revision(const std::string& app, int64_t number) = 0;
  // Newest first.
  virtual Result<std::vector<RevisionRecord>> list_revisions(const std::string& app) = 0;

  virtual Result<std::vector<OperationalValueRecord>> list_operational_values(const std::string& app) = 0;
  // Time-boxed values of every application that expire at or before `t`.
  virtual Result<std::vector<OperationalValueRecord>> list_expiring_values(TimePoint t) = 0;

  virtual Result<std::vector<ClusterScaleRecord>> list_cluster_scales(const std::string& app) = 0;

  // The application's newest rollout, finished or not.
  virtual Result<std::optional<RolloutRecord>> latest_rollout(const std::string& app) = 0;

  // Migration locks: the application's ("" for the platform's), and all of
  // them by app (the platform's first).
  virtual Result<std::optional<MigrationLockRecord>> get_migration_lock(const std::string& app) = 0;
  virtual Result<std::vector<MigrationLockRecord>> list_migration_locks() = 0;

  // Artifacts: one by name and version; all of them (of `name` when given)
  // by name, then version; those naming one content.
  virtual Result<std::optional<ArtifactRecord>> get_artifact(const std::string& name, const std::string& version) = 0;
  virtual Result<std::vector<ArtifactRecord>> list_artifacts(const std::optional<std::string>& name) = 0;
  virtual Result<std::vector<ArtifactRecord>> artifacts_with_digest(const std::string& sha256) = 0;

  // The newest agent upgrade, finished or not.
  virtual Result<std::optional<AgentUpgradeRecord>> latest_agent_upgrade() = 0;

  virtual Result<std::optional<MemberRecord>> get_member(const std::string& app, const std::string& id) = 0;
  // Ordered by application, cluster and ordinal: the fleet reads each
  // cluster's members oldest first from it (Fleet's rosters).
  virtual Result<std::vector<MemberRecord>> list_members(const MemberQuery& query) = 0;

  virtual Result<std::optional<HostRecord>> get_host(const std::string& id) = 0;
  virtual Result<std::vector<HostRecord>> list_hosts() = 0;

  virtual Result<std::optional<OperationRecord>> get_operation(const std::string& id) = 0;

  // The application's operations in `status` ("Running": maintenance still
  // under way), oldest first.
  virtual Result<std::vector<OperationRecord>> list_operations(const std::string& app, const std::string& status) = 0;

  virtual Result<std::optional<TokenRecord>> get_token(const std::string& id) = 0;
  // Whether an admin token without an application scope exists (bootstrap).
  virtual Result<bool> has_admin_token() = 0;

  // Newest last.
  virtual Result<std::vector<AuditRecord>> list_audit(size_t limit) = 0;

  virtual Result<std::vector<EventRecord>> list_events(const EventQuery& query) = 0;
  virtual Result<uint64_t> last_event_seq() = 0;

  // Called after every commit that appended events, with the newest seq, on
  // the committing thread. Calls are serialized and each callback sees
  // non-decreasing seqs. Subscribers must not block or call commit(); they
  // may read, and may watch()/unwatch() (unwatch() waits for a call in
  // progress on another thread).
  // Returns an id for unwatch().
  using WatchCallback = std::function<void(uint64_t last_seq)>;
  virtual uint64_t watch(WatchCallback callback) = 0;
  virtual void unwatch(uint64_t id) = 0;

  // Told the latency and outcome of every commit (for metrics). Set once,
  // before the store is shared between threads.
  using CommitObserver = std::function<void(std::chrono::nanoseconds latency, bool ok)>;
  void observe_commits(CommitObserver observer) { commit_observer_ = std::move(observer); }

 protected:
  void report_commit(std::chrono::nanoseconds latency, bool ok) const {
    if (commit_observer_) {
      commit_observer_(latency, ok);
    }
  }

 private:
  CommitObserver commit_observer_;
};

struct SqliteStoreOptions {
  std::string path;  // file; ":memory:" for tests
};

// Opens (creating if needed) and migrates to the current schema in one
// transaction. Refuses a store newer than this binary (kUnavailable, with
// both versions in the message).
Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteStoreOptions& options);

// The schema version this binary writes.
int current_schema_version();

std::string_view to_string(Setting setting);
std::optional<Setting> setting_from_string(std::string_view name);
std::string_view to_string(Role role);
std::optional<Role> role_from_string(std::string_view name);

}  // namespace tranche
