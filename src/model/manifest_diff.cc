// The one-line summary of what changed between two revisions: the
// application's and each node's normalized fields compared leaf by leaf, an
// added or removed group named once for everything below it.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/manifest.h"
#include "model/manifest_normalized.h"

namespace tranche {

namespace {

using manifest_detail::application_fields_json;
using manifest_detail::cluster_json;
using manifest_detail::group_fields_json;
using nlohmann::json;

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

  // "+cluster web/api". Appended, not "+" + std::string(...): g++ 12 takes
  // that for an overlapping copy in Release builds (-Wrestrict).
  auto node_item = [](char sign, const NodeView& n) {
    std::string item(1, sign);
    item.append(to_string(n.kind)).append(" ").append(n.path);
    return item;
  };
  std::string added_root;
  for (const auto& n : after) {
    if (n.kind == NodeView::Kind::kApplication || below(n.path, added_root)) {
      continue;
    }
    const NodeView* old = counterpart(before_by_path, n);
    if (old == nullptr) {
      items.push_back(node_item('+', n));
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
      items.push_back(node_item('-', n));
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

}  // namespace tranche
