#pragma once
// A Store that forwards every call to another and runs a test's action just
// before one kind of read: a write that lands between two reads of a pass
// (an operator's apply while the fleet reconciles) at a chosen place.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace tranche {

class InterposedStore final : public Store {
 public:
  explicit InterposedStore(Store& inner) : inner_(inner) {}

  // Runs once, before the next latest_rollout() reads.
  void before_next_latest_rollout(std::function<void()> action) { before_latest_rollout_ = std::move(action); }

  int schema_version() const override { return inner_.schema_version(); }
  Result<CommitResult> commit(const WriteBatch& batch) override { return inner_.commit(batch); }
  std::vector<Result<CommitResult>> commit_group(const std::vector<WriteBatch>& batches) override {
    return inner_.commit_group(batches);
  }
  Result<std::optional<ApplicationRecord>> get_application(const std::string& name) override {
    return inner_.get_application(name);
  }
  Result<std::vector<ApplicationRecord>> list_applications() override { return inner_.list_applications(); }
  Result<std::optional<RevisionRecord>> get_revision(const std::string& app, int64_t number) override {
    return inner_.get_revision(app, number);
  }
  Result<std::vector<RevisionRecord>> list_revisions(const std::string& app) override {
    return inner_.list_revisions(app);
  }
  Result<std::vector<OperationalValueRecord>> list_operational_values(const std::string& app) override {
    return inner_.list_operational_values(app);
  }
  Result<std::vector<OperationalValueRecord>> list_expiring_values(TimePoint t) override {
    return inner_.list_expiring_values(t);
  }
  Result<std::vector<ClusterScaleRecord>> list_cluster_scales(const std::string& app) override {
    return inner_.list_cluster_scales(app);
  }
  Result<std::optional<RolloutRecord>> latest_rollout(const std::string& app) override {
    if (auto action = std::exchange(before_latest_rollout_, nullptr)) {
      action();
    }
    return inner_.latest_rollout(app);
  }
  Result<std::optional<MigrationLockRecord>> get_migration_lock(const std::string& app) override {
    return inner_.get_migration_lock(app);
  }
  Result<std::vector<MigrationLockRecord>> list_migration_locks() override { return inner_.list_migration_locks(); }
  Result<std::optional<ArtifactRecord>> get_artifact(const std::string& name, const std::string& version) override {
    return inner_.get_artifact(name, version);
  }
  Result<std::vector<ArtifactRecord>> list_artifacts(const std::optional<std::string>& name) override {
    return inner_.list_artifacts(name);
  }
  Result<std::vector<ArtifactRecord>> artifacts_with_digest(const std::string& sha256) override {
    return inner_.artifacts_with_digest(sha256);
  }
  Result<std::optional<AgentUpgradeRecord>> latest_agent_upgrade() override { return inner_.latest_agent_upgrade(); }
  Result<std::optional<MemberRecord>> get_member(const std::string& app, const std::string& id) override {
    return inner_.get_member(app, id);
  }
  Result<std::vector<MemberRecord>> list_members(const MemberQuery& query) override {
    return inner_.list_members(query);
  }
  Result<std::optional<HostRecord>> get_host(const std::string& id) override { return inner_.get_host(id); }
  Result<std::vector<HostRecord>> list_hosts() override { return inner_.list_hosts(); }
  Result<std::optional<OperationRecord>> get_operation(const std::string& id) override {
    return inner_.get_operation(id);
  }
  Result<std::vector<OperationRecord>> list_operations(const std::string& app, const std::string& status) override {
    return inner_.list_operations(app, status);
  }
  Result<std::optional<TokenRecord>> get_token(const std::string& id) override { return inner_.get_token(id); }
  Result<bool> has_admin_token() override { return inner_.has_admin_token(); }
  Result<std::vector<AuditRecord>> list_audit(size_t limit) override { return inner_.list_audit(limit); }
  Result<std::vector<EventRecord>> list_events(const EventQuery& query) override { return inner_.list_events(query); }
  Result<uint64_t> last_event_seq() override { return inner_.last_event_seq(); }
  uint64_t watch(WatchCallback callback) override { return inner_.watch(std::move(callback)); }
  void unwatch(uint64_t id) override { inner_.unwatch(id); }

 private:
  Store& inner_;
  std::function<void()> before_latest_rollout_;
};

}  // namespace tranche
