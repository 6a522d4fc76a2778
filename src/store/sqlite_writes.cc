// A commit: the batches of a group written in one transaction, each batch
// under its own savepoint, its preconditions checked and then its mutations
// applied in order, one `apply` per kind of Mutation. See README.md,
// "SQLite backend".

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "store/sqlite_store.h"

namespace tranche::sqlite {

std::vector<Result<CommitResult>> SqliteStore::write_group(std::span<const WriteBatch> batches) {
  std::vector<Result<CommitResult>> results;
  uint64_t newest = 0;
  {
    std::lock_guard lock(mu_);
    const auto started = std::chrono::steady_clock::now();
    Status done = write_group_locked(batches, results);
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

Status SqliteStore::write_group_locked(std::span<const WriteBatch> batches,
                                       std::vector<Result<CommitResult>>& results) {
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

Status SqliteStore::apply_batch(const WriteBatch& batch, EventCounter& events, CommitResult& result) {
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

Status SqliteStore::apply(const PutApplication& m, EventCounter&, CommitResult&) {
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

Status SqliteStore::apply(const PutRevision& m, EventCounter&, CommitResult&) {
  const RevisionRecord& r = m.record;
  return query("INSERT OR REPLACE INTO revisions (" REVISION_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
      .bind(r.app, r.number, r.manifest_json, r.author, r.summary, r.created_at)
      .run();
}

Status SqliteStore::apply(const DeleteRevision& m, EventCounter&, CommitResult&) {
  return query("DELETE FROM revisions WHERE app = ? AND number = ?").bind(m.app, m.number).run();
}

Status SqliteStore::apply(const PutOperationalValue& m, EventCounter&, CommitResult&) {
  const OperationalValueRecord& v = m.record;
  return query("INSERT OR REPLACE INTO operational_values (" VALUE_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(v.app, v.path, to_string(v.setting), v.value, v.expires_at, v.previous_value, v.set_by, v.set_at,
            int64_t{v.all_at_once})
      .run();
}

Status SqliteStore::apply(const DeleteOperationalValue& m, EventCounter&, CommitResult&) {
  if (m.set_no_later_than) {
    return query("DELETE FROM operational_values WHERE app = ? AND path = ? AND setting = ? AND set_at <= ?")
        .bind(m.app, m.path, to_string(m.setting), *m.set_no_later_than)
        .run();
  }
  return query("DELETE FROM operational_values WHERE app = ? AND path = ? AND setting = ?")
      .bind(m.app, m.path, to_string(m.setting))
      .run();
}

Status SqliteStore::apply(const PutClusterScale& m, EventCounter&, CommitResult&) {
  const ClusterScaleRecord& c = m.record;
  return query("INSERT OR REPLACE INTO cluster_scales (" SCALE_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
      .bind(c.app, c.cluster, c.desired, c.base_desired, c.reason, c.decided_at)
      .run();
}

Status SqliteStore::apply(const DeleteClusterScale& m, EventCounter&, CommitResult&) {
  return query("DELETE FROM cluster_scales WHERE app = ? AND cluster = ?").bind(m.app, m.cluster).run();
}

Status SqliteStore::apply(const PutRollout& m, EventCounter&, CommitResult&) {
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

Status SqliteStore::expect_lock_version(const std::string& app, int64_t version) {
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

Status SqliteStore::apply(const PutMigrationLock& m, EventCounter&, CommitResult&) {
  const MigrationLockRecord& l = m.record;
  if (auto expected = expect_lock_version(l.app, l.version); !expected) {
    return expected;
  }
  return query("INSERT OR REPLACE INTO migration_locks (" LOCK_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
      .bind(l.app, l.locked_by, l.locked_at, l.detail_json, l.updated_at, l.version + 1)
      .run();
}

Status SqliteStore::apply(const DeleteMigrationLock& m, EventCounter&, CommitResult&) {
  if (auto expected = expect_lock_version(m.app, m.version); !expected) {
    return expected;
  }
  return query("DELETE FROM migration_locks WHERE app = ?").bind(m.app).run();
}

Status SqliteStore::apply(const PutArtifact& m, EventCounter&, CommitResult&) {
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

Status SqliteStore::apply(const DeleteArtifact& m, EventCounter&, CommitResult&) {
  return query("DELETE FROM artifacts WHERE name = ? AND version = ?").bind(m.name, m.version).run();
}

Status SqliteStore::apply(const PutAgentUpgrade& m, EventCounter&, CommitResult&) {
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
            u.fallback_seconds, u.state, u.reason, u.progress_json, u.author, u.created_at, u.updated_at, u.finished_at,
            u.version + 1)
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
Status SqliteStore::apply(const PutMember& m, EventCounter&, CommitResult&) {
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

Status SqliteStore::apply(const PutHost& m, EventCounter&, CommitResult&) {
  const HostRecord& h = m.record;
  return query("INSERT OR REPLACE INTO hosts (" HOST_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(h.id, h.hostname, h.state, nlohmann::json(h.labels).dump(), h.slots, h.token_hash, h.registered_at,
            h.updated_at)
      .run();
}

Status SqliteStore::apply(const PutOperation& m, EventCounter&, CommitResult&) {
  const OperationRecord& o = m.record;
  return query("INSERT OR REPLACE INTO operations (" OPERATION_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(o.id, o.app, o.seq, o.kind, o.request_json, o.status, o.message, o.actor, o.created_at, o.updated_at)
      .run();
}

Status SqliteStore::apply(const PutToken& m, EventCounter&, CommitResult&) {
  const TokenRecord& t = m.record;
  return query("INSERT OR REPLACE INTO tokens (" TOKEN_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)")
      .bind(t.id, t.name, t.secret_hash, to_string(t.role), t.app, t.created_at)
      .run();
}

Status SqliteStore::apply(const AppendAudit& m, EventCounter&, CommitResult&) {
  const AuditRecord& a = m.record;
  return query("INSERT INTO audit (time, actor, action, target, result) VALUES (?, ?, ?, ?, ?)")
      .bind(a.time, a.actor, a.action, a.target, a.result)
      .run();
}

Status SqliteStore::apply(const AppendEvent& m, EventCounter& events, CommitResult& result) {
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

}  // namespace tranche::sqlite
