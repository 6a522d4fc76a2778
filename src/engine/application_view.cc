// GET /applications/{app}: the tree with its effective states and recent
// events. It reads no member: the members' counts come from the fleet's
// cluster index (Fleet::cluster_counts, added by the API), and the members
// themselves from GET /members, a page at a time. So its cost is the
// application's nodes and explicit values, never its members.

#include <algorithm>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/application_service.h"
#include "engine/operational_state.h"

namespace tranche {

namespace {

using nlohmann::json;

// How many of the application's newest events the view carries.
constexpr size_t kRecentEvents = 10;

}  // namespace

Result<json> ApplicationService::describe_application(const std::string& app_name) const {
  auto current = load(app_name);
  if (!current) {
    return std::unexpected(current.error());
  }
  auto values = store_.list_operational_values(app_name);
  if (!values) {
    return std::unexpected(values.error());
  }
  const auto nodes = flatten(*current->spec);
  std::vector<NodeRef> refs;
  refs.reserve(nodes.size());
  for (const auto& node : nodes) {
    refs.push_back({node.path, std::string(to_string(node.kind))});
  }
  const auto resolved = resolve_all(*values, refs);
  json tree = json::array();
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& node = nodes[i];
    json j = to_json(resolved[i]);
    j["name"] = node.path.empty() ? app_name : split_path(node.path).back();
    if (node.group) {
      j["dependsOn"] = node.group->depends_on;
    }
    if (node.cluster) {
      const auto& c = *node.cluster;
      j["dependsOn"] = c.depends_on;
      j["version"] = c.artifact.version;
      j["members"] = {{"min", c.members.min}, {"max", c.members.max}, {"desired", c.members.desired}};
    }
    tree.push_back(std::move(j));
  }
  // The newest few through the (app, seq) index, read backwards: not the
  // application's history.
  auto events = store_.list_events(EventQuery{.app = app_name, .limit = kRecentEvents, .newest_first = true});
  if (!events) {
    return std::unexpected(events.error());
  }
  json recent = json::array();
  for (auto e = events->rbegin(); e != events->rend(); ++e) {  // oldest first, as the log reads
    recent.push_back({{"seq", e->seq},
                      {"time", format_rfc3339(e->time)},
                      {"type", e->type},
                      {"path", e->path},
                      {"message", e->message}});
  }
  auto migration = migration_view(app_name);
  if (!migration) {
    return std::unexpected(migration.error());
  }
  return json{{"name", app_name},
              {"description", current->spec->description},
              {"migration", *migration},
              {"revision", current->app.current_revision},
              {"deployed", current->app.deployed},
              {"createdAt", format_rfc3339(current->app.created_at)},
              {"updatedAt", format_rfc3339(current->app.updated_at)},
              {"tree", std::move(tree)},
              {"recentEvents", std::move(recent)},
              {"spec", to_json(*current->spec)}};
}

}  // namespace tranche
