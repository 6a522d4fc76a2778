#include "lb/load_balancer.h"

#include <algorithm>
#include <vector>

#include "common/names.h"

namespace tranche::lb {

std::string to_string(const ServerAddress& address) { return address.ip + ":" + std::to_string(address.port); }

std::string_view to_string(AdminState state) {
  switch (state) {
    case AdminState::kReady:
      return "ready";
    case AdminState::kDrain:
      return "drain";
    case AdminState::kMaintenance:
      return "maint";
  }
  return "maint";
}

std::string_view to_string(ServerState state) {
  switch (state) {
    case ServerState::kUp:
      return "up";
    case ServerState::kDown:
      return "down";
    case ServerState::kDrain:
      return "drain";
    case ServerState::kMaintenance:
      return "maintenance";
  }
  return "maintenance";
}

Result<std::string> server_name_for(std::string_view member_id) {
  const auto invalid = [&] {
    return fail(ErrorCode::kInvalid,
                "'" + std::string(member_id) + "' is not a member id (APP/.../CLUSTER/N, names of a-z, 0-9 and '-')");
  };
  // Split by hand: split_path skips empty parts, and "shop//3" is no member id.
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t slash = member_id.find('/', start);
    parts.push_back(member_id.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) {
      break;
    }
    start = slash + 1;
  }
  if (parts.size() < 3) {
    return invalid();
  }
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!is_valid_name(parts[i])) {
      return invalid();
    }
  }
  const std::string_view ordinal = parts.back();
  if (ordinal.empty() || !std::ranges::all_of(ordinal, [](char c) { return c >= '0' && c <= '9'; })) {
    return invalid();
  }
  std::string name(member_id);
  std::ranges::replace(name, '/', '_');
  return name;
}

bool is_member_server_name(std::string_view name) {
  std::string id(name);
  std::ranges::replace(id, '_', '/');
  return server_name_for(id).has_value();
}

}  // namespace tranche::lb
