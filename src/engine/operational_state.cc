#include "engine/operational_state.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "store/store.h"

namespace tranche {

std::string_view default_value(Setting setting) {
  switch (setting) {
    case Setting::kAutoscaling:
    case Setting::kAutohealing:
      return "on";
    case Setting::kMaintenance:
      return "off";
  }
  return "off";
}

bool is_allowed_value(Setting setting, std::string_view value) {
  switch (setting) {
    case Setting::kAutoscaling:
    case Setting::kAutohealing:
      return value == "on" || value == "off";
    case Setting::kMaintenance:
      return value == "off" || value == "restart" || value == "replace";
  }
  return false;
}

const SettingView& NodeOperationalView::get(Setting s) const {
  switch (s) {
    case Setting::kAutoscaling:
      return autoscaling;
    case Setting::kAutohealing:
      return autohealing;
    case Setting::kMaintenance:
      return maintenance;
  }
  return autoscaling;
}

std::optional<std::string> parent_path(const std::string& path) {
  if (path.empty()) {
    return std::nullopt;
  }
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return std::string();
  }
  return path.substr(0, slash);
}

const OperationalValueRecord* find_value(const std::vector<OperationalValueRecord>& values, const std::string& path,
                                         Setting setting) {
  auto it =
      std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.path == path && v.setting == setting; });
  return it == values.end() ? nullptr : &*it;
}

bool is_below(const std::string& path, const std::string& ancestor) {
  if (ancestor.empty()) {
    return !path.empty();
  }
  return path.size() > ancestor.size() && path.starts_with(ancestor) && path[ancestor.size()] == '/';
}

namespace {
const OperationalValueRecord* find_explicit(const std::vector<OperationalValueRecord>& values, const std::string& path,
                                            Setting setting) {
  for (const auto& v : values) {
    if (v.setting == setting && v.path == path) {
      return &v;
    }
  }
  return nullptr;
}
}  // namespace

// The resolution of model.md's inheritance, over any way of finding a
// node's explicit value.
template <typename FindExplicit>
SettingView resolve_with(const FindExplicit& find_explicit, const std::string& path, Setting setting) {
  SettingView view;
  if (const auto* own = find_explicit(path, setting)) {
    view.explicit_value = own->value;
    view.expires_at = own->expires_at;
  }
  std::optional<std::string> at = path;
  while (at) {
    if (const auto* v = find_explicit(*at, setting)) {
      view.effective = v->value;
      view.source = *at;
      view.all_at_once = v->all_at_once;
      return view;
    }
    at = parent_path(*at);
  }
  view.effective = std::string(default_value(setting));
  return view;
}

SettingView resolve(const std::vector<OperationalValueRecord>& values, const std::string& path, Setting setting) {
  return resolve_with([&](const std::string& at, Setting s) { return find_explicit(values, at, s); }, path, setting);
}

std::vector<NodeOperationalView> resolve_all(const std::vector<OperationalValueRecord>& values,
                                             const std::vector<NodeRef>& nodes) {
  // Values indexed once: a maintenance marks every member, so a scan of the
  // values per node would cost nodes x members.
  std::unordered_map<std::string, std::array<const OperationalValueRecord*, std::size(kAllSettings)>> by_path;
  for (const auto& v : values) {
    auto& slot = by_path[v.path][static_cast<size_t>(v.setting)];
    if (slot == nullptr) {  // the first, as resolve() finds it
      slot = &v;
    }
  }
  const auto find = [&](const std::string& at, Setting s) -> const OperationalValueRecord* {
    auto it = by_path.find(at);
    return it == by_path.end() ? nullptr : it->second[static_cast<size_t>(s)];
  };
  std::vector<NodeOperationalView> out;
  out.reserve(nodes.size());
  for (const auto& node : nodes) {
    out.push_back(NodeOperationalView{node.path, node.kind, resolve_with(find, node.path, Setting::kAutoscaling),
                                      resolve_with(find, node.path, Setting::kAutohealing),
                                      resolve_with(find, node.path, Setting::kMaintenance)});
  }
  return out;
}

nlohmann::json to_json(const NodeOperationalView& view) {
  nlohmann::json out = {{"path", view.path}, {"kind", view.kind}};
  for (Setting s : kAllSettings) {
    const SettingView& v = view.get(s);
    nlohmann::json j = {{"effective", v.effective}};
    j["explicit"] = v.explicit_value ? nlohmann::json(*v.explicit_value) : nlohmann::json(nullptr);
    j["source"] = v.source ? nlohmann::json(*v.source) : nlohmann::json("default");
    if (v.expires_at) {
      j["expiresAt"] = format_rfc3339(*v.expires_at);
    }
    if (v.all_at_once) {
      j["allAtOnce"] = true;
    }
    out[std::string(to_string(s))] = std::move(j);
  }
  return out;
}

}  // namespace tranche
