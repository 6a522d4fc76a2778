#pragma once
// Internal to the SQLite backend (sqlite_store.cc, sqlite_writes.cc,
// schema.cc, wal_checkpointer.cc): SQL without results run at once, a
// cached statement in use, and the tables' rows read back as records. See
// README.md, "SQLite backend".

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/time_format.h"
#include "store/store.h"

namespace tranche::sqlite {

// Runs `sql`, statements without results (PRAGMAs, DDL, BEGIN/COMMIT); a
// failure is kUnavailable, `context` then SQLite's message.
inline Status exec(sqlite3* db, const char* sql, std::string_view context) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    return fail(ErrorCode::kUnavailable, std::string(context) + ": " + text);
  }
  return {};
}

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
#define UPGRADE_COLUMNS                                                                                             \
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

inline int64_t read_i64(Row r) { return r.i64(); }
inline ApplicationRecord read_application(Row r) {
  return {r.text(), r.i64(), r.i64() != 0, r.i64(), r.i64(), r.time(), r.time()};
}
inline RevisionRecord read_revision(Row r) { return {r.text(), r.i64(), r.text(), r.text(), r.text(), r.time()}; }
inline OperationalValueRecord read_value(Row r) {
  return {r.text(), r.text(), r.setting(), r.text(), r.opt_time(), r.opt_text(), r.text(), r.time(), r.i64() != 0};
}
inline ClusterScaleRecord read_scale(Row r) { return {r.text(), r.text(), r.i64(), r.i64(), r.text(), r.time()}; }
inline RolloutRecord read_rollout(Row r) {
  return {r.text(),     r.i64(),  r.i64(),  r.i64(),  r.i64(),  r.text(),     r.text(),
          r.i64() != 0, r.text(), r.text(), r.time(), r.time(), r.opt_time(), r.i64()};
}
inline MigrationLockRecord read_lock(Row r) { return {r.text(), r.text(), r.time(), r.text(), r.time(), r.i64()}; }
inline ArtifactRecord read_artifact(Row r) { return {r.text(), r.text(), r.text(), r.i64(), r.text(), r.time()}; }
inline AgentUpgradeRecord read_upgrade(Row r) {
  return {r.i64(),  r.text(), r.text(), r.i64(),  r.i64(),  r.text(),     r.i64(), r.text(),
          r.text(), r.text(), r.text(), r.time(), r.time(), r.opt_time(), r.i64()};
}
inline MemberRecord read_member(Row r) {
  return {r.text(),     r.text(), r.text(), r.i64(),     r.text(),
          r.text(),     r.i64(),  r.text(), r.opt_i64(), r.json<std::map<std::string, int>>(),
          r.opt_time(), r.time(), r.time()};
}
inline HostRecord read_host(Row r) {
  return {r.text(), r.text(), r.text(), r.json<std::map<std::string, std::string>>(),
          r.i64(),  r.text(), r.time(), r.time()};
}
inline OperationRecord read_operation(Row r) {
  return {r.text(), r.text(), r.i64(), r.text(), r.text(), r.text(), r.text(), r.text(), r.time(), r.time()};
}
inline TokenRecord read_token(Row r) { return {r.text(), r.text(), r.text(), r.role(), r.opt_text(), r.time()}; }
inline AuditRecord read_audit(Row r) { return {r.i64(), r.time(), r.text(), r.text(), r.text(), r.text()}; }
inline EventRecord read_event(Row r) {
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

// `expected_rows`: room made at once, when the caller knows about how many.
template <class T>
Result<std::vector<T>> all(Query& query, T (*read)(Row), size_t expected_rows = 0) {
  std::vector<T> rows;
  rows.reserve(expected_rows);
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

}  // namespace tranche::sqlite
