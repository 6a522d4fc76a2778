#include "model/manifest.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <sstream>
#include <utility>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "common/names.h"

namespace tranche {

namespace {

using nlohmann::json;

// Validation stops at the first problem. The walk over the document is deeply
// recursive, so the problem travels out as this exception and parse_manifest
// turns it back into an Error value; nothing outside this file sees it.
struct Rejection {
  Error error;
};

[[noreturn]] void reject(std::string field, std::string message) {
  throw Rejection{Error{ErrorCode::kUnprocessable, std::move(message), std::move(field)}};
}

[[noreturn]] void reject_syntax(std::string message) {
  throw Rejection{Error{ErrorCode::kInvalid, std::move(message), {}}};
}

void ensure(const Status& status) {
  if (!status) {
    throw Rejection{status.error()};
  }
}

// Limits that keep hostile documents (alias bombs, absurd nesting) from
// exhausting the stack or memory; real manifests stay far below them.
constexpr int kMaxGroupDepth = 32;
constexpr int kMaxYamlDepth = 256;
// A real manifest spends several bytes per node; a document that expands to
// far more nodes than that is being multiplied by aliases.
size_t max_yaml_nodes(size_t text_size) { return 10'000 + text_size / 2; }
std::string too_deep() { return "the manifest nests deeper than " + std::to_string(kMaxYamlDepth) + " levels"; }

// ---------------------------------------------------------------------------
// Enumerations and their manifest spellings.

template <class E>
struct Spelling {
  std::string_view name;
  E value;
};

constexpr Spelling<ApplicationSpec::UpdateOrder> kUpdateOrders[] = {
    {"dependencies", ApplicationSpec::UpdateOrder::kDependencies},
    {"reverse", ApplicationSpec::UpdateOrder::kReverse},
    {"parallel", ApplicationSpec::UpdateOrder::kParallel},
};
constexpr Spelling<UpdatePolicy::Method> kMethods[] = {
    {"replace", UpdatePolicy::Method::kReplace},
    {"in-place", UpdatePolicy::Method::kInPlace},
};
constexpr Spelling<UpdatePolicy::Strategy> kStrategies[] = {
    {"rolling", UpdatePolicy::Strategy::kRolling},
    {"all-at-once", UpdatePolicy::Strategy::kAllAtOnce},
};
constexpr Spelling<UpdatePolicy::OnFailure> kOnFailures[] = {
    {"rollback", UpdatePolicy::OnFailure::kRollback},
    {"pause", UpdatePolicy::OnFailure::kPause},
};
constexpr Spelling<bool> kOnOff[] = {{"on", true}, {"off", false}};

template <class E, size_t N>
std::string_view spelling_of(const Spelling<E> (&table)[N], E value) {
  for (const auto& entry : table) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return "unknown";  // every enumerator is in its table
}

template <class E, size_t N>
std::string list_spellings(const Spelling<E> (&table)[N]) {
  std::string out;
  for (const auto& entry : table) {
    out += out.empty() ? "" : ", ";
    out += entry.name;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Paths and value descriptions for messages.

std::string field_path(std::string_view base, std::string_view key) {
  std::string out(base);
  if (!out.empty()) {
    out += '.';
  }
  out += key;
  return out;
}

std::string item_path(std::string_view list_path, size_t index) {
  return std::string(list_path) + "[" + std::to_string(index) + "]";
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "mapping";
    case json::value_t::array:
      return "list";
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "number";
    default:
      return "unsupported value";
  }
}

std::string format_number(double x) {
  if (!std::isfinite(x)) {
    return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  }
  return json(x).dump();
}

// ---------------------------------------------------------------------------
// Typed readers. Each takes the value and its path, and rejects with that path.

std::string read_string(const json& v, const std::string& path) {
  if (!v.is_string()) {
    std::string message = "expected a string, got " + type_name(v);
    if (v.is_number() || v.is_boolean()) {
      message += " (quote it)";
    }
    reject(path, std::move(message));
  }
  const auto& s = v.get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) {
    reject(path, "must not contain NUL characters");
  }
  return s;
}

std::string read_nonempty_string(const json& v, const std::string& path) {
  std::string s = read_string(v, path);
  if (s.empty()) {
    reject(path, "must not be empty");
  }
  return s;
}

int read_int(const json& v, const std::string& path) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT_MAX)) {
      reject(path, std::to_string(u) + " is out of range");
    }
    return static_cast<int>(u);
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < INT_MIN || i > INT_MAX) {
      reject(path, std::to_string(i) + " is out of range");
    }
    return static_cast<int>(i);
  }
  if (v.is_number_float()) {
    reject(path, "expected an integer, got " + format_number(v.get<double>()));
  }
  reject(path, "expected an integer, got " + type_name(v));
}

int read_int_at_least(const json& v, const std::string& path, int minimum) {
  const int x = read_int(v, path);
  if (x < minimum) {
    reject(path, "must be at least " + std::to_string(minimum) + ", got " + std::to_string(x));
  }
  return x;
}

double read_nonnegative_number(const json& v, const std::string& path) {
  if (!v.is_number()) {
    reject(path, "expected a number, got " + type_name(v));
  }
  const double x = v.get<double>();
  if (!std::isfinite(x)) {
    reject(path, "must be a finite number, got " + format_number(x));
  }
  if (x < 0) {
    reject(path, "must be at least 0, got " + format_number(x));
  }
  return x;
}

template <class E, size_t N>
E read_enum(const json& v, const std::string& path, const Spelling<E> (&table)[N]) {
  if (!v.is_string()) {
    reject(path, "expected one of " + list_spellings(table) + ", got " + type_name(v) +
                     (v.is_boolean() ? " (quote it)" : ""));
  }
  const auto& s = v.get_ref<const std::string&>();
  for (const auto& entry : table) {
    if (entry.name == s) {
      return entry.value;
    }
  }
  reject(path, "'" + s + "' is not one of " + list_spellings(table));
}

const json& read_list(const json& v, const std::string& path) {
  if (!v.is_array()) {
    reject(path, "expected a list, got " + type_name(v));
  }
  return v;
}

std::string read_name(const json& v, const std::string& path) {
  std::string name = read_string(v, path);
  ensure(check_name(name, path));
  return name;
}

std::vector<std::string> read_name_list(const json& v, const std::string& path) {
  std::vector<std::string> names;
  const json& list = read_list(v, path);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = item_path(path, i);
    std::string name = read_name(list[i], at);
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      reject(at, "'" + name + "' is listed twice");
    }
    names.push_back(std::move(name));
  }
  return names;
}

// An argv array: the agent execs it directly, never through a shell.
std::vector<std::string> read_command(const json& v, const std::string& path) {
  const json& list = read_list(v, path);
  if (list.empty()) {
    reject(path, "must not be empty: give the program and its arguments");
  }
  std::vector<std::string> argv;
  for (size_t i = 0; i < list.size(); ++i) {
    argv.push_back(read_string(list[i], item_path(path, i)));
  }
  if (argv.front().empty()) {
    reject(item_path(path, 0), "the program name must not be empty");
  }
  return argv;
}

std::map<std::string, std::string> read_string_map(const json& v, const std::string& path) {
  if (!v.is_object()) {
    reject(path, "expected a mapping, got " + type_name(v));
  }
  std::map<std::string, std::string> out;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it.key().empty()) {
      reject(path, "keys must not be empty");
    }
    out.emplace(it.key(), read_string(it.value(), field_path(path, it.key())));
  }
  return out;
}

// One mapping of the manifest: checks that it is a mapping holding only known
// keys, then hands out its members with their paths. A null member counts as
// absent, as an empty `hooks:` line in YAML means "nothing here".
class Fields {
 public:
  Fields(const json& value, std::string path, std::initializer_list<std::string_view> known)
      : value_(value), path_(std::move(path)) {
    if (!value_.is_object()) {
      reject(path_, "expected a mapping, got " + type_name(value_));
    }
    for (auto it = value_.begin(); it != value_.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
        reject(field_path(path_, it.key()), "unknown field '" + it.key() + "'");
      }
    }
  }

  std::string path(std::string_view key) const { return field_path(path_, key); }
  const std::string& path() const { return path_; }

  const json* find(std::string_view key) const {
    const auto it = value_.find(std::string(key));
    if (it == value_.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  const json& required(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) {
      reject(path(key), "missing required field '" + std::string(key) + "'");
    }
    return *v;
  }

  int int_at_least(std::string_view key, int fallback, int minimum) const {
    const json* v = find(key);
    return v == nullptr ? fallback : read_int_at_least(*v, path(key), minimum);
  }

  template <class E, size_t N>
  E enumeration(std::string_view key, E fallback, const Spelling<E> (&table)[N]) const {
    const json* v = find(key);
    return v == nullptr ? fallback : read_enum(*v, path(key), table);
  }

 private:
  const json& value_;
  std::string path_;
};

// ---------------------------------------------------------------------------
// The parts of a cluster.

// Absent counts follow from the given ones, so `{desired: 4}` means 1..4 and
// `{min: 2, max: 10}` starts at 2; with none given a cluster has one member.
MemberCounts read_members(const json& v, const std::string& path) {
  const Fields f(v, path, {"min", "max", "desired"});
  auto count = [&](std::string_view key) -> std::optional<int> {
    const json* x = f.find(key);
    if (x == nullptr) {
      return std::nullopt;
    }
    return read_int_at_least(*x, f.path(key), 0);
  };
  const std::optional<int> min = count("min");
  const std::optional<int> max = count("max");
  const std::optional<int> desired = count("desired");

  MemberCounts m;
  m.min = min.value_or(std::min({1, desired.value_or(1), max.value_or(1)}));
  m.desired = desired.value_or(m.min);
  m.max = max.value_or(std::max(m.min, m.desired));
  if (m.min > m.max) {
    reject(f.path("min"), "min " + std::to_string(m.min) + " is greater than max " + std::to_string(m.max));
  }
  if (m.desired < m.min || m.desired > m.max) {
    reject(f.path("desired"), "desired " + std::to_string(m.desired) + " is outside min..max " + std::to_string(m.min) +
                                  ".." + std::to_string(m.max));
  }
  return m;
}

bool is_env_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The variable through which the agent hands a declared port to the member.
std::string port_variable(std::string_view port) {
  std::string out = "PORT_";
  for (char c : port) {
    out += c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  return out;
}

Artifact read_artifact(const json& v, const std::string& path) {
  const Fields f(v, path, {"version", "command", "env", "workdir"});
  Artifact a;
  a.version = read_nonempty_string(f.required("version"), f.path("version"));
  a.command = read_command(f.required("command"), f.path("command"));
  if (const json* env = f.find("env")) {
    a.env = read_string_map(*env, f.path("env"));
    for (const auto& [name, value] : a.env) {
      if (!is_env_name(name)) {
        reject(field_path(f.path("env"), name),
               "'" + name +
                   "' is not a valid environment variable name (letters, digits and '_', not starting with a digit)");
      }
      if (name == "VERSION" || name.starts_with("TRANCHE_")) {
        reject(field_path(f.path("env"), name), "'" + name + "' is set by Tranche for every member");
      }
    }
  }
  if (const json* workdir = f.find("workdir")) {
    a.workdir = read_string(*workdir, f.path("workdir"));
  }
  return a;
}

// An HTTP endpoint on one of the cluster's declared ports.
struct HttpEndpoint {
  std::string port;
  std::string path;
};

HttpEndpoint read_http_endpoint(const json& v, const std::string& path) {
  const Fields f(v, path, {"port", "path"});
  HttpEndpoint e;
  e.port = read_nonempty_string(f.required("port"), f.path("port"));
  e.path = read_string(f.required("path"), f.path("path"));
  if (!e.path.starts_with('/')) {
    reject(f.path("path"), "path '" + e.path + "' must start with '/'");
  }
  return e;
}

HealthCheck read_health(const json& v, const std::string& path) {
  const Fields f(v, path, {"http", "tcp", "exec", "intervalSeconds", "timeoutSeconds", "unhealthyThreshold"});
  std::vector<std::string> kinds;
  for (std::string_view key : {"http", "tcp", "exec"}) {
    if (f.find(key) != nullptr) {
      kinds.emplace_back(key);
    }
  }
  if (kinds.empty()) {
    reject(path, "health needs one of http, tcp or exec");
  }
  if (kinds.size() > 1) {
    reject(path, "health takes exactly one of http, tcp or exec, got " + kinds[0] + " and " + kinds[1]);
  }
  HealthCheck h;
  if (const json* http = f.find("http")) {
    h.kind = HealthCheck::Kind::kHttp;
    HttpEndpoint endpoint = read_http_endpoint(*http, f.path("http"));
    h.port = std::move(endpoint.port);
    h.path = std::move(endpoint.path);
  } else if (const json* tcp = f.find("tcp")) {
    h.kind = HealthCheck::Kind::kTcp;
    const Fields t(*tcp, f.path("tcp"), {"port"});
    h.port = read_nonempty_string(t.required("port"), t.path("port"));
  } else {
    h.kind = HealthCheck::Kind::kExec;
    h.exec = read_command(f.required("exec"), f.path("exec"));
  }
  h.interval_seconds = f.int_at_least("intervalSeconds", h.interval_seconds, 1);
  h.timeout_seconds = f.int_at_least("timeoutSeconds", h.timeout_seconds, 1);
  h.unhealthy_threshold = f.int_at_least("unhealthyThreshold", h.unhealthy_threshold, 1);
  return h;
}

StatsEndpoint read_stats(const json& v, const std::string& path) {
  const Fields f(v, path, {"http"});
  HttpEndpoint endpoint = read_http_endpoint(f.required("http"), f.path("http"));
  return StatsEndpoint{std::move(endpoint.port), std::move(endpoint.path)};
}

Hooks read_hooks(const json& v, const std::string& path) {
  const Fields f(v, path, {"update", "maintenance", "drain"});
  Hooks h;
  if (const json* x = f.find("update")) {
    h.update = read_command(*x, f.path("update"));
  }
  if (const json* x = f.find("maintenance")) {
    h.maintenance = read_command(*x, f.path("maintenance"));
  }
  if (const json* x = f.find("drain")) {
    h.drain = read_command(*x, f.path("drain"));
  }
  return h;
}

std::string format_int_or_percent(const IntOrPercent& v) { return std::to_string(v.value) + (v.percent ? "%" : ""); }

IntOrPercent read_int_or_percent(const json& v, const std::string& path) {
  if (v.is_number()) {
    return IntOrPercent{read_int_at_least(v, path, 0), false};
  }
  if (!v.is_string()) {
    reject(path, "expected a non-negative integer or a percentage like \"25%\", got " + type_name(v));
  }
  const auto& s = v.get_ref<const std::string&>();
  int percent = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, percent);
  if (s.empty() || s[0] < '0' || s[0] > '9' || ec != std::errc() || ptr + 1 != end || *ptr != '%') {
    reject(path, "'" + s + "' is not a non-negative integer or a percentage like \"25%\"");
  }
  if (percent > 100) {
    reject(path, "'" + s + "' is more than 100%");
  }
  return IntOrPercent{percent, true};
}

// Kubernetes' fenceposts: a surge rounds up, unavailability rounds down.
int resolve(const IntOrPercent& v, int desired, bool round_up) {
  if (!v.percent) {
    return v.value;
  }
  const std::int64_t scaled = static_cast<std::int64_t>(v.value) * desired;
  return static_cast<int>(round_up ? (scaled + 99) / 100 : scaled / 100);
}

UpdatePolicy read_update(const json& v, const std::string& path, int desired) {
  const Fields f(v, path,
                 {"method", "strategy", "maxUnavailable", "maxSurge", "canary", "minReadySeconds",
                  "pauseBetweenBatchesSeconds", "progressDeadlineSeconds", "maxFailures", "onFailure"});
  UpdatePolicy u;
  u.method = f.enumeration("method", u.method, kMethods);
  u.strategy = f.enumeration("strategy", u.strategy, kStrategies);
  if (const json* x = f.find("maxUnavailable")) {
    u.max_unavailable = read_int_or_percent(*x, f.path("maxUnavailable"));
  }
  if (const json* x = f.find("maxSurge")) {
    u.max_surge = read_int_or_percent(*x, f.path("maxSurge"));
  }
  u.canary = f.int_at_least("canary", u.canary, 0);
  u.min_ready_seconds = f.int_at_least("minReadySeconds", u.min_ready_seconds, 0);
  u.pause_between_batches_seconds = f.int_at_least("pauseBetweenBatchesSeconds", u.pause_between_batches_seconds, 0);
  u.progress_deadline_seconds = f.int_at_least("progressDeadlineSeconds", u.progress_deadline_seconds, 1);
  u.max_failures = f.int_at_least("maxFailures", u.max_failures, 0);
  u.on_failure = f.enumeration("onFailure", u.on_failure, kOnFailures);

  // A rollout that may neither take a member out nor add one never moves.
  const std::string unavailable = format_int_or_percent(u.max_unavailable);
  const std::string surge = format_int_or_percent(u.max_surge);
  if (u.max_unavailable.value == 0 && u.max_surge.value == 0) {
    reject(f.path("maxUnavailable"), "maxUnavailable " + unavailable + " and maxSurge " + surge +
                                         " are both zero: the rollout could not make progress");
  }
  if (desired > 0) {
    const int resolved_unavailable = resolve(u.max_unavailable, desired, false);
    const int resolved_surge = resolve(u.max_surge, desired, true);
    if (resolved_unavailable == 0 && resolved_surge == 0) {
      reject(f.path("maxUnavailable"), "maxUnavailable " + unavailable + " and maxSurge " + surge +
                                           " both resolve to 0 at desired " + std::to_string(desired) +
                                           ": the rollout could not make progress");
    }
    if (resolved_unavailable == 0 && u.method == UpdatePolicy::Method::kInPlace &&
        u.strategy == UpdatePolicy::Strategy::kRolling) {
      reject(f.path("maxUnavailable"), "maxUnavailable " + unavailable + " resolves to 0 at desired " +
                                           std::to_string(desired) +
                                           " and an in-place update cannot surge: the rollout could not make progress");
    }
  }
  if (u.canary > desired) {
    reject(f.path("canary"),
           "canary " + std::to_string(u.canary) + " is greater than desired " + std::to_string(desired));
  }
  return u;
}

AutoscalingPolicy read_autoscaling(const json& v, const std::string& path) {
  const Fields f(v, path, {"windowSeconds", "scaleUpAbove", "scaleDownBelow", "cooldownSeconds"});
  AutoscalingPolicy a;
  a.window_seconds = f.int_at_least("windowSeconds", a.window_seconds, 1);
  if (const json* x = f.find("scaleUpAbove")) {
    a.scale_up_above = read_nonnegative_number(*x, f.path("scaleUpAbove"));
  }
  if (const json* x = f.find("scaleDownBelow")) {
    a.scale_down_below = read_nonnegative_number(*x, f.path("scaleDownBelow"));
  }
  a.cooldown_seconds = f.int_at_least("cooldownSeconds", a.cooldown_seconds, 0);
  if (!(a.scale_down_below < a.scale_up_above)) {
    reject(f.path("scaleDownBelow"), "scaleDownBelow " + format_number(a.scale_down_below) +
                                         " must be less than scaleUpAbove " + format_number(a.scale_up_above));
  }
  return a;
}

InitialOperational read_operational(const json& v, const std::string& path) {
  const Fields f(v, path, {"autoscaling", "autohealing"});
  InitialOperational o;
  if (f.find("autoscaling") != nullptr) {
    o.autoscaling = spelling_of(kOnOff, f.enumeration("autoscaling", true, kOnOff));
  }
  if (f.find("autohealing") != nullptr) {
    o.autohealing = spelling_of(kOnOff, f.enumeration("autohealing", true, kOnOff));
  }
  return o;
}

// HAProxy's identifier characters; the name goes into runtime API commands, so
// nothing that could end or split a command gets through.
bool is_haproxy_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == ':';
  });
}

LoadBalancer read_load_balancer(const json& v, const std::string& path) {
  const Fields f(v, path, {"haproxy", "drainTimeoutSeconds"});
  LoadBalancer lb;
  const Fields haproxy(f.required("haproxy"), f.path("haproxy"), {"backend"});
  lb.haproxy_backend = read_nonempty_string(haproxy.required("backend"), haproxy.path("backend"));
  if (!is_haproxy_name(lb.haproxy_backend)) {
    reject(haproxy.path("backend"),
           "'" + lb.haproxy_backend + "' is not a valid HAProxy backend name (letters, digits, '-', '_', '.', ':')");
  }
  lb.drain_timeout_seconds = f.int_at_least("drainTimeoutSeconds", lb.drain_timeout_seconds, 0);
  return lb;
}

Placement read_placement(const json& v, const std::string& path) {
  const Fields f(v, path, {"hostLabels", "slots"});
  Placement p;
  if (const json* labels = f.find("hostLabels")) {
    p.host_labels = read_string_map(*labels, f.path("hostLabels"));
  }
  p.slots = f.int_at_least("slots", p.slots, 1);
  return p;
}

void require_declared_port(const ClusterSpec& c, const std::string& port, const std::string& path) {
  if (std::find(c.ports.begin(), c.ports.end(), port) == c.ports.end()) {
    reject(path, "port '" + port + "' is not declared in ports");
  }
}

ClusterSpec read_cluster(const json& v, const std::string& path) {
  const Fields f(v, path,
                 {"name", "dependsOn", "members", "artifact", "ports", "health", "stats", "hooks", "update",
                  "autoscaling", "operational", "loadBalancer", "placement"});
  ClusterSpec c;
  c.name = read_name(f.required("name"), f.path("name"));
  if (const json* x = f.find("dependsOn")) {
    c.depends_on = read_name_list(*x, f.path("dependsOn"));
  }
  if (const json* x = f.find("members")) {
    c.members = read_members(*x, f.path("members"));
  }
  c.artifact = read_artifact(f.required("artifact"), f.path("artifact"));
  if (const json* x = f.find("ports")) {
    const std::string ports_path = f.path("ports");
    const json& list = read_list(*x, ports_path);
    for (size_t i = 0; i < list.size(); ++i) {
      std::string port = read_name(list[i], item_path(ports_path, i));
      if (std::find(c.ports.begin(), c.ports.end(), port) != c.ports.end()) {
        reject(item_path(ports_path, i), "port '" + port + "' is declared twice");
      }
      c.ports.push_back(std::move(port));
    }
    for (const auto& port : c.ports) {
      const std::string variable = port_variable(port);
      if (c.artifact.env.contains(variable)) {
        reject(field_path(f.path("artifact") + ".env", variable),
               "'" + variable + "' is set by Tranche to the port allocated for '" + port + "'");
      }
    }
  }
  if (const json* x = f.find("health")) {
    c.health = read_health(*x, f.path("health"));
    if (c.health.kind == HealthCheck::Kind::kHttp) {
      require_declared_port(c, c.health.port, f.path("health") + ".http.port");
    } else if (c.health.kind == HealthCheck::Kind::kTcp) {
      require_declared_port(c, c.health.port, f.path("health") + ".tcp.port");
    }
  }
  if (const json* x = f.find("stats")) {
    c.stats = read_stats(*x, f.path("stats"));
    require_declared_port(c, c.stats->port, f.path("stats") + ".http.port");
  }
  if (const json* x = f.find("hooks")) {
    c.hooks = read_hooks(*x, f.path("hooks"));
  }
  if (const json* x = f.find("update")) {
    c.update = read_update(*x, f.path("update"), c.members.desired);
  }
  if (const json* x = f.find("autoscaling")) {
    c.autoscaling = read_autoscaling(*x, f.path("autoscaling"));
  }
  if (const json* x = f.find("operational")) {
    c.operational = read_operational(*x, f.path("operational"));
  }
  if (const json* x = f.find("loadBalancer")) {
    c.load_balancer = read_load_balancer(*x, f.path("loadBalancer"));
    if (c.ports.empty()) {
      reject(f.path("loadBalancer"), "a load balancer needs a port: members are registered on their first port");
    }
  }
  if (const json* x = f.find("placement")) {
    c.placement = read_placement(*x, f.path("placement"));
  }
  return c;
}

// ---------------------------------------------------------------------------
// The tree.

// Groups and clusters of one parent share a namespace; dependsOn names
// siblings only, and the siblings' dependencies must not form a cycle.
void check_siblings(const std::vector<GroupSpec>& groups, const std::vector<ClusterSpec>& clusters,
                    const std::string& groups_path, const std::string& clusters_path) {
  struct Sibling {
    const std::string* name;
    std::string path;
    const std::vector<std::string>* depends_on;
  };
  std::vector<Sibling> siblings;
  for (size_t i = 0; i < groups.size(); ++i) {
    siblings.push_back({&groups[i].name, item_path(groups_path, i), &groups[i].depends_on});
  }
  for (size_t i = 0; i < clusters.size(); ++i) {
    siblings.push_back({&clusters[i].name, item_path(clusters_path, i), &clusters[i].depends_on});
  }

  std::map<std::string_view, size_t> index;
  for (size_t i = 0; i < siblings.size(); ++i) {
    if (!index.emplace(*siblings[i].name, i).second) {
      reject(siblings[i].path + ".name", "'" + *siblings[i].name +
                                             "' is already the name of another group or cluster here (" +
                                             siblings[index[*siblings[i].name]].path + ")");
    }
  }
  for (const auto& s : siblings) {
    for (size_t j = 0; j < s.depends_on->size(); ++j) {
      const std::string& dep = (*s.depends_on)[j];
      const std::string at = item_path(s.path + ".dependsOn", j);
      if (dep == *s.name) {
        reject(at, "'" + dep + "' cannot depend on itself");
      }
      if (!index.contains(dep)) {
        reject(at, "'" + dep + "' is not a sibling of '" + *s.name + "'");
      }
    }
  }

  // Depth-first search; a grey node reached again closes a cycle.
  enum class Color { kWhite, kGrey, kBlack };
  std::vector<Color> color(siblings.size(), Color::kWhite);
  std::vector<size_t> stack;
  auto visit = [&](auto& self, size_t u) -> void {
    color[u] = Color::kGrey;
    stack.push_back(u);
    for (const auto& dep : *siblings[u].depends_on) {
      const size_t w = index.at(dep);
      if (color[w] == Color::kGrey) {
        const auto start = std::find(stack.begin(), stack.end(), w);
        std::string cycle;
        for (auto it = start; it != stack.end(); ++it) {
          cycle += *siblings[*it].name + " -> ";
        }
        cycle += *siblings[w].name;
        reject(siblings[w].path + ".dependsOn", "dependency cycle: " + cycle);
      }
      if (color[w] == Color::kWhite) {
        self(self, w);
      }
    }
    stack.pop_back();
    color[u] = Color::kBlack;
  };
  for (size_t i = 0; i < siblings.size(); ++i) {
    if (color[i] == Color::kWhite) {
      visit(visit, i);
    }
  }
}

struct Children {
  std::vector<GroupSpec> groups;
  std::vector<ClusterSpec> clusters;
};

GroupSpec read_group(const json& v, const std::string& path, int depth);

Children read_children(const Fields& f, int depth) {
  Children children;
  const std::string groups_path = f.path("groups");
  const std::string clusters_path = f.path("clusters");
  if (const json* x = f.find("groups")) {
    const json& list = read_list(*x, groups_path);
    if (!list.empty() && depth >= kMaxGroupDepth) {
      reject(groups_path, "groups nest more than " + std::to_string(kMaxGroupDepth) + " levels deep");
    }
    for (size_t i = 0; i < list.size(); ++i) {
      children.groups.push_back(read_group(list[i], item_path(groups_path, i), depth + 1));
    }
  }
  if (const json* x = f.find("clusters")) {
    const json& list = read_list(*x, clusters_path);
    for (size_t i = 0; i < list.size(); ++i) {
      children.clusters.push_back(read_cluster(list[i], item_path(clusters_path, i)));
    }
  }
  check_siblings(children.groups, children.clusters, groups_path, clusters_path);
  return children;
}

GroupSpec read_group(const json& v, const std::string& path, int depth) {
  const Fields f(v, path, {"name", "dependsOn", "groups", "clusters", "operational"});
  GroupSpec g;
  g.name = read_name(f.required("name"), f.path("name"));
  if (const json* x = f.find("dependsOn")) {
    g.depends_on = read_name_list(*x, f.path("dependsOn"));
  }
  if (const json* x = f.find("operational")) {
    g.operational = read_operational(*x, f.path("operational"));
  }
  Children children = read_children(f, depth);
  g.groups = std::move(children.groups);
  g.clusters = std::move(children.clusters);
  return g;
}

size_t count_clusters(const std::vector<GroupSpec>& groups, const std::vector<ClusterSpec>& clusters) {
  size_t n = clusters.size();
  for (const auto& g : groups) {
    n += count_clusters(g.groups, g.clusters);
  }
  return n;
}

ApplicationSpec read_application(const json& doc) {
  const Fields f(
      doc, "",
      {"application", "description", "updateOrder", "revisionHistoryLimit", "operational", "groups", "clusters"});
  ApplicationSpec app;
  app.name = read_name(f.required("application"), f.path("application"));
  if (const json* x = f.find("description")) {
    app.description = read_string(*x, f.path("description"));
  }
  app.update_order = f.enumeration("updateOrder", app.update_order, kUpdateOrders);
  app.revision_history_limit = f.int_at_least("revisionHistoryLimit", app.revision_history_limit, 1);
  if (const json* x = f.find("operational")) {
    app.operational = read_operational(*x, f.path("operational"));
  }
  Children children = read_children(f, 0);
  app.groups = std::move(children.groups);
  app.clusters = std::move(children.clusters);
  if (count_clusters(app.groups, app.clusters) == 0) {
    reject("clusters", "an application needs at least one cluster");
  }
  return app;
}

// ---------------------------------------------------------------------------
// Documents: YAML is brought to the same json value that JSON parses to, so
// one validator serves both.

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) {
      return false;  // truncated sequence
    }
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    constexpr std::uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinimum[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool all_digits(std::string_view s, int base) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [base](char c) {
    if (c >= '0' && c <= '9') {
      return c - '0' < base;
    }
    const char lower = static_cast<char>(c | 0x20);
    return base == 16 && lower >= 'a' && lower <= 'f';
  });
}

std::optional<double> parse_double(std::string_view s) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
  }
  double x = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (ptr != s.data() + s.size() || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves x alone when the value is too large or too small.
    const size_t exponent = s.find_first_of("eE");
    const bool tiny = exponent != std::string_view::npos && s.substr(exponent + 1).starts_with('-');
    x = tiny ? 0.0 : (s.starts_with('-') ? -HUGE_VAL : HUGE_VAL);
  }
  return x;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, the core schema's float.
bool is_core_float(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
    }
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    ++i;
  }
  const size_t whole = digits();
  size_t fraction = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  return i == s.size();
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
json resolve_plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return false;
  }
  const std::string_view v(s);
  const bool hex = v.starts_with("0x") && all_digits(v.substr(2), 16);
  const bool octal = v.starts_with("0o") && all_digits(v.substr(2), 8);
  if (hex || octal) {
    std::uint64_t u = 0;
    const auto [ptr, ec] = std::from_chars(v.data() + 2, v.data() + v.size(), u, hex ? 16 : 8);
    if (ec == std::errc()) {
      return u;
    }
    return s;  // too large for any integer: keep the text
  }
  const std::string_view unsigned_part = (v.starts_with('-') || v.starts_with('+')) ? v.substr(1) : v;
  if (all_digits(unsigned_part, 10)) {
    const std::string_view text = v.starts_with('+') ? v.substr(1) : v;
    std::int64_t i = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
    if (ec == std::errc()) {
      return i;
    }
    return parse_double(v).value_or(0.0);
  }
  if (is_core_float(v)) {
    if (const auto x = parse_double(v)) {
      return *x;
    }
  }
  const std::string_view magnitude = unsigned_part;
  if (magnitude == ".inf" || magnitude == ".Inf" || magnitude == ".INF") {
    return v.starts_with('-') ? -HUGE_VAL : HUGE_VAL;
  }
  if (v == ".nan" || v == ".NaN" || v == ".NAN") {
    return std::nan("");
  }
  return s;
}

std::string describe_mark(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return "";
  }
  return " at line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

class YamlToJson {
 public:
  explicit YamlToJson(size_t max_nodes) : max_nodes_(max_nodes) {}

  json convert(const YAML::Node& node, int depth) {
    if (++nodes_ > max_nodes_) {
      reject_syntax("invalid YAML: the document expands to more than " + std::to_string(max_nodes_) +
                    " nodes (aliases?)");
    }
    if (depth > kMaxYamlDepth) {
      reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": " + too_deep());
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(node);
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& item : node) {
          out.push_back(convert(item, depth + 1));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& entry : node) {
          const YAML::Node& key = entry.first;
          if (!key.IsScalar()) {
            reject_syntax("invalid YAML" + describe_mark(key.Mark()) + ": mapping keys must be plain strings");
          }
          const std::string& name = key.Scalar();
          check_text(name, key);
          if (out.contains(name)) {
            reject_syntax("invalid YAML" + describe_mark(key.Mark()) + ": duplicate key '" + name + "'");
          }
          out[name] = convert(entry.second, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  json scalar(const YAML::Node& node) {
    const std::string& text = node.Scalar();
    check_text(text, node);
    const std::string& tag = node.Tag();
    // yaml-cpp tags a quoted scalar "!" and a plain one "?".
    if (tag == "!" || tag == "tag:yaml.org,2002:str") {
      return text;
    }
    if (tag == "?" || tag.empty() || tag.starts_with("tag:yaml.org,2002:")) {
      return resolve_plain_scalar(text);
    }
    reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": unsupported tag '" + tag + "'");
  }

  static void check_text(const std::string& text, const YAML::Node& node) {
    if (!is_valid_utf8(text)) {
      reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": text is not valid UTF-8");
    }
  }

  size_t max_nodes_;
  size_t nodes_ = 0;
};

// Walks the document stream without building anything, to count the
// non-empty documents. It also guards LoadAll: yaml-cpp 0.7 reports a stray
// ',' at the top level as an endless run of empty documents that consume no
// input, so a document starting where the previous one did is an error.
class DocumentProbe : public YAML::EventHandler {
 public:
  Status run(std::string_view text) {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    std::optional<YAML::Mark> previous_start;
    while (parser.HandleNextDocument(*this)) {
      if (previous_start && previous_start->pos == start_.pos) {
        return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(start_) + ": unexpected character");
      }
      previous_start = start_;
      documents_ += has_content_ ? 1 : 0;
      has_content_ = false;
    }
    return {};
  }
  int documents() const { return documents_; }

  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { has_content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {
    has_content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_;
  bool has_content_ = false;
  int documents_ = 0;
};

Result<json> yaml_document(std::string_view text) {
  std::vector<YAML::Node> documents;
  try {
    DocumentProbe probe;
    if (Status s = probe.run(text); !s) {
      return std::unexpected(s.error());
    }
    if (probe.documents() > 1) {
      return fail(ErrorCode::kInvalid,
                  "invalid YAML: expected one document, found " + std::to_string(probe.documents()));
    }
    for (auto& document : YAML::LoadAll(std::string(text))) {
      if (!document.IsNull()) {
        documents.push_back(std::move(document));
      }
    }
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own limit (far beyond ours), whose message is "bad file".
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + too_deep());
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + e.msg);
  }
  if (documents.empty()) {
    return json(nullptr);
  }
  try {
    return YamlToJson(max_yaml_nodes(text.size())).convert(documents.front(), 0);
  } catch (const Rejection& r) {
    return std::unexpected(r.error);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + e.msg);
  }
}

Result<json> json_document(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return json(nullptr);
  }
  return parse_json_text(text);
}

// ---------------------------------------------------------------------------
// The normalized document.

json operational_json(const InitialOperational& o) {
  json j = json::object();
  if (!o.autoscaling.empty()) {
    j["autoscaling"] = o.autoscaling;
  }
  if (!o.autohealing.empty()) {
    j["autohealing"] = o.autohealing;
  }
  return j;
}

json int_or_percent_json(const IntOrPercent& v) { return v.percent ? json(format_int_or_percent(v)) : json(v.value); }

json string_map_json(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [key, value] : m) {
    j[key] = value;
  }
  return j;
}

json http_endpoint_json(const std::string& port, const std::string& path) {
  json j = json::object();
  j["port"] = port;
  j["path"] = path;
  return j;
}

json cluster_json(const ClusterSpec& c) {
  json j = json::object();
  j["name"] = c.name;
  j["dependsOn"] = c.depends_on;
  j["members"] = {{"min", c.members.min}, {"max", c.members.max}, {"desired", c.members.desired}};

  json artifact = json::object();
  artifact["version"] = c.artifact.version;
  artifact["command"] = c.artifact.command;
  artifact["env"] = string_map_json(c.artifact.env);
  artifact["workdir"] = c.artifact.workdir;
  j["artifact"] = std::move(artifact);

  j["ports"] = c.ports;

  if (c.health.kind != HealthCheck::Kind::kNone) {
    json health = json::object();
    switch (c.health.kind) {
      case HealthCheck::Kind::kHttp:
        health["http"] = http_endpoint_json(c.health.port, c.health.path);
        break;
      case HealthCheck::Kind::kTcp:
        health["tcp"] = json::object({{"port", c.health.port}});
        break;
      case HealthCheck::Kind::kExec:
        health["exec"] = c.health.exec;
        break;
      case HealthCheck::Kind::kNone:
        break;
    }
    health["intervalSeconds"] = c.health.interval_seconds;
    health["timeoutSeconds"] = c.health.timeout_seconds;
    health["unhealthyThreshold"] = c.health.unhealthy_threshold;
    j["health"] = std::move(health);
  }
  if (c.stats) {
    j["stats"] = json::object({{"http", http_endpoint_json(c.stats->port, c.stats->path)}});
  }

  json hooks = json::object();
  if (!c.hooks.update.empty()) {
    hooks["update"] = c.hooks.update;
  }
  if (!c.hooks.maintenance.empty()) {
    hooks["maintenance"] = c.hooks.maintenance;
  }
  if (!c.hooks.drain.empty()) {
    hooks["drain"] = c.hooks.drain;
  }
  j["hooks"] = std::move(hooks);

  const UpdatePolicy& u = c.update;
  json update = json::object();
  update["method"] = spelling_of(kMethods, u.method);
  update["strategy"] = spelling_of(kStrategies, u.strategy);
  update["maxUnavailable"] = int_or_percent_json(u.max_unavailable);
  update["maxSurge"] = int_or_percent_json(u.max_surge);
  update["canary"] = u.canary;
  update["minReadySeconds"] = u.min_ready_seconds;
  update["pauseBetweenBatchesSeconds"] = u.pause_between_batches_seconds;
  update["progressDeadlineSeconds"] = u.progress_deadline_seconds;
  update["maxFailures"] = u.max_failures;
  update["onFailure"] = spelling_of(kOnFailures, u.on_failure);
  j["update"] = std::move(update);

  json autoscaling = json::object();
  autoscaling["windowSeconds"] = c.autoscaling.window_seconds;
  autoscaling["scaleUpAbove"] = c.autoscaling.scale_up_above;
  autoscaling["scaleDownBelow"] = c.autoscaling.scale_down_below;
  autoscaling["cooldownSeconds"] = c.autoscaling.cooldown_seconds;
  j["autoscaling"] = std::move(autoscaling);

  j["operational"] = operational_json(c.operational);

  if (!c.load_balancer.haproxy_backend.empty()) {
    json lb = json::object();
    lb["haproxy"] = json::object({{"backend", c.load_balancer.haproxy_backend}});
    lb["drainTimeoutSeconds"] = c.load_balancer.drain_timeout_seconds;
    j["loadBalancer"] = std::move(lb);
  }

  json placement = json::object();
  placement["hostLabels"] = string_map_json(c.placement.host_labels);
  placement["slots"] = c.placement.slots;
  j["placement"] = std::move(placement);
  return j;
}

// A group's own fields, without its children.
json group_fields_json(const GroupSpec& g) {
  json j = json::object();
  j["name"] = g.name;
  j["dependsOn"] = g.depends_on;
  j["operational"] = operational_json(g.operational);
  return j;
}

json group_json(const GroupSpec& g) {
  json j = group_fields_json(g);
  j["groups"] = json::array();
  for (const auto& sub : g.groups) {
    j["groups"].push_back(group_json(sub));
  }
  j["clusters"] = json::array();
  for (const auto& c : g.clusters) {
    j["clusters"].push_back(cluster_json(c));
  }
  return j;
}

// The application's own fields, without its groups and clusters.
json application_fields_json(const ApplicationSpec& spec) {
  json j = json::object();
  j["application"] = spec.name;
  j["description"] = spec.description;
  j["updateOrder"] = spelling_of(kUpdateOrders, spec.update_order);
  j["revisionHistoryLimit"] = spec.revision_history_limit;
  j["operational"] = operational_json(spec.operational);
  return j;
}

// ---------------------------------------------------------------------------
// The diff summary.

void flatten_group(const GroupSpec& g, const std::string& parent, std::vector<NodeView>& out) {
  const std::string path = parent.empty() ? g.name : parent + "/" + g.name;
  out.push_back(NodeView{NodeView::Kind::kGroup, path, &g, nullptr, &g.operational});
  for (const auto& sub : g.groups) {
    flatten_group(sub, path, out);
  }
  for (const auto& c : g.clusters) {
    out.push_back(NodeView{NodeView::Kind::kCluster, path + "/" + c.name, nullptr, &c, &c.operational});
  }
}

json node_fields_json(const NodeView& node) {
  json j = node.cluster != nullptr ? cluster_json(*node.cluster) : group_fields_json(*node.group);
  j.erase("name");  // the path already says it
  return j;
}

// A scalar short enough to quote in a one-line summary, or nothing.
std::optional<std::string> short_scalar(const json& v) {
  if (v.is_structured()) {
    return std::nullopt;
  }
  if (!v.is_string()) {
    return v.dump();
  }
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty()) {
    return "\"\"";
  }
  const bool plain = s.size() <= 40 && std::none_of(s.begin(), s.end(), [](char c) {
                       return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                     });
  return plain ? std::optional<std::string>(s) : std::nullopt;
}

bool is_opaque(const std::string& dotted) {
  // Maps keyed by the user: a change is reported as a whole.
  return dotted == "artifact.env" || dotted == "placement.hostLabels";
}

// Appends one "PREFIX FIELD OLD -> NEW" entry per changed leaf.
void diff_values(const std::string& prefix, const std::string& dotted, const json* before, const json* after,
                 std::vector<std::string>& out) {
  if (before != nullptr && after != nullptr && *before == *after) {
    return;
  }
  if (before != nullptr && after != nullptr && before->is_object() && after->is_object() && !is_opaque(dotted)) {
    std::set<std::string> keys;
    for (auto it = before->begin(); it != before->end(); ++it) {
      keys.insert(it.key());
    }
    for (auto it = after->begin(); it != after->end(); ++it) {
      keys.insert(it.key());
    }
    for (const auto& key : keys) {
      const auto b = before->find(key);
      const auto a = after->find(key);
      diff_values(prefix, dotted.empty() ? key : dotted + "." + key, b == before->end() ? nullptr : &*b,
                  a == after->end() ? nullptr : &*a, out);
    }
    return;
  }
  if (before == nullptr && after->is_structured()) {
    out.push_back(prefix + dotted + " added");
    return;
  }
  if (after == nullptr && before->is_structured()) {
    out.push_back(prefix + dotted + " removed");
    return;
  }
  const std::optional<std::string> old_value = before == nullptr ? "unset" : short_scalar(*before);
  const std::optional<std::string> new_value = after == nullptr ? "unset" : short_scalar(*after);
  if (old_value && new_value) {
    out.push_back(prefix + dotted + " " + *old_value + " -> " + *new_value);
  } else {
    out.push_back(prefix + dotted + " changed");
  }
}

std::string plural(size_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

constexpr size_t kSummaryLimit = 200;

std::string join_summary(const std::vector<std::string>& items) {
  std::string out;
  size_t used = 0;
  for (; used < items.size(); ++used) {
    const size_t grown = out.size() + (out.empty() ? 0 : 2) + items[used].size();
    if (used > 0 && grown > kSummaryLimit) {
      break;
    }
    out += out.empty() ? "" : "; ";
    out += items[used];
  }
  if (used < items.size()) {
    out += "; \u2026 (" + std::to_string(items.size() - used) + " more)";
  }
  return out;
}

}  // namespace

Result<json> parse_json_text(std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  auto watch_keys = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) {
          open_objects.pop_back();
        }
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second && !duplicate) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    json doc = json::parse(text, watch_keys);
    if (duplicate) {
      return fail(ErrorCode::kInvalid, "invalid JSON: duplicate key '" + *duplicate + "'");
    }
    return doc;
  } catch (const json::exception& e) {
    // what() reads "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string_view what = e.what();
    if (const auto bracket = what.find("] "); what.starts_with('[') && bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
    return fail(ErrorCode::kInvalid, "invalid JSON: " + std::string(what));
  }
}

Result<ApplicationSpec> parse_manifest(std::string_view text, ManifestFormat format) {
  Result<json> doc = format == ManifestFormat::kYaml ? yaml_document(text) : json_document(text);
  if (!doc) {
    return std::unexpected(doc.error());
  }
  if (doc->is_null()) {
    return fail(ErrorCode::kUnprocessable, "the manifest is empty");
  }
  if (!doc->is_object()) {
    return fail(ErrorCode::kUnprocessable, "the manifest must be a mapping, got " + type_name(*doc));
  }
  try {
    return read_application(*doc);
  } catch (const Rejection& r) {
    return std::unexpected(r.error);
  }
}

nlohmann::json to_json(const ApplicationSpec& spec) {
  json j = application_fields_json(spec);
  j["groups"] = json::array();
  for (const auto& g : spec.groups) {
    j["groups"].push_back(group_json(g));
  }
  j["clusters"] = json::array();
  for (const auto& c : spec.clusters) {
    j["clusters"].push_back(cluster_json(c));
  }
  return j;
}

std::vector<NodeView> flatten(const ApplicationSpec& spec) {
  std::vector<NodeView> out;
  out.push_back(NodeView{NodeView::Kind::kApplication, "", nullptr, nullptr, &spec.operational});
  for (const auto& g : spec.groups) {
    flatten_group(g, "", out);
  }
  for (const auto& c : spec.clusters) {
    out.push_back(NodeView{NodeView::Kind::kCluster, c.name, nullptr, &c, &c.operational});
  }
  return out;
}

std::string diff_summary(const ApplicationSpec* from, const ApplicationSpec& to) {
  const std::vector<NodeView> after = flatten(to);
  if (from == nullptr) {
    const auto groups = static_cast<size_t>(
        std::count_if(after.begin(), after.end(), [](const NodeView& n) { return n.kind == NodeView::Kind::kGroup; }));
    const auto clusters = static_cast<size_t>(std::count_if(
        after.begin(), after.end(), [](const NodeView& n) { return n.kind == NodeView::Kind::kCluster; }));
    return "created with " + plural(clusters, "cluster") + (groups > 0 ? " in " + plural(groups, "group") : "");
  }

  std::vector<std::string> items;
  const json before_app = application_fields_json(*from);
  const json after_app = application_fields_json(to);
  diff_values("", "", &before_app, &after_app, items);

  const std::vector<NodeView> before = flatten(*from);
  auto index = [](const std::vector<NodeView>& nodes) {
    std::map<std::string, const NodeView*> by_path;
    for (const auto& n : nodes) {
      if (n.kind != NodeView::Kind::kApplication) {
        by_path.emplace(n.path, &n);
      }
    }
    return by_path;
  };
  const auto before_by_path = index(before);
  const auto after_by_path = index(after);
  auto counterpart = [](const std::map<std::string, const NodeView*>& other, const NodeView& n) -> const NodeView* {
    const auto it = other.find(n.path);
    return it != other.end() && it->second->kind == n.kind ? it->second : nullptr;
  };
  // An added or removed group stands for everything below it.
  auto below = [](const std::string& path, const std::string& root) {
    return !root.empty() && path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/';
  };

  std::string added_root;
  for (const auto& n : after) {
    if (n.kind == NodeView::Kind::kApplication || below(n.path, added_root)) {
      continue;
    }
    const NodeView* old = counterpart(before_by_path, n);
    if (old == nullptr) {
      items.push_back("+" + std::string(to_string(n.kind)) + " " + n.path);
      added_root = n.kind == NodeView::Kind::kGroup ? n.path : std::string();
      continue;
    }
    const json old_fields = node_fields_json(*old);
    const json new_fields = node_fields_json(n);
    diff_values(n.path + ": ", "", &old_fields, &new_fields, items);
  }
  std::string removed_root;
  for (const auto& n : before) {
    if (n.kind == NodeView::Kind::kApplication || below(n.path, removed_root)) {
      continue;
    }
    if (counterpart(after_by_path, n) == nullptr) {
      items.push_back("-" + std::string(to_string(n.kind)) + " " + n.path);
      removed_root = n.kind == NodeView::Kind::kGroup ? n.path : std::string();
    }
  }
  // Same nodes, same fields, different manifest order: still a different
  // revision, and an empty summary would claim otherwise.
  if (items.empty() && to_json(*from) != to_json(to)) {
    items.emplace_back("order of groups and clusters changed");
  }
  return join_summary(items);
}

std::string_view to_string(NodeView::Kind kind) {
  switch (kind) {
    case NodeView::Kind::kApplication:
      return "application";
    case NodeView::Kind::kGroup:
      return "group";
    case NodeView::Kind::kCluster:
      return "cluster";
  }
  return "unknown";
}

bool same_member_template(const ClusterSpec& a, const ClusterSpec& b) {
  const json ja = cluster_json(a);
  const json jb = cluster_json(b);
  for (const char* key : {"artifact", "ports", "health", "stats", "hooks", "placement"}) {
    if (ja.value(key, json()) != jb.value(key, json())) {
      return false;
    }
  }
  return true;
}

int resolve_max_surge(const UpdatePolicy& policy, int desired) { return resolve(policy.max_surge, desired, true); }

int resolve_max_unavailable(const UpdatePolicy& policy, int desired) {
  return resolve(policy.max_unavailable, desired, false);
}

}  // namespace tranche
