// Reading one cluster of the manifest: its member counts, artifact, ports,
// health check, stats, hooks, update and autoscaling policies, load balancer
// and placement, each checked against the others (a health check's port must
// be declared, a rollout must be able to make progress).
#include <charconv>
#include <cstdint>
#include <optional>
#include <utility>

#include "model/manifest.h"
#include "model/manifest_readers.h"

namespace tranche::manifest_detail {

namespace {

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

}  // namespace

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

}  // namespace tranche::manifest_detail

namespace tranche {

int resolve_max_surge(const UpdatePolicy& policy, int desired) {
  return manifest_detail::resolve(policy.max_surge, desired, true);
}

int resolve_max_unavailable(const UpdatePolicy& policy, int desired) {
  return manifest_detail::resolve(policy.max_unavailable, desired, false);
}

}  // namespace tranche
