#pragma once
// Building event records: the one shape every engine component publishes.

#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "store/records.h"

namespace tranche {

// `path` is the node's full resource path ("shop/backend/db"); `member` the
// member id when the event is about one.
inline EventRecord make_event(TimePoint now, std::string app, std::string path, std::string member, std::string type,
                              const nlohmann::json& from, const nlohmann::json& to, std::string message) {
  EventRecord e;
  e.time = now;
  e.app = std::move(app);
  e.path = std::move(path);
  e.member = std::move(member);
  e.type = std::move(type);
  e.from_json = from.dump();
  e.to_json = to.dump();
  e.message = std::move(message);
  return e;
}

// "shop" + "backend/db" -> "shop/backend/db"; "shop" + "" -> "shop".
inline std::string full_path(const std::string& app, const std::string& path) {
  return path.empty() ? app : app + "/" + path;
}

// A member's node path within its application: "shop/web/3" -> "web/3".
inline std::string member_path(const MemberRecord& m) { return m.id.substr(m.app.size() + 1); }

}  // namespace tranche
