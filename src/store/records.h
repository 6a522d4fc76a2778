#pragma once
// Plain records the store keeps. Times are TimePoint; the backends choose how
// to encode them. Free-form documents (a revision's manifest, an operation's
// request, a member's spec) are JSON text so the store never needs to know
// their shape.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/clock.h"

namespace tranche {

struct ApplicationRecord {
  std::string name;
  int64_t current_revision = 0;
  bool deployed = true;
  // Bumped by every batch that puts this record; the compare-and-swap handle.
  int64_t version = 0;
  // Last operation sequence number handed out for this application.
  int64_t operation_seq = 0;
  TimePoint created_at{};
  TimePoint updated_at{};

  bool operator==(const ApplicationRecord&) const = default;
};

struct RevisionRecord {
  std::string app;
  int64_t number = 0;
  std::string manifest_json;  // the normalized manifest, defaults filled in
  std::string author;         // token name
  std::string summary;        // one-line diff against the previous revision
  TimePoint created_at{};

  bool operator==(const RevisionRecord&) const = default;
};

enum class Setting { kAutoscaling, kAutohealing, kMaintenance };

// An explicit operational value on one node. `path` is relative to the
// application: "" for the application itself, "backend/db" for a cluster,
// "backend/db/3" for a member.
struct OperationalValueRecord {
  std::string app;
  std::string path;
  Setting setting = Setting::kAutoscaling;
  std::string value;  // "on"/"off" or "off"/"restart"/"replace"
  // Time-boxed values: when it ends and what the explicit value was before
  // (nullopt: the node inherited).
  std::optional<TimePoint> expires_at;
  std::optional<std::string> previous_value;
  std::string set_by;
  TimePoint set_at{};
  // Maintenance only: every member at once, ignoring the cluster's
  // maxUnavailable (model.md, "--all-at-once").
  bool all_at_once = false;

  bool operator==(const OperationalValueRecord&) const = default;
};

struct MemberRecord {
  std::string id;  // "web/3": cluster path + "/" + ordinal
  std::string app;
  std::string cluster;  // cluster path within the app, e.g. "backend/db"
  int64_t ordinal = 0;
  std::string host;   // empty until placed
  std::string state;  // MemberState name (model.md)
  int64_t revision = 0;
  std::string version;
  std::optional<int64_t> pid;
  std::map<std::string, int> ports;
  std::optional<TimePoint> healing_delayed_since;
  TimePoint created_at{};
  TimePoint updated_at{};

  bool operator==(const MemberRecord&) const = default;
};

struct HostRecord {
  std::string id;
  std::string hostname;
  std::string state;  // Ready | Unreachable | Draining | Left
  std::map<std::string, std::string> labels;
  int64_t slots = 64;
  std::string token_hash;
  TimePoint registered_at{};
  TimePoint updated_at{};

  bool operator==(const HostRecord&) const = default;
};

struct OperationRecord {
  std::string id;
  std::string app;
  int64_t seq = 0;   // per application, in acceptance order
  std::string kind;  // "apply", "operational-state", "delete", ...
  std::string request_json;
  std::string status;  // Pending | Running | Succeeded | Failed | Cancelled
  std::string message;
  std::string actor;
  TimePoint created_at{};
  TimePoint updated_at{};

  bool operator==(const OperationRecord&) const = default;
};

// The autoscaler's current decision for one cluster: how many members it
// wants, within the manifest's min..max. It holds while the manifest's
// `desired` is still `base_desired`; an operator's new desired wins.
struct ClusterScaleRecord {
  std::string app;
  std::string cluster;  // path within the app
  int64_t desired = 0;
  int64_t base_desired = 0;
  std::string reason;
  TimePoint decided_at{};

  bool operator==(const ClusterScaleRecord&) const = default;
};

// One rollout of an application (updates.md): the move of its members from
// one revision to another. The member records say which revision each member
// is on; this record holds what members cannot: the phase, the operator's
// controls and the rollout's own memory (failures counted, batch pacing),
// so that a restarted controller resumes exactly where it was.
struct RolloutRecord {
  std::string app;
  int64_t id = 0;  // per application, from 1
  int64_t from_revision = 0;
  int64_t to_revision = 0;
  // What members move to: to_revision, or the revision restoring
  // from_revision's templates while the rollout rolls back.
  int64_t target_revision = 0;
  std::string phase;   // RolloutPhase name
  std::string reason;  // why it is in this phase
  bool promoted = false;
  std::string progress_json = "{}";  // per cluster, engine-defined
  std::string author;
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> finished_at;
  // The compare-and-swap handle: a PutRollout carries the version it read
  // (0 for a new rollout) and the store keeps version + 1.
  int64_t version = 0;

  bool operator==(const RolloutRecord&) const = default;
};

// A migration lock (updates.md, "Migration mode"): while it exists, the
// application (or, with app "", every application: the platform lock) takes
// no mutating call but migration ones. `detail_json` is engine-defined (the
// perform in progress, the rollout the lock paused); like progress_json the
// store never reads it.
struct MigrationLockRecord {
  std::string app;  // "" is the whole platform
  std::string locked_by;  // token name
  TimePoint locked_at{};
  std::string detail_json = "{}";
  TimePoint updated_at{};
  // The compare-and-swap handle, as for rollouts: a put carries the version
  // it read (0: the lock must not exist yet) and the store keeps version + 1.
  int64_t version = 0;

  bool operator==(const MigrationLockRecord&) const = default;
};

// A name for a file of the controller's content-addressed artifact store
// (interfaces.md, "artifacts"): the file is artifacts/sha256/<sha256> in
// the data dir; (name, version) names one content for good.
struct ArtifactRecord {
  std::string name;
  std::string version;
  std::string sha256;  // 64 lower-case hex digits
  int64_t size = 0;    // bytes
  std::string uploaded_by;  // token name
  TimePoint uploaded_at{};

  bool operator==(const ArtifactRecord&) const = default;
};

// One agent upgrade (updates.md, "Upgrading Tranche itself"): an agent
// binary rolled across the hosts in batches. Per-host progress is
// engine-defined JSON the store never reads; the controls and the state are
// columns so that a restarted controller resumes exactly where it was.
struct AgentUpgradeRecord {
  int64_t id = 0;  // from 1
  std::string agent_version;  // the version the agents report once upgraded
  std::string artifact_sha256;
  int64_t artifact_size = 0;
  int64_t max_unavailable = 1;  // hosts upgrading at once
  std::string selector;         // label selector of the hosts; "" every host
  int64_t fallback_seconds = 60;  // an agent's deadline to come back healthy on the new binary
  std::string state;   // Running | Paused | Aborted | Completed
  std::string reason;  // why it is in this state
  std::string progress_json = "{}";
  std::string author;
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> finished_at;
  // The compare-and-swap handle, as for rollouts.
  int64_t version = 0;

  bool operator==(const AgentUpgradeRecord&) const = default;
};

enum class Role { kViewer, kOperator, kAdmin };

struct TokenRecord {
  std::string id;  // public part of the token, used to look it up
  std::string name;
  std::string secret_hash;  // sha256 of the secret part
  Role role = Role::kViewer;
  std::optional<std::string> app;  // scope: only this application
  TimePoint created_at{};

  bool operator==(const TokenRecord&) const = default;
};

struct AuditRecord {
  int64_t id = 0;  // assigned by the store
  TimePoint time{};
  std::string actor;
  std::string action;  // "POST /api/v1/applications"
  std::string target;  // "shop"
  std::string result;  // "201" or "422 clusters[0].name: ..."

  bool operator==(const AuditRecord&) const = default;
};

struct EventRecord {
  uint64_t seq = 0;  // assigned by the store at commit
  TimePoint time{};
  std::string app;
  std::string path;
  std::string member;
  std::string type;
  std::string from_json = "null";  // JSON values
  std::string to_json = "null";
  std::string message;

  bool operator==(const EventRecord&) const = default;
};

}  // namespace tranche
