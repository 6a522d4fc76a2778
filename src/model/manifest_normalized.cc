// The normalized document (to_json): every field present, defaults filled in,
// keys in a fixed order; and the member template compared on it.
#include "model/manifest_normalized.h"

#include <map>
#include <string>
#include <utility>

#include "model/manifest.h"
#include "model/manifest_readers.h"

namespace tranche::manifest_detail {

namespace {

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

}  // namespace

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

}  // namespace tranche::manifest_detail

namespace tranche {

namespace {

using manifest_detail::application_fields_json;
using manifest_detail::cluster_json;
using manifest_detail::group_fields_json;
using manifest_detail::json;

// A node's children, groups then clusters, as an application and a group
// both hold them.
template <class Node>
json with_children(json j, const Node& node) {
  j["groups"] = json::array();
  for (const auto& g : node.groups) {
    j["groups"].push_back(with_children(group_fields_json(g), g));
  }
  j["clusters"] = json::array();
  for (const auto& c : node.clusters) {
    j["clusters"].push_back(cluster_json(c));
  }
  return j;
}

}  // namespace

nlohmann::json to_json(const ApplicationSpec& spec) { return with_children(application_fields_json(spec), spec); }

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

}  // namespace tranche
