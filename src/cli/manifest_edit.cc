#include "cli/manifest_edit.h"

#include "common/names.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// The element of `node[list]` named `name`, or nullptr.
json* child(json& node, const char* list, const std::string& name) {
  const auto it = node.find(list);
  if (it == node.end() || !it->is_array()) {
    return nullptr;
  }
  for (auto& c : *it) {
    if (c.is_object() && c.value("name", "") == name) {
      return &c;
    }
  }
  return nullptr;
}

// "web, backend/db": every cluster path below `node`, depth first.
void cluster_paths(const json& node, const std::string& prefix, std::string& out) {
  for (const char* list : {"groups", "clusters"}) {
    const auto it = node.find(list);
    if (it == node.end() || !it->is_array()) {
      continue;
    }
    for (const auto& c : *it) {
      if (!c.is_object()) {
        continue;
      }
      const std::string path = prefix + c.value("name", "?");
      if (std::string(list) == "groups") {
        cluster_paths(c, path + "/", out);
      } else {
        out += (out.empty() ? "" : ", ") + path;
      }
    }
  }
}

Error no_such_cluster(const json& manifest, const std::string& app, const std::string& full) {
  std::string known;
  cluster_paths(manifest, "", known);
  return Error{ErrorCode::kNotFound,
               "application " + app + " has no cluster " + full +
                   " (its clusters: " + (known.empty() ? std::string("none") : known) + ")",
               "PATH"};
}

// The cluster at `cluster_path` in `manifest`, or why there is none.
Result<json*> find_cluster(json& manifest, std::string_view cluster_path) {
  const std::string app = manifest.is_object() ? manifest.value("application", "") : "";
  const std::string full = app + "/" + std::string(cluster_path);
  const auto parts = split_path(cluster_path);
  if (parts.empty()) {
    return fail(ErrorCode::kInvalid, "give a cluster path like " + app + "/web", "PATH");
  }
  json* node = &manifest;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    node = child(*node, "groups", parts[i]);
    if (node == nullptr) {
      return std::unexpected(no_such_cluster(manifest, app, full));
    }
  }
  json* cluster = child(*node, "clusters", parts.back());
  if (cluster == nullptr) {
    if (child(*node, "groups", parts.back()) != nullptr) {
      return fail(ErrorCode::kInvalid, full + " is a group, not a cluster: give the path of one of its clusters",
                  "PATH");
    }
    return std::unexpected(no_such_cluster(manifest, app, full));
  }
  return cluster;
}

}  // namespace

Result<json> with_cluster_version(json manifest, std::string_view cluster_path, const std::string& version) {
  auto cluster = find_cluster(manifest, cluster_path);
  if (!cluster) {
    return std::unexpected(cluster.error());
  }
  json& artifact = (**cluster)["artifact"];
  if (!artifact.is_object() && !artifact.is_null()) {
    return fail(ErrorCode::kInvalid,
                "the manifest's artifact of " + manifest.value("application", "") + "/" + std::string(cluster_path) +
                    " is not an object",
                "PATH");
  }
  artifact["version"] = version;
  return manifest;
}

Result<json> with_cluster_desired(json manifest, std::string_view cluster_path, int64_t desired) {
  auto cluster = find_cluster(manifest, cluster_path);
  if (!cluster) {
    return std::unexpected(cluster.error());
  }
  const std::string full = manifest.value("application", "") + "/" + std::string(cluster_path);
  json& members = (**cluster)["members"];
  if (!members.is_object() || !members["min"].is_number_integer() || !members["max"].is_number_integer()) {
    return fail(ErrorCode::kInvalid, "the manifest of " + full + " has no members.min and members.max", "PATH");
  }
  const int64_t min = members["min"].get<int64_t>();
  const int64_t max = members["max"].get<int64_t>();
  if (desired < min || desired > max) {
    return fail(ErrorCode::kInvalid,
                std::to_string(desired) + " members is outside the bounds of " + full + ": min " +
                    std::to_string(min) + ", max " + std::to_string(max) +
                    " (change the bounds in the manifest and apply it to go beyond them)",
                "--members");
  }
  members["desired"] = desired;
  return manifest;
}

}  // namespace tranche::cli
