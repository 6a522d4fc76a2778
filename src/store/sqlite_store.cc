// The embedded Store backend: one SQLite connection behind a mutex, WAL
// journal (checkpointed by a connection of its own: wal_checkpointer.h),
// synchronous=FULL, cached prepared statements, times as INTEGER Unix
// milliseconds and maps as JSON text. Here its reads, its watchers and the
// opening of a database; a commit's writes are in sqlite_writes.cc. See
// README.md.

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/schema.h"
#include "store/sqlite_store.h"
#include "store/store.h"

namespace tranche::sqlite {
namespace {

int64_t sql_limit(size_t limit) {
  return static_cast<int64_t>(std::min<size_t>(limit, std::numeric_limits<int64_t>::max()));
}

}  // namespace

SqliteStore::~SqliteStore() {
  checkpointer_.reset();
  for (auto& [sql, stmt] : statements_) {
    sqlite3_finalize(stmt);
  }
  sqlite3_close_v2(db_);
}

Result<std::optional<ApplicationRecord>> SqliteStore::get_application(const std::string& name) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " APPLICATION_COLUMNS " FROM applications WHERE name = ?").bind(name), read_application);
}

Result<std::vector<ApplicationRecord>> SqliteStore::list_applications() {
  std::lock_guard lock(mu_);
  return all(query("SELECT " APPLICATION_COLUMNS " FROM applications ORDER BY name").bind(), read_application);
}

Result<std::optional<RevisionRecord>> SqliteStore::get_revision(const std::string& app, int64_t number) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " REVISION_COLUMNS " FROM revisions WHERE app = ? AND number = ?").bind(app, number),
             read_revision);
}

Result<std::vector<RevisionRecord>> SqliteStore::list_revisions(const std::string& app) {
  std::lock_guard lock(mu_);
  return all(query("SELECT " REVISION_COLUMNS " FROM revisions WHERE app = ? ORDER BY number DESC").bind(app),
             read_revision);
}

Result<std::vector<OperationalValueRecord>> SqliteStore::list_operational_values(const std::string& app) {
  std::lock_guard lock(mu_);
  return all(query("SELECT " VALUE_COLUMNS " FROM operational_values WHERE app = ? ORDER BY path, setting").bind(app),
             read_value);
}

Result<std::vector<OperationalValueRecord>> SqliteStore::list_expiring_values(TimePoint t) {
  std::lock_guard lock(mu_);
  return all(query("SELECT " VALUE_COLUMNS " FROM operational_values"
                   " WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, app, path, setting")
                 .bind(t),
             read_value);
}

Result<std::vector<ClusterScaleRecord>> SqliteStore::list_cluster_scales(const std::string& app) {
  std::lock_guard lock(mu_);
  return all(query("SELECT " SCALE_COLUMNS " FROM cluster_scales WHERE app = ? ORDER BY cluster").bind(app),
             read_scale);
}

Result<std::optional<RolloutRecord>> SqliteStore::latest_rollout(const std::string& app) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE app = ? ORDER BY id DESC LIMIT 1").bind(app),
             read_rollout);
}

Result<std::optional<MigrationLockRecord>> SqliteStore::get_migration_lock(const std::string& app) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " LOCK_COLUMNS " FROM migration_locks WHERE app = ?").bind(app), read_lock);
}

Result<std::vector<MigrationLockRecord>> SqliteStore::list_migration_locks() {
  std::lock_guard lock(mu_);
  return all(query("SELECT " LOCK_COLUMNS " FROM migration_locks ORDER BY app").bind(), read_lock);
}

Result<std::optional<ArtifactRecord>> SqliteStore::get_artifact(const std::string& name, const std::string& version) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE name = ? AND version = ?").bind(name, version),
             read_artifact);
}

Result<std::vector<ArtifactRecord>> SqliteStore::list_artifacts(const std::optional<std::string>& name) {
  std::lock_guard lock(mu_);
  if (name) {
    return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE name = ? ORDER BY version").bind(*name),
               read_artifact);
  }
  return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts ORDER BY name, version").bind(), read_artifact);
}

Result<std::vector<ArtifactRecord>> SqliteStore::artifacts_with_digest(const std::string& sha256) {
  std::lock_guard lock(mu_);
  return all(query("SELECT " ARTIFACT_COLUMNS " FROM artifacts WHERE sha256 = ? ORDER BY name, version").bind(sha256),
             read_artifact);
}

Result<std::optional<AgentUpgradeRecord>> SqliteStore::latest_agent_upgrade() {
  std::lock_guard lock(mu_);
  return one(query("SELECT " UPGRADE_COLUMNS " FROM agent_upgrades ORDER BY id DESC LIMIT 1").bind(), read_upgrade);
}

Result<std::optional<MemberRecord>> SqliteStore::get_member(const std::string& app, const std::string& id) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " MEMBER_COLUMNS " FROM members WHERE app = ? AND id = ?").bind(app, id), read_member);
}

Result<std::vector<MemberRecord>> SqliteStore::list_members(const MemberQuery& filter) {
  // One cached statement per combination of filters, so that the
  // (app, cluster) index is usable.
  std::string where = " FROM members WHERE 1 = 1";
  std::vector<std::string_view> values;
  for (const auto& [column, value] :
       {std::pair{" AND app = ?", &filter.app}, std::pair{" AND cluster = ?", &filter.cluster},
        std::pair{" AND state = ?", &filter.state}}) {
    if (*value) {
      where += column;
      values.push_back(**value);
    }
  }
  std::lock_guard lock(mu_);
  // Counted first: 100,000 records read into a vector that grew by doubling
  // were a third of a restarted controller's load (moves, fresh pages).
  auto count = query("SELECT count(*)" + where);
  auto q = query("SELECT " MEMBER_COLUMNS + where + " ORDER BY app, cluster, ordinal, id");
  for (std::string_view value : values) {
    count.bind(value);
    q.bind(value);
  }
  if (count.step() != SQLITE_ROW) {
    return std::unexpected(count.error());
  }
  return all(q, read_member, static_cast<size_t>(count.i64(0)));
}

Result<std::optional<HostRecord>> SqliteStore::get_host(const std::string& id) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " HOST_COLUMNS " FROM hosts WHERE id = ?").bind(id), read_host);
}

Result<std::vector<HostRecord>> SqliteStore::list_hosts() {
  std::lock_guard lock(mu_);
  return all(query("SELECT " HOST_COLUMNS " FROM hosts ORDER BY id").bind(), read_host);
}

Result<std::optional<OperationRecord>> SqliteStore::get_operation(const std::string& id) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " OPERATION_COLUMNS " FROM operations WHERE id = ?").bind(id), read_operation);
}

Result<std::vector<OperationRecord>> SqliteStore::list_operations(const std::string& app, const std::string& status) {
  std::lock_guard lock(mu_);
  return all(
      query("SELECT " OPERATION_COLUMNS " FROM operations WHERE app = ? AND status = ? ORDER BY seq").bind(app, status),
      read_operation);
}

Result<std::optional<TokenRecord>> SqliteStore::get_token(const std::string& id) {
  std::lock_guard lock(mu_);
  return one(query("SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = ?").bind(id), read_token);
}

Result<bool> SqliteStore::has_admin_token() {
  std::lock_guard lock(mu_);
  auto found = one(query("SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'admin' AND app IS NULL)").bind(), read_i64);
  if (!found) {
    return std::unexpected(found.error());
  }
  return found->value_or(0) != 0;
}

Result<std::vector<AuditRecord>> SqliteStore::list_audit(size_t limit) {
  std::lock_guard lock(mu_);
  return all(
      query("SELECT " AUDIT_COLUMNS " FROM (SELECT " AUDIT_COLUMNS " FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id")
          .bind(sql_limit(limit)),
      read_audit);
}

Result<std::vector<EventRecord>> SqliteStore::list_events(const EventQuery& filter) {
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

Result<uint64_t> SqliteStore::last_event_seq() {
  std::lock_guard lock(mu_);
  return read_last_event_seq();
}

uint64_t SqliteStore::watch(WatchCallback callback) {
  std::lock_guard lock(watch_mu_);
  const uint64_t id = next_watch_id_++;
  watchers_.emplace(id, std::move(callback));
  return id;
}

void SqliteStore::unwatch(uint64_t id) {
  // Waits for a notification in progress on another thread, so the
  // callback is not running once this returns.
  std::lock_guard lock(watch_mu_);
  watchers_.erase(id);
}

Query SqliteStore::query(std::string_view sql) {
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

Result<uint64_t> SqliteStore::read_last_event_seq() {
  auto seq = one(query("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_event_seq'").bind(), read_i64);
  if (!seq) {
    return std::unexpected(seq.error());
  }
  return static_cast<uint64_t>(seq->value_or(0));
}

void SqliteStore::notify(uint64_t seq) {
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

}  // namespace tranche::sqlite

namespace tranche {
namespace {

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
  if (auto set = sqlite::exec(db.get(), "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL", "store"); !set) {
    return std::unexpected(set.error());
  }
  auto version = schema::migrate(db.get(), schema::current_version());
  if (!version) {
    Error error = version.error();
    error.message = options.path + ": " + error.message;
    return std::unexpected(std::move(error));
  }
  // Persistent; a no-op when already WAL ("memory" for ":memory:").
  if (auto set = sqlite::exec(db.get(), "PRAGMA journal_mode = WAL", "store"); !set) {
    return std::unexpected(set.error());
  }
  // A file's log is checkpointed off the commit path (wal_checkpointer.h);
  // "" names a database in memory.
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer;
  if (const char* file = sqlite3_db_filename(db.get(), "main"); file != nullptr && *file != '\0') {
    auto attached = sqlite::WalCheckpointer::attach(db.get(), file);
    if (!attached) {
      return std::unexpected(attached.error());
    }
    checkpointer = std::move(*attached);
  }
  return std::make_unique<sqlite::SqliteStore>(db.release(), *version, std::move(checkpointer));
}

}  // namespace tranche
