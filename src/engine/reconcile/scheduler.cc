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

CandidateQueue::Entry CandidateQueue::entry(const std::vector<HostCapacity>& hosts, const std::vector<int>& in_cluster,
                                            size_t position) {
  return Entry{in_cluster[position], -(hosts[position].slots - hosts[position].used_slots), position};
}

bool CandidateQueue::worse(const Entry& a, const Entry& b) {
  return std::tie(a.in_cluster, a.used_over_free, a.position) > std::tie(b.in_cluster, b.used_over_free, b.position);
}

CandidateQueue::CandidateQueue(const std::vector<size_t>& candidates, const std::vector<HostCapacity>& hosts,
                               const std::vector<int>& in_cluster) {
  heap_.reserve(candidates.size());
  for (size_t i : candidates) {
    heap_.push_back(entry(hosts, in_cluster, i));
  }
  std::make_heap(heap_.begin(), heap_.end(), worse);
}

std::optional<size_t> CandidateQueue::pick(const std::vector<HostCapacity>& hosts, const std::vector<int>& in_cluster,
                                           int64_t slots) {
  // A queued key is never worse than the host's true one: the top whose key
  // is still true is the best.
  while (!heap_.empty()) {
    const Entry current = entry(hosts, in_cluster, heap_.front().position);
    const bool fits = -current.used_over_free >= slots;
    if (fits && !worse(current, heap_.front())) {
      return current.position;
    }
    std::pop_heap(heap_.begin(), heap_.end(), worse);
    heap_.pop_back();
    if (fits) {  // placed on since it was queued: back in at its true place
      heap_.push_back(current);
      std::push_heap(heap_.begin(), heap_.end(), worse);
    }  // else free slots only shrink: it cannot take this cluster again
  }
  return std::nullopt;
}

}  // namespace tranche
