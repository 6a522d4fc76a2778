#pragma once
// Internal to the SQLite backend: the Store that open_sqlite_store() returns.
// Its reads, its watchers and the opening of a database are in
// sqlite_store.cc; a commit, the write of its batches' mutations, in
// sqlite_writes.cc. See README.md, "SQLite backend".

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/sqlite_statements.h"
#include "store/store.h"
#include "store/wal_checkpointer.h"

namespace tranche::sqlite {

class SqliteStore final : public Store {
 public:
  // `checkpointer`: null for a database in memory (no write-ahead log).
  SqliteStore(sqlite3* db, int version, std::unique_ptr<WalCheckpointer> checkpointer)
      : db_(db), version_(version), checkpointer_(std::move(checkpointer)) {}
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  int schema_version() const override { return version_; }

  // The batch is not copied: an application's maintenance marks may be
  // 100,000 mutations.
  Result<CommitResult> commit(const WriteBatch& batch) override { return std::move(write_group({&batch, 1}).front()); }
  std::vector<Result<CommitResult>> commit_group(const std::vector<WriteBatch>& batches) override {
    return write_group(batches);
  }

  Result<std::optional<ApplicationRecord>> get_application(const std::string& name) override;
  Result<std::vector<ApplicationRecord>> list_applications() override;
  Result<std::optional<RevisionRecord>> get_revision(const std::string& app, int64_t number) override;
  Result<std::vector<RevisionRecord>> list_revisions(const std::string& app) override;
  Result<std::vector<OperationalValueRecord>> list_operational_values(const std::string& app) override;
  Result<std::vector<OperationalValueRecord>> list_expiring_values(TimePoint t) override;
  Result<std::vector<ClusterScaleRecord>> list_cluster_scales(const std::string& app) override;
  Result<std::optional<RolloutRecord>> latest_rollout(const std::string& app) override;
  Result<std::optional<MigrationLockRecord>> get_migration_lock(const std::string& app) override;
  Result<std::vector<MigrationLockRecord>> list_migration_locks() override;
  Result<std::optional<ArtifactRecord>> get_artifact(const std::string& name, const std::string& version) override;
  Result<std::vector<ArtifactRecord>> list_artifacts(const std::optional<std::string>& name) override;
  Result<std::vector<ArtifactRecord>> artifacts_with_digest(const std::string& sha256) override;
  Result<std::optional<AgentUpgradeRecord>> latest_agent_upgrade() override;
  Result<std::optional<MemberRecord>> get_member(const std::string& app, const std::string& id) override;
  Result<std::vector<MemberRecord>> list_members(const MemberQuery& filter) override;
  Result<std::optional<HostRecord>> get_host(const std::string& id) override;
  Result<std::vector<HostRecord>> list_hosts() override;
  Result<std::optional<OperationRecord>> get_operation(const std::string& id) override;
  Result<std::vector<OperationRecord>> list_operations(const std::string& app, const std::string& status) override;
  Result<std::optional<TokenRecord>> get_token(const std::string& id) override;
  Result<bool> has_admin_token() override;
  Result<std::vector<AuditRecord>> list_audit(size_t limit) override;
  Result<std::vector<EventRecord>> list_events(const EventQuery& filter) override;
  Result<uint64_t> last_event_seq() override;

  uint64_t watch(WatchCallback callback) override;
  void unwatch(uint64_t id) override;

 private:
  // Seqs handed out so far in the batch being committed.
  struct EventCounter {
    bool loaded = false;
    uint64_t last = 0;
  };

  // The cached statement for `sql`, prepared on first use. mu_ held.
  Query query(std::string_view sql);
  Result<uint64_t> read_last_event_seq();

  // One transaction for the group; each batch under a savepoint, so that a
  // conflict rolls back that batch alone (and gives its seqs back).
  std::vector<Result<CommitResult>> write_group(std::span<const WriteBatch> batches);
  Status write_group_locked(std::span<const WriteBatch> batches, std::vector<Result<CommitResult>>& results);
  Status apply_batch(const WriteBatch& batch, EventCounter& events, CommitResult& result);
  // One per kind of Mutation; mu_ held, inside the batch's savepoint.
  Status apply(const PutApplication& m, EventCounter&, CommitResult&);
  Status apply(const PutRevision& m, EventCounter&, CommitResult&);
  Status apply(const DeleteRevision& m, EventCounter&, CommitResult&);
  Status apply(const PutOperationalValue& m, EventCounter&, CommitResult&);
  Status apply(const DeleteOperationalValue& m, EventCounter&, CommitResult&);
  Status apply(const PutClusterScale& m, EventCounter&, CommitResult&);
  Status apply(const DeleteClusterScale& m, EventCounter&, CommitResult&);
  Status apply(const PutRollout& m, EventCounter&, CommitResult&);
  Status apply(const PutMigrationLock& m, EventCounter&, CommitResult&);
  Status apply(const DeleteMigrationLock& m, EventCounter&, CommitResult&);
  Status apply(const PutArtifact& m, EventCounter&, CommitResult&);
  Status apply(const DeleteArtifact& m, EventCounter&, CommitResult&);
  Status apply(const PutAgentUpgrade& m, EventCounter&, CommitResult&);
  Status apply(const PutMember& m, EventCounter&, CommitResult&);
  Status apply(const PutHost& m, EventCounter&, CommitResult&);
  Status apply(const PutOperation& m, EventCounter&, CommitResult&);
  Status apply(const PutToken& m, EventCounter&, CommitResult&);
  Status apply(const AppendAudit& m, EventCounter&, CommitResult&);
  Status apply(const AppendEvent& m, EventCounter& events, CommitResult& result);
  // Compare-and-swap on a lock's version, as etcd's Txn compares a key's
  // mod revision.
  Status expect_lock_version(const std::string& app, int64_t version);

  // Tells every watcher the newest seq, outside mu_ so callbacks may read.
  // Serialized, so each callback sees non-decreasing values even when
  // committers finish out of order.
  void notify(uint64_t seq);

  std::mutex mu_;  // the connection and the statement cache
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
  const int version_;
  std::unique_ptr<WalCheckpointer> checkpointer_;  // stopped before db_ closes

  // Recursive: a callback may call watch()/unwatch() on its own thread.
  std::recursive_mutex watch_mu_;
  std::map<uint64_t, WatchCallback> watchers_;
  uint64_t next_watch_id_ = 1;
  uint64_t notified_seq_ = 0;
};

}  // namespace tranche::sqlite
