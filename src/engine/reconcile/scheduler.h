#pragma once
// Placement (model.md, "Hosts"): a Ready host whose labels match the
// cluster's placement.hostLabels, with free slots, spreading a cluster's
// members across hosts.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
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

// The same choice, for a caller placing many members of one cluster against
// one view of the hosts (`hosts` in id order, `in_cluster[i]` the cluster's
// members on hosts[i]): the candidates (positions of the schedulable hosts
// with the cluster's labels) kept best first. A placement only ever makes a
// host worse (one more member, fewer free slots), so an entry is re-keyed
// when it reaches the top: a pick costs O(log candidates) amortized, not a
// scan of every candidate (10,000 hosts x 2,000 placements per pass).
class CandidateQueue {
 public:
  CandidateQueue(const std::vector<size_t>& candidates, const std::vector<HostCapacity>& hosts,
                 const std::vector<int>& in_cluster);
  // The best candidate with `slots` free, nullopt when none has (place()
  // says why). Between calls the caller records each placement in `hosts`
  // and `in_cluster`, and nothing else changes in them.
  std::optional<size_t> pick(const std::vector<HostCapacity>& hosts, const std::vector<int>& in_cluster,
                             int64_t slots);

 private:
  struct Entry {
    int in_cluster;
    int64_t used_over_free;  // -(free slots): fewer free sorts later
    size_t position;         // hosts are in id order: the tie-break of place()
  };
  static Entry entry(const std::vector<HostCapacity>& hosts, const std::vector<int>& in_cluster, size_t position);
  static bool worse(const Entry& a, const Entry& b);
  std::vector<Entry> heap_;  // a min-heap by (in_cluster, -free, position)
};

// The hosts as a pass's placements see them, kept up to date by each
// placement: placing a member scans its cluster's candidate hosts, copying
// and matching nothing.
struct PlacementView {
  bool built = false;
  int placed = 0;                   // members placed in this pass
  std::vector<HostCapacity> hosts;  // in id order
  std::unordered_map<std::string, size_t> position;
  // "app/cluster@revision" -> the schedulable hosts with its labels, best first
  std::unordered_map<std::string, CandidateQueue> candidates;
  // "app/cluster" -> its members on hosts[i]
  std::unordered_map<std::string, std::vector<int>> in_cluster;
};

}  // namespace tranche
