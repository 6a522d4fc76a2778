#include "engine/maintenance_marks.h"

#include "engine/events.h"

namespace tranche {

std::string MaintenanceMarks::of(const MemberRecord& member) {
  auto app = by_app_.find(member.app);
  if (app == by_app_.end()) {
    std::unordered_map<std::string, std::string> values;
    if (auto listed = store_.list_operational_values(member.app); listed) {
      for (const auto& v : *listed) {
        if (v.setting == Setting::kMaintenance) {
          values.emplace(v.path, v.value);
        }
      }
    }  // unreadable: shown as off, the default, rather than failing the listing
    app = by_app_.emplace(member.app, std::move(values)).first;
  }
  auto it = app->second.find(member_path(member));
  return it == app->second.end() ? "off" : it->second;
}

}  // namespace tranche
