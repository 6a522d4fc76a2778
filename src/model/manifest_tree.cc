// The tree of groups and clusters: reading it, with the rules between
// siblings (one namespace, dependencies without cycles) and the nesting
// limit, and flattening it into the NodeViews the rest of Tranche walks.
#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/manifest.h"
#include "model/manifest_readers.h"

namespace tranche::manifest_detail {

namespace {

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

}  // namespace

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

}  // namespace tranche::manifest_detail

namespace tranche {

namespace {

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

}  // namespace

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

}  // namespace tranche
