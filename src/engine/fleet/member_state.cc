#include "engine/fleet/member_state.h"

#include <array>
#include <initializer_list>

namespace tranche {

namespace {
using S = MemberState;

struct Row {
  S from;
  std::initializer_list<S> to;
};

// Why each edge exists:
//  Created     -> Starting (start sent), Failed (start refused), Terminated (cancelled before start)
//  Starting    -> Active (healthy for minReadySeconds), Failed (exited, unhealthy, refused),
//                 Stopping (no longer wanted), Unreachable (host lost)
//  Active      -> Updating, Maintenance, Draining (later issues), Stopping, Failed, Unreachable
//  Updating    -> Starting (restarted on the new template), Failed, Stopping, Unreachable
//  Maintenance -> Starting (resumed), Failed, Stopping, Unreachable
//  Draining    -> Stopping, Failed, Unreachable
//  Stopping    -> Terminated (stopped), Unreachable (host lost while stopping)
//  Failed      -> Stopping (cleanup on the host), Terminated (nothing left to stop)
//  Unreachable -> Starting / Active (host back, member still running), Stopping (host back, member
//                 replaced meanwhile), Failed (host back without it), Terminated (host gone for good)
const Row kTable[] = {
    {S::kCreated, {S::kStarting, S::kFailed, S::kTerminated}},
    {S::kStarting, {S::kActive, S::kFailed, S::kStopping, S::kUnreachable}},
    {S::kActive, {S::kUpdating, S::kMaintenance, S::kDraining, S::kStopping, S::kFailed, S::kUnreachable}},
    {S::kUpdating, {S::kStarting, S::kFailed, S::kStopping, S::kUnreachable}},
    {S::kMaintenance, {S::kStarting, S::kFailed, S::kStopping, S::kUnreachable}},
    {S::kDraining, {S::kStopping, S::kFailed, S::kUnreachable}},
    {S::kStopping, {S::kTerminated, S::kUnreachable}},
    {S::kFailed, {S::kStopping, S::kTerminated}},
    {S::kUnreachable, {S::kStarting, S::kActive, S::kStopping, S::kFailed, S::kTerminated}},
    {S::kTerminated, {}},
};

constexpr std::array<std::pair<S, std::string_view>, 10> kNames = {{
    {S::kCreated, "Created"},
    {S::kStarting, "Starting"},
    {S::kActive, "Active"},
    {S::kUpdating, "Updating"},
    {S::kMaintenance, "Maintenance"},
    {S::kDraining, "Draining"},
    {S::kStopping, "Stopping"},
    {S::kTerminated, "Terminated"},
    {S::kFailed, "Failed"},
    {S::kUnreachable, "Unreachable"},
}};
}  // namespace

std::string_view to_string(MemberState state) {
  for (const auto& [s, name] : kNames) {
    if (s == state) {
      return name;
    }
  }
  return "Unknown";
}

std::optional<MemberState> member_state_from_string(std::string_view name) {
  for (const auto& [s, n] : kNames) {
    if (n == name) {
      return s;
    }
  }
  return std::nullopt;
}

bool can_transition(MemberState from, MemberState to) {
  for (const auto& row : kTable) {
    if (row.from == from) {
      for (S s : row.to) {
        if (s == to) {
          return true;
        }
      }
      return false;
    }
  }
  return false;
}

bool is_live(MemberState state) {
  switch (state) {
    case S::kCreated:
    case S::kStarting:
    case S::kActive:
    case S::kUpdating:
    case S::kMaintenance:
      return true;
    case S::kDraining:
    case S::kStopping:
    case S::kTerminated:
    case S::kFailed:
    case S::kUnreachable:
      return false;
  }
  return false;
}

bool may_run(MemberState state) { return state != S::kTerminated && state != S::kCreated; }

}  // namespace tranche
