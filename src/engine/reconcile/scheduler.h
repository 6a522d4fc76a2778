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

// Whether the host is Ready and carries every label the placement asks for.
bool eligible(const HostCapacity& host, const Placement& placement);

// Fewest members of this cluster first, then most free slots, then host id,
// so the same inputs always give the same answer.
PlacementDecision place(const std::vector<HostCapacity>& hosts, const Placement& placement);

// The same choice among `candidates` (positions in `hosts` that are
// schedulable and carry the cluster's labels), where `in_cluster[i]` counts
// the cluster's members on hosts[i]: for a caller placing many members
// against one view of the hosts, without copying it or matching labels
// again for each. nullopt: none has `slots` free (place() says why).
std::optional<size_t> pick(const std::vector<HostCapacity>& hosts, const std::vector<size_t>& candidates,
                           const std::vector<int>& in_cluster, int64_t slots);

}  // namespace tranche
