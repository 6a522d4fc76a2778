#pragma once
// Part of the fleet (fleet.h): what its view holds for each host and each
// member, and each cluster's roster. Plain data, kept by Fleet under its
// lock.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "engine/fleet/agent_link.h"
#include "engine/fleet/cluster_load.h"
#include "engine/fleet/member_state.h"
#include "protocol/messages.h"
#include "store/store.h"

namespace tranche::fleet {

struct HostEntry {
  HostRecord record;
  std::shared_ptr<AgentLink> link;
  std::string address;        // its agent's, as last connected
  TimePoint last_seen{};      // as of the last message the fleet handled (HostDeadlines knows better)
  std::string agent_version;  // as its agent last said (memory only: it says again on reconnecting)
  int protocol = 0;           // agreed with its agent on its last welcome; 0: none since start
  std::string refused;        // why its agent was last refused; empty once one is welcomed
};

struct MemberEntry;
// A cluster's members in ordinal order (the order rollouts and maintenance
// replace members in), each with what the pass's walks decide by, side by
// side: a pass over a 100,000-member cluster reads a few MB in sequence
// instead of visiting 100,000 entries scattered over the heap, which cost
// ~10 ms in cache misses per walk, several walks a pass. Kept by the fleet's
// remember(), forget() and note_change(); a member that left leaves a hole
// (member null) until roster_of() next closes it.
struct RosterEntry {
  MemberEntry* member = nullptr;
  std::string_view id;  // member->record.id
  MemberState state = MemberState::kCreated;
  int64_t revision = 0;
  TimePoint since{};  // member->record.updated_at: when it entered `state`
};
// Members are appended in ordinal order: the store lists them so, and a new
// member's ordinal is its cluster's highest yet.
struct Roster {
  std::vector<RosterEntry> entries;
  size_t holes = 0;
};

struct MemberEntry {
  MemberRecord record;
  MemberState state = MemberState::kCreated;
  bool healthy = false;
  std::optional<TimePoint> healthy_since;
  std::optional<protocol::MemberStats> stats;
  bool command_sent = false;    // what its current state calls for went out on the current link, or nothing is owed
  uint64_t generation = 0;      // of the group its latest change was staged in
  ClusterLoad* load = nullptr;  // its cluster's, once it reported one (the fleet never erases a load)
  // It was Active when its host fell silent: if the host comes back still
  // running it, it is Active again at once (a blip must not cost a member
  // its availability, or a rollout would retire it without charging its
  // maxUnavailable).
  bool active_when_lost = false;
  // Being replaced (maintenance replace, a replace rollout): the member
  // created to take its place, from then until it leaves (pair_successors).
  std::string successor;
  // Its place in its cluster's roster (note_change()).
  Roster* roster = nullptr;
  size_t slot = 0;

  // In its maintenance step with the command at its agent: only the agent's
  // answer (which queues its cluster) moves it on.
  bool in_maintenance_at_agent() const { return state == MemberState::kMaintenance && command_sent; }
};

}  // namespace tranche::fleet
