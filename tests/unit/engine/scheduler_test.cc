#include "engine/reconcile/scheduler.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

HostCapacity host(std::string id, int members_of_cluster, int64_t used = 0,
                  std::map<std::string, std::string> labels = {}) {
  return HostCapacity{std::move(id), true, std::move(labels), 10, used, members_of_cluster};
}

// Ids that sort as their numbers do: hosts are in id order.
std::string fmt_id(int i) {
  std::string id = std::to_string(i);
  return "h" + std::string(3 - id.size(), '0') + id;
}

TEST(Scheduler, SpreadsAClusterAcrossHosts) {
  EXPECT_EQ(place({host("a", 1), host("b", 0), host("c", 1)}, Placement{}).host, "b");
}

TEST(Scheduler, PrefersFreeCapacityThenId) {
  EXPECT_EQ(place({host("a", 0, 5), host("b", 0, 2)}, Placement{}).host, "b");
  EXPECT_EQ(place({host("b", 0), host("a", 0)}, Placement{}).host, "a");
}

TEST(Scheduler, HonoursLabelsAndSlots) {
  Placement p{{{"zone", "a"}}, 4};
  std::vector<HostCapacity> hosts = {host("x", 0, 0, {{"zone", "b"}}), host("y", 0, 8, {{"zone", "a"}}),
                                     host("z", 3, 6, {{"zone", "a"}})};
  EXPECT_EQ(place(hosts, p).host, "z");
  hosts[2].used_slots = 7;
  const auto none = place(hosts, p);
  EXPECT_FALSE(none.host.has_value());
  EXPECT_NE(none.reason.find("free slot"), std::string::npos);
}

TEST(Scheduler, ExplainsWhyNothingFits) {
  EXPECT_EQ(place({}, Placement{}).reason, "no Ready host");
  HostCapacity cordoned = host("a", 0);
  cordoned.schedulable = false;
  EXPECT_EQ(place({cordoned}, Placement{}).reason, "no Ready host");
  EXPECT_NE(place({host("a", 0)}, Placement{{{"gpu", "yes"}}, 1}).reason.find("labels"), std::string::npos);
}

TEST(Scheduler, CandidateQueuePicksAsPlaceDoes) {
  // Every combination of cluster members (0..2) and used slots (0..3) on
  // three hosts: the queue's first pick agrees with place().
  for (int combo = 0; combo < 12 * 12 * 12; ++combo) {
    std::vector<HostCapacity> hosts;
    std::vector<int> in_cluster;
    for (int h = 0, c = combo; h < 3; ++h, c /= 12) {
      hosts.push_back(host(std::string(1, static_cast<char>('a' + h)), c % 3, (c / 3) % 4));
      in_cluster.push_back(hosts.back().members_of_cluster);
    }
    const Placement p{{}, 2};
    const auto placed = place(hosts, p);
    const auto picked = CandidateQueue({0, 1, 2}, hosts, in_cluster).pick(hosts, in_cluster, p.slots);
    ASSERT_EQ(placed.host.has_value(), picked.has_value()) << combo;
    if (picked) {
      EXPECT_EQ(hosts[*picked].id, *placed.host) << combo;
    }
  }
  const std::vector<HostCapacity> two = {host("a", 0), host("b", 0)};
  EXPECT_EQ(CandidateQueue({1}, two, {0, 0}).pick(two, {0, 0}, 1), std::optional<size_t>(1)) << "only candidates";
}

TEST(Scheduler, CandidateQueueFollowsPlacementsAsPlaceWould) {
  // Placing member after member, each recorded as a caller does, the queue
  // chooses what place() would on the updated hosts, down to the last slot;
  // another cluster's placements on the same hosts in between count too.
  std::vector<HostCapacity> hosts;
  for (int i = 0; i < 40; ++i) {
    hosts.push_back(host(fmt_id(i), i % 3, i % 7));
  }
  std::vector<int> in_cluster;
  for (const auto& h : hosts) {
    in_cluster.push_back(h.members_of_cluster);
  }
  std::vector<size_t> all(hosts.size());
  for (size_t i = 0; i < all.size(); ++i) {
    all[i] = i;
  }
  const Placement p{{}, 2};
  CandidateQueue queue(all, hosts, in_cluster);
  for (int n = 0;; ++n) {
    if (n % 5 == 4) {
      hosts[static_cast<size_t>(n * 7) % hosts.size()].used_slots += 1;  // another cluster's member
    }
    const auto placed = place(hosts, p);
    const auto picked = queue.pick(hosts, in_cluster, p.slots);
    ASSERT_EQ(placed.host.has_value(), picked.has_value()) << n;
    if (!picked) {
      break;
    }
    ASSERT_EQ(hosts[*picked].id, *placed.host) << n;
    hosts[*picked].used_slots += p.slots;
    ++hosts[*picked].members_of_cluster;
    ++in_cluster[*picked];
  }
}

}  // namespace
}  // namespace tranche
