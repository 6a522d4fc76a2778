#pragma once
// Placement (model.md, "Hosts"): a Ready host whose labels match the
// cluster's placement.hostLabels, with free slots, spreading a cluster's
// members across hosts.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/manifest.h"

namespace tranche {

struct HostCapacity {
  std::string id;
  bool schedulable = false;  // Ready and connected
  std::map<std::string, std::string> labels;
  int64_t slots = 0;
  int64_t used_slots = 0;
  int members_of_cluster = 0;
};

struct PlacementDecision {
  std::optional<std::string> host;
  std::string reason;  // why nothing fits, for the operator
};

// Fewest members of this cluster first, then most free slots, then host id,
// so the same inputs always give the same answer.
PlacementDecision place(const std::vector<HostCapacity>& hosts, const Placement& placement);

}  // namespace tranche
