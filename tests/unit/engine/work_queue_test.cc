#include "engine/fleet/work_queue.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint kStart{seconds{1'800'000'000}};

TEST(WorkQueue, AKeyMarkedManyTimesIsQueuedOnceUntilDone) {
  WorkQueue queue(seconds(10));
  for (int i = 0; i < 3; ++i) {
    queue.add_cluster("shop", "web");
    queue.add_application("shop");
  }
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_TRUE(queue.cluster_queued("shop", "web"));
  queue.done_cluster("shop", "web");
  EXPECT_FALSE(queue.cluster_queued("shop", "web"));
  EXPECT_TRUE(queue.application_queued("shop"));
  queue.done_application("shop");
  EXPECT_EQ(queue.size(), 0u);
}

TEST(WorkQueue, AnApplicationIsQueuedThroughAnyOfItsClustersAndNoOtherApplications) {
  WorkQueue queue(seconds(10));
  queue.add_cluster("shop", "backend/db");
  EXPECT_TRUE(queue.anything_queued_for("shop"));
  EXPECT_FALSE(queue.application_queued("shop"));
  // "sho" and "shop2" share a prefix with "shop/backend/db" but are not its application.
  EXPECT_FALSE(queue.anything_queued_for("sho"));
  EXPECT_FALSE(queue.anything_queued_for("shop2"));
  queue.add_application("shop2");
  EXPECT_TRUE(queue.anything_queued_for("shop2"));
  EXPECT_FALSE(queue.cluster_queued("shop2", "backend/db"));
}

TEST(WorkQueue, AResyncIsDueAtTheFirstPassThenOncePerInterval) {
  WorkQueue queue(seconds(10));
  EXPECT_TRUE(queue.resync_due(kStart));
  EXPECT_FALSE(queue.resync_due(kStart + milliseconds(9999)));
  EXPECT_TRUE(queue.resync_due(kStart + seconds(10)));
  EXPECT_FALSE(queue.resync_due(kStart + seconds(15)));
  EXPECT_TRUE(queue.resync_due(kStart + seconds(20)));
}

TEST(WorkQueue, KeepOnlyDropsTheClustersOfDeletedApplications) {
  WorkQueue queue(seconds(10));
  queue.add_cluster("shop", "web");
  queue.add_cluster("gone", "web");
  queue.add_cluster("gone", "db");
  queue.keep_only({"shop"});
  EXPECT_TRUE(queue.cluster_queued("shop", "web"));
  EXPECT_FALSE(queue.anything_queued_for("gone"));
  EXPECT_EQ(queue.size(), 1u);
}

}  // namespace
}  // namespace tranche
