#pragma once
// The member lifecycle of model.md as one table. Every change of a member's
// major state goes through can_transition(); the fleet persists it (and its
// MemberStateChanged event) before acting on it.

#include <optional>
#include <string_view>

namespace tranche {

enum class MemberState {
  kCreated,
  kStarting,
  kActive,
  kUpdating,
  kMaintenance,
  kDraining,
  kStopping,
  kTerminated,
  kFailed,
  kUnreachable,
};

std::string_view to_string(MemberState state);
std::optional<MemberState> member_state_from_string(std::string_view name);

bool can_transition(MemberState from, MemberState to);

// Counts toward a cluster's members: placed or running and not on its way out.
bool is_live(MemberState state);
// Has a process, or may have one, on its host.
bool may_run(MemberState state);

}  // namespace tranche
