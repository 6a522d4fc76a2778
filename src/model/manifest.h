#pragma once
// An application's desired shape, as applied by an operator.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"

namespace tranche {

// In a manifest, absent counts follow from the given ones: min defaults to 1
// (or less, when desired or max is less), desired to min, max to the larger of
// min and desired. So `{desired: 4}` is 1..4 and `{min: 2, max: 10}` starts at 2.
struct MemberCounts {
  int min = 1;
  int max = 1;
  int desired = 1;
};

struct Artifact {
  std::string version;
  std::vector<std::string> command;
  std::map<std::string, std::string> env;
  std::string workdir;  // empty: the agent's default
};

struct HealthCheck {
  enum class Kind { kNone, kHttp, kTcp, kExec };
  Kind kind = Kind::kNone;
  std::string port;  // http, tcp: a declared port name
  std::string path;  // http
  std::vector<std::string> exec;
  int interval_seconds = 1;
  int timeout_seconds = 1;
  int unhealthy_threshold = 3;
};

struct StatsEndpoint {
  std::string port;
  std::string path;
};

struct Hooks {
  std::vector<std::string> update;
  std::vector<std::string> maintenance;
  std::vector<std::string> drain;
};

// A count or a percentage of `desired`, as Kubernetes' IntOrString.
struct IntOrPercent {
  int value = 0;
  bool percent = false;
};

struct UpdatePolicy {
  enum class Method { kReplace, kInPlace };
  enum class Strategy { kRolling, kAllAtOnce };
  enum class OnFailure { kRollback, kPause };
  Method method = Method::kReplace;
  Strategy strategy = Strategy::kRolling;
  IntOrPercent max_unavailable{1, false};
  IntOrPercent max_surge{1, false};
  int canary = 0;
  int min_ready_seconds = 2;
  int pause_between_batches_seconds = 0;
  int progress_deadline_seconds = 300;
  int max_failures = 0;
  OnFailure on_failure = OnFailure::kRollback;
};

struct AutoscalingPolicy {
  int window_seconds = 30;
  double scale_up_above = 0.8;
  double scale_down_below = 0.2;
  int cooldown_seconds = 60;
};

// Initial explicit values from the manifest; empty string: not given.
struct InitialOperational {
  std::string autoscaling;
  std::string autohealing;
};

struct LoadBalancer {
  std::string haproxy_backend;  // empty: no load balancer
  int drain_timeout_seconds = 30;
};

struct Placement {
  std::map<std::string, std::string> host_labels;
  int slots = 1;
};

struct ClusterSpec {
  std::string name;
  std::vector<std::string> depends_on;
  MemberCounts members;
  Artifact artifact;
  std::vector<std::string> ports;
  HealthCheck health;
  std::optional<StatsEndpoint> stats;
  Hooks hooks;
  UpdatePolicy update;
  AutoscalingPolicy autoscaling;
  InitialOperational operational;
  LoadBalancer load_balancer;
  Placement placement;
};

struct GroupSpec {
  std::string name;
  std::vector<std::string> depends_on;
  std::vector<GroupSpec> groups;
  std::vector<ClusterSpec> clusters;
  InitialOperational operational;
};

struct ApplicationSpec {
  enum class UpdateOrder { kDependencies, kReverse, kParallel };
  std::string name;
  std::string description;
  UpdateOrder update_order = UpdateOrder::kDependencies;
  int revision_history_limit = 20;
  std::vector<GroupSpec> groups;
  std::vector<ClusterSpec> clusters;
  InitialOperational operational;
};

enum class ManifestFormat { kYaml, kJson };

// Parses and validates strictly. Any problem is kUnprocessable with the
// offending field's path ("clusters[1].members.desired") and a message;
// syntax errors are kInvalid.
Result<ApplicationSpec> parse_manifest(std::string_view text, ManifestFormat format);

// Parses JSON text, refusing a duplicate key in any object: nlohmann keeps
// the last of two silently, so {"value": "on", "value": "off"} would mean
// whatever came last. kInvalid "invalid JSON: duplicate key 'K'" (or the
// parser's syntax error). For a JSON manifest and the API's request bodies.
Result<nlohmann::json> parse_json_text(std::string_view text);

// The normalized document: every field present, defaults filled in, keys in a
// fixed order. Equal specs give equal documents; parse_manifest of its dump
// gives the same spec back.
nlohmann::json to_json(const ApplicationSpec& spec);

// One node of the tree, flattened in depth-first order.
struct NodeView {
  enum class Kind { kApplication, kGroup, kCluster };
  Kind kind = Kind::kApplication;
  std::string path;                      // "" for the application, "backend", "backend/db"
  const GroupSpec* group = nullptr;      // kGroup
  const ClusterSpec* cluster = nullptr;  // kCluster
  const InitialOperational* operational = nullptr;
};
std::vector<NodeView> flatten(const ApplicationSpec& spec);

// "web: artifact.version 1.4.2 -> 1.4.3; +cluster api; -group old"; empty
// exactly when both give the same to_json. For `from` == nullptr (first
// revision): "created with N clusters in M groups". At most about 200
// characters: the rest is counted, "; … (N more)".
std::string diff_summary(const ApplicationSpec* from, const ApplicationSpec& to);

std::string_view to_string(NodeView::Kind kind);

// What a cluster's running members embody (updates.md): artifact, ports,
// health, stats, hooks and placement. Members change only when this changes;
// counts, policies and operational values take effect without touching them.
bool same_member_template(const ClusterSpec& a, const ClusterSpec& b);

// maxSurge and maxUnavailable against `desired`, rounded as Kubernetes does:
// a surge up, unavailability down.
int resolve_max_surge(const UpdatePolicy& policy, int desired);
int resolve_max_unavailable(const UpdatePolicy& policy, int desired);

}  // namespace tranche
