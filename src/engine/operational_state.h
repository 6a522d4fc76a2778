#pragma once
// Explicit and effective operational values over an application tree
// (model.md, "Operational state"). Pure functions over records, so the
// inheritance rules are tested without a store.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "model/manifest.h"
#include "store/records.h"

namespace tranche {

inline constexpr Setting kAllSettings[] = {Setting::kAutoscaling, Setting::kAutohealing, Setting::kMaintenance};

std::string_view default_value(Setting setting);
bool is_allowed_value(Setting setting, std::string_view value);

struct SettingView {
  std::optional<std::string> explicit_value;
  std::string effective;
  // Path of the node the effective value comes from; nullopt: the default.
  std::optional<std::string> source;
  std::optional<TimePoint> expires_at;  // of the explicit value
  bool all_at_once = false;             // of the effective value (maintenance only)
};

struct NodeOperationalView {
  std::string path;
  std::string kind;  // application | group | cluster | member
  SettingView autoscaling;
  SettingView autohealing;
  SettingView maintenance;

  const SettingView& get(Setting s) const;
};

// Parent of "a/b/c" is "a/b"; of "a" is ""; the application ("") has none.
std::optional<std::string> parent_path(const std::string& path);
// True when `path` lies strictly below `ancestor` ("" is above everything).
bool is_below(const std::string& path, const std::string& ancestor);

// The explicit value of `setting` set on `path` itself, or null.
const OperationalValueRecord* find_value(const std::vector<OperationalValueRecord>& values, const std::string& path,
                                         Setting setting);

// The value in force at `path`: the nearest explicit value on the way up.
SettingView resolve(const std::vector<OperationalValueRecord>& values, const std::string& path, Setting setting);

// Views of `paths` (with their kinds), in the given order.
struct NodeRef {
  std::string path;
  std::string kind;
};
std::vector<NodeOperationalView> resolve_all(const std::vector<OperationalValueRecord>& values,
                                             const std::vector<NodeRef>& nodes);

nlohmann::json to_json(const NodeOperationalView& view);

}  // namespace tranche
