// Schema versions of the SQLite store and the steps between them.
//
// A step turns version N into N+1 and is never edited once released: a
// database written by that release is exactly what the step must accept.
// tests/fixtures/store-vN.sql freezes each old version; migration_test.cc
// checks that the steps still produce it and migrate it forward.

#include "store/schema.h"

#include <iterator>
#include <string>
#include <utility>

#include "store/sqlite_statements.h"
#include "store/store.h"

namespace tranche::schema {
namespace {

Status exec(sqlite3* db, const char* sql) { return sqlite::exec(db, sql, "store migration"); }

// Version 1: the first release.
Status step_0_to_1(sqlite3* db) {
  return exec(db, R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE applications (
  name TEXT PRIMARY KEY,
  current_revision INTEGER NOT NULL,
  deployed INTEGER NOT NULL,
  version INTEGER NOT NULL,
  operation_seq INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE revisions (
  app TEXT NOT NULL,
  number INTEGER NOT NULL,
  manifest_json TEXT NOT NULL,
  author TEXT NOT NULL,
  summary TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (app, number)
);
CREATE TABLE operational_values (
  app TEXT NOT NULL,
  path TEXT NOT NULL,
  setting TEXT NOT NULL,
  value TEXT NOT NULL,
  set_by TEXT NOT NULL,
  set_at INTEGER NOT NULL,
  PRIMARY KEY (app, path, setting)
);
CREATE TABLE members (
  app TEXT NOT NULL,
  id TEXT NOT NULL,
  cluster TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  host TEXT NOT NULL,
  state TEXT NOT NULL,
  revision INTEGER NOT NULL,
  version TEXT NOT NULL,
  pid INTEGER,
  ports_json TEXT NOT NULL,
  healing_delayed_since INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (app, id)
);
CREATE TABLE hosts (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  state TEXT NOT NULL,
  labels_json TEXT NOT NULL,
  slots INTEGER NOT NULL,
  token_hash TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE operations (
  id TEXT PRIMARY KEY,
  app TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  request_json TEXT NOT NULL,
  status TEXT NOT NULL,
  message TEXT NOT NULL,
  actor TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  role TEXT NOT NULL,
  app TEXT,
  created_at INTEGER NOT NULL
);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  result TEXT NOT NULL
);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  app TEXT NOT NULL,
  path TEXT NOT NULL,
  member TEXT NOT NULL,
  type TEXT NOT NULL,
  from_json TEXT NOT NULL,
  to_json TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX events_app_seq ON events (app, seq);
INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('last_event_seq', '0');
)sql");
}

// Version 2: time-boxed operational values; members looked up by cluster.
Status step_1_to_2(sqlite3* db) {
  return exec(db, R"sql(
ALTER TABLE operational_values ADD COLUMN expires_at INTEGER;
ALTER TABLE operational_values ADD COLUMN previous_value TEXT;
CREATE INDEX operational_values_expires_at ON operational_values (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX members_app_cluster ON members (app, cluster);
)sql");
}

// Version 3: the autoscaler's decisions, one per cluster.
Status step_2_to_3(sqlite3* db) {
  return exec(db, R"sql(
CREATE TABLE cluster_scales (
  app TEXT NOT NULL,
  cluster TEXT NOT NULL,
  desired INTEGER NOT NULL,
  base_desired INTEGER NOT NULL,
  reason TEXT NOT NULL,
  decided_at INTEGER NOT NULL,
  PRIMARY KEY (app, cluster)
);
)sql");
}

// Version 4: rollouts, the newest of an application found by (app, id).
Status step_3_to_4(sqlite3* db) {
  return exec(db, R"sql(
CREATE TABLE rollouts (
  app TEXT NOT NULL,
  id INTEGER NOT NULL,
  from_revision INTEGER NOT NULL,
  to_revision INTEGER NOT NULL,
  target_revision INTEGER NOT NULL,
  phase TEXT NOT NULL,
  reason TEXT NOT NULL,
  promoted INTEGER NOT NULL,
  progress_json TEXT NOT NULL,
  author TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  version INTEGER NOT NULL,
  PRIMARY KEY (app, id)
);
)sql");
}

// Version 5: a maintenance value may ignore the cluster's maxUnavailable
// (--all-at-once); values written before it did not.
Status step_4_to_5(sqlite3* db) {
  return exec(db, R"sql(
ALTER TABLE operational_values ADD COLUMN all_at_once INTEGER NOT NULL DEFAULT 0;
)sql");
}

// Version 6: migration locks, one per application ('' for the platform).
Status step_5_to_6(sqlite3* db) {
  return exec(db, R"sql(
CREATE TABLE migration_locks (
  app TEXT PRIMARY KEY,
  locked_by TEXT NOT NULL,
  locked_at INTEGER NOT NULL,
  detail_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL
);
)sql");
}

// Version 7: the content-addressed artifact store's names, and agent
// upgrades (the agent binary rolled across hosts in batches).
Status step_6_to_7(sqlite3* db) {
  return exec(db, R"sql(
CREATE TABLE artifacts (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  uploaded_by TEXT NOT NULL,
  uploaded_at INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);
CREATE TABLE agent_upgrades (
  id INTEGER PRIMARY KEY,
  agent_version TEXT NOT NULL,
  artifact_sha256 TEXT NOT NULL,
  artifact_size INTEGER NOT NULL,
  max_unavailable INTEGER NOT NULL,
  selector TEXT NOT NULL,
  fallback_seconds INTEGER NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL,
  progress_json TEXT NOT NULL,
  author TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  version INTEGER NOT NULL
);
)sql");
}

// kSteps[n] turns version n into n + 1.
constexpr Status (*kSteps[])(sqlite3*) = {step_0_to_1, step_1_to_2, step_2_to_3, step_3_to_4,
                                          step_4_to_5, step_5_to_6, step_6_to_7};
constexpr int kCurrentVersion = static_cast<int>(std::size(kSteps));

Result<int64_t> query_int(sqlite3* db, const char* sql, int64_t if_no_row) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  int64_t value = if_no_row;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
      rc = SQLITE_DONE;
    }
  }
  std::string message = sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) {
    return fail(ErrorCode::kUnavailable, "cannot read the store: " + message);
  }
  return value;
}

}  // namespace

int current_version() { return kCurrentVersion; }

Result<int> read_version(sqlite3* db) {
  auto has_meta = query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", 0);
  if (!has_meta) {
    return std::unexpected(has_meta.error());
  }
  if (*has_meta == 0) {
    auto objects = query_int(db, "SELECT count(*) FROM sqlite_master", 0);
    if (!objects) {
      return std::unexpected(objects.error());
    }
    if (*objects != 0) {
      return fail(ErrorCode::kUnavailable, "the database has tables but no meta table: not a tranche store");
    }
    return 0;
  }
  auto version = query_int(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'", -1);
  if (!version) {
    return std::unexpected(version.error());
  }
  if (*version < 1) {
    return fail(ErrorCode::kUnavailable, "the store's meta table has no valid schema_version");
  }
  return static_cast<int>(*version);
}

Result<int> migrate(sqlite3* db, int target) {
  if (target < 1 || target > kCurrentVersion) {
    return fail(ErrorCode::kInternal, "no schema version " + std::to_string(target));
  }
  auto refuse_newer = [&](int found) {
    return fail(ErrorCode::kUnavailable, "store schema version " + std::to_string(found) +
                                             " is newer than this binary's " + std::to_string(target) +
                                             "; upgrade tranche");
  };
  auto before = read_version(db);
  if (!before) {
    return before;
  }
  if (*before > target) {
    return refuse_newer(*before);
  }
  if (*before == target) {
    return target;
  }
  // The exclusive transaction is the store-wide lock: re-read under it in
  // case another process migrated in the meantime.
  if (auto begun = exec(db, "BEGIN EXCLUSIVE"); !begun) {
    return std::unexpected(begun.error());
  }
  auto rollback = [&](Error error) -> Result<int> {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return std::unexpected(std::move(error));
  };
  auto version = read_version(db);
  if (!version) {
    return rollback(version.error());
  }
  if (*version > target) {
    return rollback(refuse_newer(*version).error());
  }
  for (int from = *version; from < target; ++from) {
    if (auto stepped = kSteps[from](db); !stepped) {
      Error error = stepped.error();
      error.message += " (step " + std::to_string(from) + " to " + std::to_string(from + 1) + ")";
      return rollback(std::move(error));
    }
  }
  const std::string record = "UPDATE meta SET value = '" + std::to_string(target) + "' WHERE key = 'schema_version'";
  if (auto done = exec(db, record.c_str()); !done) {
    return rollback(done.error());
  }
  if (auto done = exec(db, "COMMIT"); !done) {
    return rollback(done.error());
  }
  return target;
}

}  // namespace tranche::schema

namespace tranche {
int current_schema_version() { return schema::current_version(); }
}  // namespace tranche
