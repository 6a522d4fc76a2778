// The embedded Store backend: one SQLite connection behind a mutex, WAL
// journal, synchronous=FULL, cached prepared statements, times as INTEGER
// Unix milliseconds and maps as JSON text. See README.md.

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/time_format.h"
#include "store/schema.h"
#include "store/store.h"

namespace tranche {
namespace {

// Column lists in the order of the records' fields: rows are read back with
// one braced initializer and written with one bind() in that same order.
#define APPLICATION_COLUMNS "name, current_revision, deployed, version, operation_seq, created_at, updated_at"
#define REVISION_COLUMNS "app, number, manifest_json, author, summary, created_at"
#define VALUE_COLUMNS "app, path, setting, value, expires_at, previous_value, set_by, set_at, all_at_once"
#define SCALE_COLUMNS "app, cluster, desired, base_desired, reason, decided_at"
#define MEMBER_COLUMNS                                                                                              \
  "id, app, cluster, ordinal, host, state, revision, version, pid, ports_json, healing_delayed_since, created_at, " \
  "updated_at"
#define ROLLOUT_COLUMNS                                                                                    \
  "app, id, from_revision, to_revision, target_revision, phase, reason, promoted, progress_json, author, " \
  "created_at, updated_at, finished_at, version"
#define LOCK_COLUMNS "app, locked_by, locked_at, detail_json, updated_at, version"
#define ARTIFACT_COLUMNS "name, version, sha256, size, uploaded_by, uploaded_at"
#define UPGRADE_COLUMNS                                                                                          \
  "id, agent_version, artifact_sha256, artifact_size, max_unavailable, selector, fallback_seconds, state, reason, " \
  "progress_json, author, created_at, updated_at, finished_at, version"
#define HOST_COLUMNS "id, hostname, state, labels_json, slots, token_hash, registered_at, updated_at"
#define OPERATION_COLUMNS "id, app, seq, kind, request_json, status, message, actor, created_at, updated_at"
#define TOKEN_COLUMNS "id, name, secret_hash, role, app, created_at"
#define AUDIT_COLUMNS "id, time, actor, action, target, result"
#define EVENT_COLUMNS "seq, time, app, path, member, type, from_json, to_json, message"

// A cached prepared statement in use. bind() appends parameters in order;
// errors from preparing or binding surface at step(). Resets the statement
// (ending any read it holds open) when it goes out of scope. Text is bound
// without a copy (SQLITE_STATIC): a Query lives within one expression
// (`query(...).bind(...).run()`) or one function, and what it binds lives
// at least as long; its bindings are cleared as it ends, so no cached
// statement keeps a pointer.
class Query {
 public:
  Query(sqlite3* db, sqlite3_stmt* stmt, int setup_rc = SQLITE_OK, std::string setup_error = {})
      : db_(db), stmt_(stmt), setup_rc_(setup_rc), setup_error_(std::move(setup_error)) {}
  ~Query() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  template <class... Args>
  Query& bind(const Args&... args) {
    (bind_one(args), ...);
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return setup_rc_ != SQLITE_OK ? setup_rc_ : sqlite3_step(stmt_); }

  // Runs a statement that returns no rows (or whose rows do not matter).
  Status run() {
    const int rc = step();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      return std::unexpected(error());
    }
    return {};
  }

  Error error() const {
    return Error{ErrorCode::kUnavailable, "store: " + (setup_error_.empty() ? sqlite3_errmsg(db_) : setup_error_)};
  }

  bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t i64(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const {
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return data != nullptr ? std::string(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column))) : "";
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK && setup_rc_ == SQLITE_OK) {
      setup_rc_ = rc;
      setup_error_ = sqlite3_errmsg(db_);
    }
  }
  void bind_one(int64_t value) { check(sqlite3_bind_int64(stmt_, ++index_, value)); }
  void bind_one(std::string_view value) {
    check(sqlite3_bind_text64(stmt_, ++index_, value.data(), value.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  void bind_one(TimePoint value) { bind_one(to_unix_millis(value)); }
  template <class T>
  void bind_one(const std::optional<T>& value) {
    if (value) {
      bind_one(*value);
    } else {
      check(sqlite3_bind_null(stmt_, ++index_));
    }
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int setup_rc_;
  std::string setup_error_;
  int index_ = 0;
};

// Reads the current row's columns left to right.
class Row {
 public:
  explicit Row(const Query& query) : query_(query) {}

  int64_t i64() { return query_.i64(column_++); }
  std::string text() { return query_.text(column_++); }
  TimePoint time() { return from_unix_millis(i64()); }
  std::optional<int64_t> opt_i64() { return null() ? std::nullopt : std::optional(i64()); }
  std::optional<std::string> opt_text() { return null() ? std::nullopt : std::optional(text()); }
  std::optional<TimePoint> opt_time() { return null() ? std::nullopt : std::optional(time()); }
  template <class T>
  T json() {
    return nlohmann::json::parse(text()).get<T>();  // throws on a corrupt value
  }
  Setting setting() { return known(setting_from_string(text()), "setting"); }
  Role role() { return known(role_from_string(text()), "role"); }

 private:
  bool null() {
    if (!query_.is_null(column_)) {
      return false;
    }
    ++column_;
    return true;
  }
  template <class T>
  T known(std::optional<T> value, const char* what) {
    if (!value) {
      throw std::runtime_error(std::string("unknown ") + what + " in column " + std::to_string(column_ - 1));
    }
    return *value;
  }

  const Query& query_;
  int column_ = 0;
};

int64_t read_i64(Row r) { return r.i64(); }
ApplicationRecord read_application(Row r) {
  return {r.text(), r.i64(), r.i64() != 0, r.i64(), r.i64(), r.time(), r.time()};
}
RevisionRecord read_revision(Row r) { return {r.text(), r.i64(), r.text(), r.text(), r.text(), r.time()}; }
OperationalValueRecord read_value(Row r) {
  return {r.text(), r.text(), r.setting(), r.text(), r.opt_time(), r.opt_text(), r.text(), r.time(), r.i64() != 0};
}
ClusterScaleRecord read_scale(Row r) { return {r.text(), r.text(), r.i64(), r.i64(), r.text(), r.time()}; }
RolloutRecord read_rollout(Row r) {
  return {r.text(),     r.i64(),  r.i64(),  r.i64(),  r.i64(),  r.text(),     r.text(),
          r.i64() != 0, r.text(), r.text(), r.time(), r.time(), r.opt_time(), r.i64()};
}
MigrationLockRecord read_lock(Row r) { return {r.text(), r.text(), r.time(), r.text(), r.time(), r.i64()}; }
ArtifactRecord read_artifact(Row r) { return {r.text(), r.text(), r.text(), r.i64(), r.text(), r.time()}; }
AgentUpgradeRecord read_upgrade(Row r) {
  return {r.i64(),  r.text(), r.text(), r.i64(),  r.i64(),  r.text(),     r.i64(), r.text(),
          r.text(), r.text(), r.text(), r.time(), r.time(), r.opt_time(), r.i64()};
}
MemberRecord read_member(Row r) {
  return {r.text(),     r.text(), r.text(), r.i64(),     r.text(),
          r.text(),     r.i64(),  r.text(), r.opt_i64(), r.json<std::map<std::string, int>>(),
          r.opt_time(), r.time(), r.time()};
}
HostRecord read_host(Row r) {
  return {r.text(), r.text(), r.text(), r.json<std::map<std::string, std::string>>(),
          r.i64(),  r.text(), r.time(), r.time()};
}
OperationRecord read_operation(Row r) {
  return {r.text(), r.text(), r.i64(), r.text(), r.text(), r.text(), r.text(), r.text(), r.time(), r.time()};
}
TokenRecord read_token(Row r) { return {r.text(), r.text(), r.text(), r.role(), r.opt_text(), r.time()}; }
AuditRecord read_audit(Row r) { return {r.i64(), r.time(), r.text(), r.text(), r.text(), r.text()}; }
EventRecord read_event(Row r) {
  return {
      static_cast<uint64_t>(r.i64()), r.time(), r.text(), r.text(), r.text(), r.text(), r.text(), r.text(), r.text()};
}

template <class T>
Result<T> decode(const Query& query, T (*read)(Row)) {
  try {
    return read(Row(query));
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInternal, std::string("store: unreadable row: ") + e.what());
  }
}

template <class T>
Result<std::optional<T>> one(Query& query, T (*read)(Row)) {
  const int rc = query.step();
  if (rc == SQLITE_DONE) {
    return std::optional<T>();
  }
  if (rc != SQLITE_ROW) {
    return std::unexpected(query.error());
  }
  auto row = decode(query, read);
  if (!row) {
    return std::unexpected(row.error());
  }
  return std::optional<T>(std::move(*row));
}

template <class T>
Result<std::vector<T>> all(Query& query, T (*read)(Row)) {
  std::vector<T> rows;
  for (;;) {
    const int rc = query.step();
    if (rc == SQLITE_DONE) {
      return rows;
    }
    if (rc != SQLITE_ROW) {
      return std::unexpected(query.error());
    }
    auto row = decode(query, read);
    if (!row) {
      return std::unexpected(row.error());
    }
    rows.push_back(std::move(*row));
  }
}

int64_t sql_limit(size_t limit) {
  return static_cast<int64_t>(std::min<size_t>(limit, std::numeric_limits<int64_t>::max()));
}

class SqliteStore final : public Store {
 public:
  SqliteStore(sqlite3* db, int version) : db_(db), version_(version) {}
  ~SqliteStore() override {
    for (auto& [sql, stmt] : statements_) {
      sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db_);
  }
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  int schema_version() const override { return version_; }

  Result<CommitResult> commit(const WriteBatch& batch) override { return std::move(commit_group({batch}).front()); }

  std::vector<Result<CommitResult>> commit_group(const std::vector<WriteBatch>& batches) override {
    std::vector<Result<CommitResult>> results;
    uint64_t newest = 0;
    {
      std::lock_guard lock(mu_);
      const auto started = std::chrono::steady_clock::now();
      Status done = commit_group_locked(batches, results);
      if (!done && sqlite3_get_autocommit(db_) == 0) {  // some errors roll back by themselves
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      }
      report_commit(std::chrono::steady_clock::now() - started, done.has_value());
      if (!done) {
        results.assign(batches.size(), std::unexpected(done.error()));
        return results;
      }
      for (const auto& r : results) {
        if (r && !r->event_seqs.empty()) {
          newest = r->event_seqs.back();
        }
      }
    }
    if (newest != 0) {
      notify(newest);
    }
    return results;
  }

  Result<std::optional<ApplicationRecord>> get_application(const std::string& name) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " APPLICATION_COLUMNS " FROM applications WHERE name = ?").bind(name), read_application);
  }

  Result<std::vector<ApplicationRecord>> list_applications() override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " APPLICATION_COLUMNS " FROM applications ORDER BY name").bind(), read_application);
  }

  Result<std::optional<RevisionRecord>> get_revision(const std::string& app, int64_t number) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " REVISION_COLUMNS " FROM revisions WHERE app = ? AND number = ?").bind(app, number),
               read_revision);
  }

  Result<std::vector<RevisionRecord>> list_revisions(const std::string& app) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " REVISION_COLUMNS " FROM revisions WHERE app = ? ORDER BY number DESC").bind(app),
               read_revision);
  }

  Result<std::vector<OperationalValueRecord>> list_operational_values(const std::string& app) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " VALUE_COLUMNS " FROM operational_values WHERE app = ? ORDER BY path, setting").bind(app),
               read_value);
  }

  Result<std::vector<OperationalValueRecord>> list_expiring_values(TimePoint t) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " VALUE_COLUMNS " FROM operational_values"
                     " WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, app, path, setting")
                   .bind(t),
               read_value);
  }

  Result<std::vector<ClusterScaleRecord>> list_cluster_scales(const std::string& app) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " SCALE_COLUMNS " FROM cluster_scales WHERE app = ? ORDER BY cluster").bind(app),
               read_scale);
  }

  Result<std::optional<RolloutRecord>> latest_rollout(const std::string& app) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE app = ? ORDER BY id DESC LIMIT 1").bind(app),
               read_rollout);
  }

  Result<std::optional<MigrationLockRecord>> get_migration_lock(const std::string& app) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " LOCK_COLUMNS " FROM migration_locks WHERE app = ?").bind(app), read_lock);
  }

  Result<std::vector<MigrationLockRecord>> list_migration_locks() override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " LOCK_COLUMNS " FROM migration_locks ORDER BY app").bind(), read_lock);
  }

  Result<std::optional<ArtifactRecord>> get_artifact(const std::string& name, const std::string& version) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE name = ? AND version = ?").bind(name, version),
               read_artifact);
  }

  Result<std::vector<ArtifactRecord>> list_artifacts(const std::optional<std::string>& name) override {
    std::lock_guard lock(mu_);
    if (name) {
      return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE name = ? ORDER BY version").bind(*name),
                 read_artifact);
    }
    return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts ORDER BY name, version").bind(), read_artifact);
  }

  Result<std::vector<ArtifactRecord>> artifacts_with_digest(const std::string& sha256) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE sha256 = ? ORDER BY name, version").bind(sha256),
               read_artifact);
  }

  Result<std::optional<AgentUpgradeRecord>> latest_agent_upgrade() override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " UPGRADE_COLUMNS " FROM agent_upgrades ORDER BY id DESC LIMIT 1").bind(), read_upgrade);
  }

  Result<std::optional<MemberRecord>> get_member(const std::string& app, const std::string& id) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " MEMBER_COLUMNS " FROM members WHERE app = ? AND id = ?").bind(app, id), read_member);
  }

  Result<std::vector<MemberRecord>> list_members(const MemberQuery& filter) override {
    // One cached statement per combination of filters, so that the
    // (app, cluster) index is usable.
    std::string sql = "SELECT " MEMBER_COLUMNS " FROM members WHERE 1 = 1";
    std::vector<std::string_view> values;
    for (const auto& [column, value] :
         {std::pair{" AND app = ?", &filter.app}, std::pair{" AND cluster = ?", &filter.cluster},
          std::pair{" AND state = ?", &filter.state}}) {
      if (*value) {
        sql += column;
        values.push_back(**value);
      }
    }
    sql += " ORDER BY app, cluster, ordinal, id";
    std::lock_guard lock(mu_);
    auto q = query(sql);
    for (std::string_view value : values) {
      q.bind(value);
    }
    return all(q, read_member);
  }

  Result<std::optional<HostRecord>> get_host(const std::string& id) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " HOST_COLUMNS " FROM hosts WHERE id = ?").bind(id), read_host);
  }

  Result<std::vector<HostRecord>> list_hosts() override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " HOST_COLUMNS " FROM hosts ORDER BY id").bind(), read_host);
  }

  Result<std::optional<OperationRecord>> get_operation(const std::string& id) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " OPERATION_COLUMNS " FROM operations WHERE id = ?").bind(id), read_operation);
  }

  Result<std::vector<OperationRecord>> list_operations(const std::string& app, const std::string& status) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " OPERATION_COLUMNS " FROM operations WHERE app = ? AND status = ? ORDER BY seq")
                   .bind(app, status),
               read_operation);
  }

  Result<std::optional<TokenRecord>> get_token(const std::string& id) override {
    std::lock_guard lock(mu_);
    return one(query("SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = ?").bind(id), read_token);
  }

  Result<bool> has_admin_token() override {
    std::lock_guard lock(mu_);
    auto found =
        one(query("SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'admin' AND app IS NULL)").bind(), read_i64);
    if (!found) {
      return std::unexpected(found.error());
    }
    return found->value_or(0) != 0;
  }

  Result<std::vector<AuditRecord>> list_audit(size_t limit) override {
    std::lock_guard lock(mu_);
    return all(query("SELECT " AUDIT_COLUMNS " FROM (SELECT " AUDIT_COLUMNS
                     " FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id")
                   .bind(sql_limit(limit)),
               read_audit);
  }

  Result<std::vector<EventRecord>> list_events(const EventQuery& filter) override {
    const auto after = static_cast<int64_t>(std::min<uint64_t>(filter.after_seq, std::numeric_limits<int64_t>::max()));
    std::lock_guard lock(mu_);
    // Newest first walks the primary key, or the (app, seq) index, backwards.
    if (filter.app) {
      return all(query(filter.newest_first
                           ? "SELECT " EVENT_COLUMNS " FROM events WHERE app = ? AND seq > ? ORDER BY seq DESC LIMIT ?"
                           : "SELECT " EVENT_COLUMNS " FROM events WHERE app = ? AND seq > ? ORDER BY seq LIMIT ?")
                     .bind(*filter.app, after, sql_limit(filter.limit)),
                 read_event);
    }
    return all(query(filter.newest_first ? "SELECT " EVENT_COLUMNS " FROM events WHERE seq > ? ORDER BY seq DESC LIMIT ?"
                                         : "SELECT " EVENT_COLUMNS " FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
                   .bind(after, sql_limit(filter.limit)),
               read_event);
  }

  Result<uint64_t> last_event_seq() override {
    std::lock_guard lock(mu_);
    return read_last_event_seq();
  }

  uint64_t watch(WatchCallback callback) override {
    std::lock_guard lock(watch_mu_);
    const uint64_t id = next_watch_id_++;
    watchers_.emplace(id, std::move(callback));
    return id;
  }

  void unwatch(uint64_t id) override {
    // Waits for a notification in progress on another thread, so the
    // callback is not running once this returns.
    std::lock_guard lock(watch_mu_);
    watchers_.erase(id);
  }

 private:
  // Seqs handed out so far in the batch being committed.
  struct EventCounter {
    bool loaded = false;
    uint64_t last = 0;
  };

  // The cached statement for `sql`, prepared on first use. mu_ held.
  Query query(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
      sqlite3_stmt* stmt = nullptr;
      const int rc =
          sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        return Query(db_, nullptr, rc, sqlite3_errmsg(db_));
      }
      it = statements_.emplace(std::string(sql), stmt).first;
    }
    return Query(db_, it->second);
  }

  Result<uint64_t> read_last_event_seq() {
    auto seq = one(query("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_event_seq'").bind(), read_i64);
    if (!seq) {
      return std::unexpected(seq.error());
    }
    return static_cast<uint64_t>(seq->value_or(0));
  }

  // One transaction for the group; each batch under a savepoint, so that a
  // conflict rolls back that batch alone (and gives its seqs back).
  Status commit_group_locked(const std::vector<WriteBatch>& batches, std::vector<Result<CommitResult>>& results) {
    if (auto begun = query("BEGIN IMMEDIATE").run(); !begun) {
      return begun;
    }
    EventCounter events;
    for (const WriteBatch& batch : batches) {
      if (auto saved = query("SAVEPOINT batch").run(); !saved) {
        return saved;
      }
      const EventCounter before = events;
      CommitResult result;
      Status applied = apply_batch(batch, events, result);
      if (!applied && applied.error().code != ErrorCode::kConflict) {
        return applied;
      }
      if (!applied) {
        events = before;
        if (auto undone = query("ROLLBACK TO batch").run(); !undone) {
          return undone;
        }
        results.emplace_back(std::unexpected(applied.error()));
      } else {
        results.emplace_back(std::move(result));
      }
      if (auto released = query("RELEASE batch").run(); !released) {
        return released;
      }
    }
    if (events.loaded) {
      auto saved = query("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_event_seq', ?)")
                       .bind(static_cast<int64_t>(events.last))
                       .run();
      if (!saved) {
        return saved;
      }
    }
    return query("COMMIT").run();
  }

  Status apply_batch(const WriteBatch& batch, EventCounter& events, CommitResult& result) {
    for (const ExpectApplicationVersion& expect : batch.preconditions) {
      auto found = one(query("SELECT version FROM applications WHERE name = ?").bind(expect.app), read_i64);
      if (!found) {
        return std::unexpected(found.error());
      }
      const int64_t actual = found->value_or(0);
      if (actual != expect.version) {
        return fail(ErrorCode::kConflict, "application " + expect.app + " is at version " + std::to_string(actual) +
                                              (*found ? "" : " (does not exist)") + ", expected version " +
                                              std::to_string(expect.version) +
                                              (expect.version == 0 ? " (must not exist)" : ""));
      }
    }
    for (const Mutation& mutation : batch.mutations) {
      auto applied = std::visit([&](const auto& m) { return apply(m, events, result); }, mutation);
      if (!applied) {
        return applied;
      }
    }
    return {};
  }

  Status apply(const PutApplication& m, EventCounter&, CommitResult&) {
    const ApplicationRecord& a = m.record;
    return query("INSERT INTO applications (" APPLICATION_COLUMNS
                 ") VALUES (?, ?, ?, 1, ?, ?, ?)"
                 " ON CONFLICT (name) DO UPDATE SET current_revision = excluded.current_revision,"
                 " deployed = excluded.deployed, version = applications.version + 1,"
                 " operation_seq = excluded.operation_seq, created_at = excluded.created_at,"
                 " updated_at = excluded.updated_at")
        .bind(a.name, a.current_revision, int64_t{a.deployed}, a.operation_seq, a.created_at, a.updated_at)
        .run();
  }

  Status apply(const PutRevision& m, EventCounter&, CommitResult&) {
    const RevisionRecord& r = m.record;
    return query("INSERT OR REPLACE INTO revisions (" REVISION_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
        .bind(r.app, r.number, r.manifest_json, r.author, r.summary, r.created_at)
        .run();
  }

  Status apply(const DeleteRevision& m, EventCounter&, CommitResult&) {
    return query("DELETE FROM revisions WHERE app = ? AND number = ?").bind(m.app, m.number).run();
  }

  Status apply(const PutOperationalValue& m, EventCounter&, CommitResult&) {
    const OperationalValueRecord& v = m.record;
    return query("INSERT OR REPLACE INTO operational_values (" VALUE_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(v.app, v.path, to_string(v.setting), v.value, v.expires_at, v.previous_value, v.set_by, v.set_at,
              int64_t{v.all_at_once})
        .run();
  }

  Status apply(const DeleteOperationalValue& m, EventCounter&, CommitResult&) {
    if (m.set_no_later_than) {
      return query("DELETE FROM operational_values WHERE app = ? AND path = ? AND setting = ? AND set_at <= ?")
          .bind(m.app, m.path, to_string(m.setting), *m.set_no_later_than)
          .run();
    }
    return query("DELETE FROM operational_values WHERE app = ? AND path = ? AND setting = ?")
        .bind(m.app, m.path, to_string(m.setting))
        .run();
  }

  Status apply(const PutClusterScale& m, EventCounter&, CommitResult&) {
    const ClusterScaleRecord& c = m.record;
    return query("INSERT OR REPLACE INTO cluster_scales (" SCALE_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
        .bind(c.app, c.cluster, c.desired, c.base_desired, c.reason, c.decided_at)
        .run();
  }

  Status apply(const DeleteClusterScale& m, EventCounter&, CommitResult&) {
    return query("DELETE FROM cluster_scales WHERE app = ? AND cluster = ?").bind(m.app, m.cluster).run();
  }

  Status apply(const PutRollout& m, EventCounter&, CommitResult&) {
    const RolloutRecord& r = m.record;
    auto found = one(query("SELECT version FROM rollouts WHERE app = ? AND id = ?").bind(r.app, r.id), read_i64);
    if (!found) {
      return std::unexpected(found.error());
    }
    if (found->value_or(0) != r.version) {
      return fail(ErrorCode::kConflict, "rollout " + std::to_string(r.id) + " of " + r.app + " is at version " +
                                            std::to_string(found->value_or(0)) + ", expected version " +
                                            std::to_string(r.version));
    }
    return query("INSERT OR REPLACE INTO rollouts (" ROLLOUT_COLUMNS
                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(r.app, r.id, r.from_revision, r.to_revision, r.target_revision, r.phase, r.reason, int64_t{r.promoted},
              r.progress_json, r.author, r.created_at, r.updated_at, r.finished_at, r.version + 1)
        .run();
  }

  // Compare-and-swap on a lock's version, as etcd's Txn compares a key's
  // mod revision.
  Status expect_lock_version(const std::string& app, int64_t version) {
    auto found = one(query("SELECT version FROM migration_locks WHERE app = ?").bind(app), read_i64);
    if (!found) {
      return std::unexpected(found.error());
    }
    if (found->value_or(0) != version) {
      return fail(ErrorCode::kConflict, "the migration lock of " + (app.empty() ? std::string("the platform") : app) +
                                            " is at version " + std::to_string(found->value_or(0)) +
                                            ", expected version " + std::to_string(version));
    }
    return {};
  }

  Status apply(const PutMigrationLock& m, EventCounter&, CommitResult&) {
    const MigrationLockRecord& l = m.record;
    if (auto expected = expect_lock_version(l.app, l.version); !expected) {
      return expected;
    }
    return query("INSERT OR REPLACE INTO migration_locks (" LOCK_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
        .bind(l.app, l.locked_by, l.locked_at, l.detail_json, l.updated_at, l.version + 1)
        .run();
  }

  Status apply(const DeleteMigrationLock& m, EventCounter&, CommitResult&) {
    if (auto expected = expect_lock_version(m.app, m.version); !expected) {
      return expected;
    }
    return query("DELETE FROM migration_locks WHERE app = ?").bind(m.app).run();
  }

  Status apply(const PutArtifact& m, EventCounter&, CommitResult&) {
    const ArtifactRecord& a = m.record;
    auto found =
        one(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE name = ? AND version = ?").bind(a.name, a.version),
            read_artifact);
    if (!found) {
      return std::unexpected(found.error());
    }
    if (*found) {
      if ((*found)->sha256 == a.sha256) {
        return {};
      }
      return fail(ErrorCode::kConflict, "artifact " + a.name + " " + a.version + " is already sha256 " +
                                            (*found)->sha256 + ", not " + a.sha256);
    }
    return query("INSERT INTO artifacts (" ARTIFACT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
        .bind(a.name, a.version, a.sha256, a.size, a.uploaded_by, a.uploaded_at)
        .run();
  }

  Status apply(const DeleteArtifact& m, EventCounter&, CommitResult&) {
    return query("DELETE FROM artifacts WHERE name = ? AND version = ?").bind(m.name, m.version).run();
  }

  Status apply(const PutAgentUpgrade& m, EventCounter&, CommitResult&) {
    const AgentUpgradeRecord& u = m.record;
    auto found = one(query("SELECT version FROM agent_upgrades WHERE id = ?").bind(u.id), read_i64);
    if (!found) {
      return std::unexpected(found.error());
    }
    if (found->value_or(0) != u.version) {
      return fail(ErrorCode::kConflict, "agent upgrade " + std::to_string(u.id) + " is at version " +
                                            std::to_string(found->value_or(0)) + ", expected version " +
                                            std::to_string(u.version));
    }
    return query("INSERT OR REPLACE INTO agent_upgrades (" UPGRADE_COLUMNS
                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(u.id, u.agent_version, u.artifact_sha256, u.artifact_size, u.max_unavailable, u.selector,
              u.fallback_seconds, u.state, u.reason, u.progress_json, u.author, u.created_at, u.updated_at,
              u.finished_at, u.version + 1)
        .run();
  }

  // An update, and an insert only when the member has no row yet: most
  // puts change a member that exists (its state, a pid), and an update finds
  // the row once where an upsert's insert looks for it, conflicts and then
  // updates (10,000 members in 32 ms against 38-50 ms, sqlite3 from Python
  // on this schema; a pass may change 100,000). Not INSERT OR REPLACE, which
  // deletes the row and its entries in both indexes and inserts them again.
  // The id names the member's app and cluster for good
  // ("app/cluster/ordinal"), so the indexed columns are never set (setting
  // one, even to its value, rewrites its index entry).
  Status apply(const PutMember& m, EventCounter&, CommitResult&) {
    const MemberRecord& r = m.record;
    const std::string ports = nlohmann::json(r.ports).dump();
    auto updated = query("UPDATE members SET ordinal = ?, host = ?, state = ?, revision = ?, version = ?, pid = ?,"
                         " ports_json = ?, healing_delayed_since = ?, created_at = ?, updated_at = ?"
                         " WHERE app = ? AND id = ?")
                       .bind(r.ordinal, r.host, r.state, r.revision, r.version, r.pid, ports, r.healing_delayed_since,
                             r.created_at, r.updated_at, r.app, r.id)
                       .run();
    if (!updated || sqlite3_changes(db_) > 0) {
      return updated;
    }
    return query("INSERT INTO members (" MEMBER_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(r.id, r.app, r.cluster, r.ordinal, r.host, r.state, r.revision, r.version, r.pid, ports,
              r.healing_delayed_since, r.created_at, r.updated_at)
        .run();
  }

  Status apply(const PutHost& m, EventCounter&, CommitResult&) {
    const HostRecord& h = m.record;
    return query("INSERT OR REPLACE INTO hosts (" HOST_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(h.id, h.hostname, h.state, nlohmann::json(h.labels).dump(), h.slots, h.token_hash, h.registered_at,
              h.updated_at)
        .run();
  }

  Status apply(const PutOperation& m, EventCounter&, CommitResult&) {
    const OperationRecord& o = m.record;
    return query("INSERT OR REPLACE INTO operations (" OPERATION_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(o.id, o.app, o.seq, o.kind, o.request_json, o.status, o.message, o.actor, o.created_at, o.updated_at)
        .run();
  }

  Status apply(const PutToken& m, EventCounter&, CommitResult&) {
    const TokenRecord& t = m.record;
    return query("INSERT OR REPLACE INTO tokens (" TOKEN_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
        .bind(t.id, t.name, t.secret_hash, to_string(t.role), t.app, t.created_at)
        .run();
  }

  Status apply(const AppendAudit& m, EventCounter&, CommitResult&) {
    const AuditRecord& a = m.record;
    return query("INSERT INTO audit (time, actor, action, target, result) VALUES (?, ?, ?, ?, ?)")
        .bind(a.time, a.actor, a.action, a.target, a.result)
        .run();
  }

  Status apply(const AppendEvent& m, EventCounter& events, CommitResult& result) {
    if (!events.loaded) {
      auto last = read_last_event_seq();
      if (!last) {
        return std::unexpected(last.error());
      }
      events = {true, *last};
    }
    const EventRecord& e = m.record;
    const uint64_t seq = events.last + 1;
    auto inserted =
        query("INSERT INTO events (" EVENT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(static_cast<int64_t>(seq), e.time, e.app, e.path, e.member, e.type, e.from_json, e.to_json, e.message)
            .run();
    if (inserted) {
      events.last = seq;
      result.event_seqs.push_back(seq);
    }
    return inserted;
  }

  // Tells every watcher the newest seq, outside mu_ so callbacks may read.
  // Serialized, so each callback sees non-decreasing values even when
  // committers finish out of order.
  void notify(uint64_t seq) {
    std::lock_guard lock(watch_mu_);
    notified_seq_ = std::max(notified_seq_, seq);
    const uint64_t newest = notified_seq_;
    std::vector<uint64_t> ids;
    ids.reserve(watchers_.size());
    for (const auto& [id, callback] : watchers_) {
      ids.push_back(id);
    }
    for (uint64_t id : ids) {
      auto it = watchers_.find(id);  // a callback may have unwatched another
      if (it != watchers_.end()) {
        WatchCallback callback = it->second;  // survives unwatch() from inside itself
        callback(newest);
      }
    }
  }

  std::mutex mu_;  // the connection and the statement cache
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
  const int version_;

  // Recursive: a callback may call watch()/unwatch() on its own thread.
  std::recursive_mutex watch_mu_;
  std::map<uint64_t, WatchCallback> watchers_;
  uint64_t next_watch_id_ = 1;
  uint64_t notified_seq_ = 0;
};

Status exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail(ErrorCode::kUnavailable, std::string("store: ") + sqlite3_errmsg(db));
  }
  return {};
}

// PRAGMA quick_check before anything else: a damaged database is refused
// here rather than served with reads that fail later (every reconcile pass).
// O(size of the database), read-only; it does not check indexes against
// their tables (integrity_check does, slower).
Status check_integrity(sqlite3* db, const std::string& path) {
  sqlite3_stmt* raw = nullptr;
  std::vector<std::string> problems;
  int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(stmt.get());
    if (rc == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 0));
      problems.emplace_back(text != nullptr ? text : "");
    }
  }
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    return fail(ErrorCode::kUnavailable, "cannot check " + path + ": " + sqlite3_errmsg(db));
  }
  if (rc != SQLITE_DONE) {
    problems.assign(1, sqlite3_errmsg(db));
  } else if (problems.size() == 1 && problems.front() == "ok") {
    return {};
  }
  std::string found;
  for (const auto& p : problems) {
    found += (found.empty() ? "" : "; ") + p;
  }
  return fail(ErrorCode::kUnavailable,
              path + " is damaged (PRAGMA quick_check: " + found + "); restore it from a backup");
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteStoreOptions& options) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(options.path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close_v2);
  if (rc != SQLITE_OK) {
    return fail(ErrorCode::kUnavailable, "cannot open store " + options.path + ": " +
                                             (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  if (auto intact = check_integrity(db.get(), options.path); !intact) {
    return std::unexpected(intact.error());
  }
  // Connection settings only: nothing is written before the schema version
  // is known, so a store newer than this binary is left untouched.
  if (auto set = exec(db.get(), "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL"); !set) {
    return std::unexpected(set.error());
  }
  auto version = schema::migrate(db.get(), schema::current_version());
  if (!version) {
    Error error = version.error();
    error.message = options.path + ": " + error.message;
    return std::unexpected(std::move(error));
  }
  // Persistent; a no-op when already WAL ("memory" for ":memory:").
  if (auto set = exec(db.get(), "PRAGMA journal_mode = WAL"); !set) {
    return std::unexpected(set.error());
  }
  return std::make_unique<SqliteStore>(db.release(), *version);
}

}  // namespace tranche
