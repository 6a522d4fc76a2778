#include "engine/scheduler.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

HostCapacity host(std::string id, int members_of_cluster, int64_t used = 0,
                  std::map<std::string, std::string> labels = {}) {
  return HostCapacity{std::move(id), true, std::move(labels), 10, used, members_of_cluster};
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

}  // namespace
}  // namespace tranche
