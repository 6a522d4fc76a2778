// Names of the store's enums, as written in the database and the API; the
// interface's default group commit.

#include <utility>

#include "store/store.h"

namespace tranche {
namespace {

template <class Enum, size_t N>
std::optional<Enum> value_of(const std::pair<Enum, std::string_view> (&names)[N], std::string_view name) {
  for (const auto& [value, text] : names) {
    if (text == name) {
      return value;
    }
  }
  return std::nullopt;
}

template <class Enum, size_t N>
std::string_view name_of(const std::pair<Enum, std::string_view> (&names)[N], Enum value) {
  for (const auto& [candidate, text] : names) {
    if (candidate == value) {
      return text;
    }
  }
  return "unknown";
}

constexpr std::pair<Setting, std::string_view> kSettings[] = {
    {Setting::kAutoscaling, "autoscaling"},
    {Setting::kAutohealing, "autohealing"},
    {Setting::kMaintenance, "maintenance"},
};

constexpr std::pair<Role, std::string_view> kRoles[] = {
    {Role::kViewer, "viewer"},
    {Role::kOperator, "operator"},
    {Role::kAdmin, "admin"},
};

}  // namespace

std::string_view to_string(Setting setting) { return name_of(kSettings, setting); }
std::optional<Setting> setting_from_string(std::string_view name) { return value_of<Setting>(kSettings, name); }
std::string_view to_string(Role role) { return name_of(kRoles, role); }
std::optional<Role> role_from_string(std::string_view name) { return value_of<Role>(kRoles, name); }

}  // namespace tranche

namespace tranche {

std::vector<Result<CommitResult>> Store::commit_group(const std::vector<WriteBatch>& batches) {
  std::vector<Result<CommitResult>> results;
  results.reserve(batches.size());
  for (const WriteBatch& batch : batches) {
    results.push_back(commit(batch));
  }
  return results;
}

}  // namespace tranche
