// Placement: the hosts as the scheduler sees them, built once per pass that
// places a member and kept up to date by each placement.

#include "engine/fleet/fleet.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/reconcile/scheduler.h"

namespace tranche {

void Fleet::view_placement() {
  if (placement_.built) {
    return;
  }
  placement_ = PlacementView{};
  placement_.built = true;
  placement_.hosts.reserve(hosts_.size());
  for (const auto& [id, h] : hosts_) {
    placement_.position[id] = placement_.hosts.size();
    placement_.hosts.push_back(
        HostCapacity{id, h.record.state == kHostReady && h.link != nullptr, h.record.labels, h.record.slots, 0, 0});
  }
  for (const auto& [cluster, members] : by_cluster_) {
    auto& counts = placement_.in_cluster[cluster];
    counts.resize(placement_.hosts.size());
    // A cluster's members mostly share one revision: its spec is looked up
    // when the revision changes, not per member (100,000 members a pass).
    int64_t revision = -1;
    int64_t slots = 1;
    for (const auto& [id, m] : members) {
      if (!may_run(m->state)) {
        continue;
      }
      auto at = placement_.position.find(m->record.host);
      if (at == placement_.position.end()) {
        continue;
      }
      if (m->record.revision != revision) {
        revision = m->record.revision;
        const ClusterSpec* spec = cluster_spec(*m);
        slots = spec ? spec->placement.slots : 1;
      }
      placement_.hosts[at->second].used_slots += slots;
      ++counts[at->second];
    }
  }
}

}  // namespace tranche
