#include "engine/reconcile/scheduler.h"

#include <algorithm>
#include <tuple>

namespace tranche {

bool eligible(const HostCapacity& host, const Placement& placement) {
  return host.schedulable &&
         std::all_of(placement.host_labels.begin(), placement.host_labels.end(), [&](const auto& label) {
           auto it = host.labels.find(label.first);
           return it != host.labels.end() && it->second == label.second;
         });
}

PlacementDecision place(const std::vector<HostCapacity>& hosts, const Placement& placement) {
  const HostCapacity* best = nullptr;
  int ready = 0;
  int matching = 0;
  for (const auto& h : hosts) {
    if (!h.schedulable) {
      continue;
    }
    ++ready;
    if (!eligible(h, placement)) {
      continue;
    }
    ++matching;
    if (h.slots - h.used_slots < placement.slots) {
      continue;
    }
    auto key = [](const HostCapacity& x) {
      return std::tuple<int, int64_t, const std::string&>(x.members_of_cluster, -(x.slots - x.used_slots), x.id);
    };
    if (!best || key(h) < key(*best)) {
      best = &h;
    }
  }
  if (best) {
    return {best->id, ""};
  }
  if (ready == 0) {
    return {std::nullopt, "no Ready host"};
  }
  if (matching == 0) {
    return {std::nullopt, "no Ready host has the labels the cluster asks for"};
  }
  return {std::nullopt, "no Ready host with matching labels has " + std::to_string(placement.slots) + " free slot(s)"};
}

std::optional<size_t> pick(const std::vector<HostCapacity>& hosts, const std::vector<size_t>& candidates,
                           const std::vector<int>& in_cluster, int64_t slots) {
  std::optional<size_t> best;
  auto key = [&](size_t i) {
    return std::tuple<int, int64_t, const std::string&>(in_cluster[i], -(hosts[i].slots - hosts[i].used_slots),
                                                        hosts[i].id);
  };
  for (size_t i : candidates) {
    if (hosts[i].slots - hosts[i].used_slots >= slots && (!best || key(i) < key(*best))) {
      best = i;
    }
  }
  return best;
}

}  // namespace tranche
