// Migration mode (engine/migration.h): the lock's guard, perform of the
// whole application and of one member, backward and forward, cancel and
// complete around a perform, the platform lock, and a lock that outlives the
// controller. The interaction table's migration rows are in
// interactions_test.cc (scenarios in migration_scenarios.h).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "migration_scenarios.h"

namespace tranche {
namespace {

using namespace migration_scenarios;
using ::testing::HasSubstr;

std::string in_place(const std::string& version) { return shop(3, version, "method: in-place, maxUnavailable: 1"); }

MigrationDetail detail(FleetSim& sim) {
  auto lock = sim.store().get_migration_lock("shop").value();
  EXPECT_TRUE(lock);
  return lock ? detail_from_json(lock->detail_json).value() : MigrationDetail{};
}

Result<nlohmann::json> perform(FleetSim& sim, std::optional<std::string> member, int64_t to) {
  return sim.apps().migration_perform("shop", member, to, kAlice);
}

// What the lock's detail_json holds reads back as it was written, and a
// document that is not one is an error, not a lock without a perform.
TEST(MigrationDetail, ReadsBackWhatItWroteAndRefusesGarbage) {
  MigrationDetail written;
  written.paused_rollouts = {{"cart", 3}, {"shop", 7}};
  written.perform = MigrationPerform{.to_revision = 2,
                                     .member = "shop/web/3",
                                     .by = "alice",
                                     .started_at = TimePoint(std::chrono::milliseconds(1800000000000)),
                                     .rollout = std::nullopt,
                                     .successor = "shop/web/9",
                                     .finished = true,
                                     .succeeded = false,
                                     .message = "shop/web/9 (on revision 2) did not become Active",
                                     .finished_at = TimePoint(std::chrono::milliseconds(1800000060000))};
  const MigrationDetail read = detail_from_json(detail_to_json(written)).value();
  EXPECT_EQ(read.paused_rollouts, written.paused_rollouts);
  ASSERT_TRUE(read.perform);
  EXPECT_EQ(read.perform->member, "shop/web/3");
  EXPECT_EQ(read.perform->successor, "shop/web/9");
  EXPECT_EQ(read.perform->started_at, written.perform->started_at);
  EXPECT_EQ(read.perform->finished_at, written.perform->finished_at);
  EXPECT_EQ(read.perform->rollout, std::nullopt);
  EXPECT_FALSE(read.running());
  EXPECT_FALSE(detail_from_json("{}").value().perform);
  EXPECT_FALSE(detail_from_json("not json").has_value());
  EXPECT_FALSE(detail_from_json(R"({"perform": {"toRevision": "2"}})").has_value());
}

TEST(MigrationLock, RefusesMutatingCallsAndTakesThemAgainAfterComplete) {
  FleetSim sim;
  migration_lock_then_apply(sim);
}

TEST(MigrationLock, SuspendsAutohealingAndSaysSoOnce) {
  FleetSim sim;
  migration_lock_then_healing(sim);
}

TEST(MigrationLock, SuspendsAutoscalingDecisionsAndSaysEachOnce) {
  FleetSim sim;
  migration_lock_then_autoscaling(sim);
}

TEST(MigrationLock, PausesARolloutAtItsBatchBoundaryAndCompleteResumesIt) {
  FleetSim sim;
  rollout_then_migration_lock(sim);
}

TEST(MigrationLock, IsTakenOnceAndLiftedOnce) {
  FleetSim sim;
  deploy(sim, shop(1), 1);
  begin(sim);
  auto again = sim.apps().migration_begin("shop", kBob);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_THAT(again.error().message, HasSubstr("already locked for migration (the migration lock of shop, taken by alice"));
  complete(sim);
  auto twice = sim.apps().migration_end("shop", false, kBob);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, ErrorCode::kConflict);
  EXPECT_THAT(twice.error().message, HasSubstr("shop is not locked for migration"));
  auto missing = sim.apps().migration_begin("blog", kAlice);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST(MigrationLock, ThePlatformLockHoldsEveryApplicationAndNewOnes) {
  FleetSim sim;
  deploy(sim, shop(1), 1);
  ASSERT_TRUE(sim.apps().migration_begin(std::nullopt, kAlice).has_value());
  expect_refused_by_lock(status_of(sim.apply(shop(1, "2"))), sim, "the platform");
  const std::string blog = "application: blog\nclusters:\n  - name: web\n    artifact: {version: \"1\", command: [x]}\n";
  expect_refused_by_lock(status_of(sim.apply(blog)), sim, "the platform");
  EXPECT_EQ(sim.apps().describe_application("shop").value()["migration"]["platform"], true);
  EXPECT_THAT(sim.apps().migration_locks("shop").value()["items"], ::testing::SizeIs(1));
  ASSERT_TRUE(sim.apps().migration_end(std::nullopt, false, kBob).has_value());
  EXPECT_TRUE(sim.apply(blog).has_value());
  EXPECT_TRUE(sim.store().list_migration_locks().value().empty());
}

TEST(MigrationPerform, NeedsTheApplicationsOwnLockAndAKnownRevision) {
  FleetSim sim;
  deploy(sim, shop(2), 2);
  auto unlocked = perform(sim, std::nullopt, 1);
  ASSERT_FALSE(unlocked);
  EXPECT_EQ(unlocked.error().code, ErrorCode::kConflict);
  EXPECT_THAT(unlocked.error().message, HasSubstr("`tranche migration begin shop` first"));
  begin(sim);
  auto unknown = perform(sim, std::nullopt, 7);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(unknown.error().field, "toRevision");
  auto no_member = perform(sim, "web/9", 1);
  ASSERT_FALSE(no_member);
  EXPECT_EQ(no_member.error().field, "member");
}

// The whole application back to revision 1 and forward to revision 2, each
// a rollout with the cluster's policy; cancel and complete are refused while
// one runs.
TEST(MigrationPerform, MovesTheApplicationBackwardThenForward) {
  FleetSim sim;
  deploy(sim, shop(3, "1"), 3);
  ASSERT_TRUE(sim.apply(shop(3, "2")).has_value());
  sim.run(20);
  ASSERT_EQ(sim.count("Active", "2"), 3);
  begin(sim);

  auto back = perform(sim, std::nullopt, 1);
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_TRUE((*back)["rollout"].is_number_integer());
  EXPECT_EQ((*back)["performInProgress"], true);
  for (bool complete_it : {false, true}) {
    auto refused = sim.apps().migration_end("shop", complete_it, kBob);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
    EXPECT_THAT(refused.error().message, HasSubstr("while a perform is in progress (shop to revision 1"));
  }
  auto second = perform(sim, std::nullopt, 2);
  ASSERT_FALSE(second);
  EXPECT_THAT(second.error().message, HasSubstr("a perform is already in progress"));
  sim.run(20);
  EXPECT_EQ(sim.count("Active", "1"), 3);
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
  ASSERT_TRUE(detail(sim).perform);
  EXPECT_TRUE(detail(sim).perform->finished);
  EXPECT_TRUE(detail(sim).perform->succeeded);
  EXPECT_EQ(sim.events("MigrationPerformFinished").size(), 1u);

  auto forward = perform(sim, std::nullopt, 2);
  ASSERT_TRUE(forward.has_value()) << forward.error().describe();
  sim.run(20);
  EXPECT_EQ(sim.count("Active", "2"), 3);
  EXPECT_FALSE(detail(sim).running());
  EXPECT_EQ(sim.events("MigrationPerformStarted").size(), 2u);
  complete(sim);
  EXPECT_TRUE(sim.store().list_migration_locks().value().empty());
}

// One member, in place (the agent's update hook): back to revision 1 while
// the others stay on 2, then forward again.
TEST(MigrationPerform, MovesOneMemberInPlaceBackwardThenForward) {
  FleetSim sim;
  deploy(sim, in_place("1"), 3);
  ASSERT_TRUE(sim.apply(in_place("2")).has_value());
  sim.run(20);
  ASSERT_EQ(sim.count("Active", "2"), 3);
  begin(sim);
  auto back = perform(sim, "web/2", 1);
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  auto cancel = sim.apps().migration_end("shop", false, kBob);
  ASSERT_FALSE(cancel);
  EXPECT_EQ(cancel.error().code, ErrorCode::kConflict);
  sim.run(8);
  EXPECT_EQ(sim.members()["shop/web/2"].version, "1");
  EXPECT_EQ(sim.members()["shop/web/2"].state, "Active");
  EXPECT_EQ(sim.members()["shop/web/2"].revision, 1);
  EXPECT_EQ(sim.count("Active", "2"), 2) << "the others are untouched";
  EXPECT_EQ(sim.members().size(), 3u) << "in place: no member created";
  EXPECT_TRUE(detail(sim).perform->succeeded);

  ASSERT_TRUE(perform(sim, "shop/web/2", 2).has_value());
  sim.run(8);
  EXPECT_EQ(sim.members()["shop/web/2"].version, "2");
  EXPECT_EQ(sim.count("Active", "2"), 3);
  EXPECT_FALSE(detail(sim).running());
  complete(sim);
  sim.run(4);
  EXPECT_EQ(sim.count("Active", "2"), 3) << "nothing moves after complete";
}

// One member of a cluster updated by replacement: a successor on the target
// revision, then the member goes.
TEST(MigrationPerform, ReplacesOneMemberWhenItsClusterUpdatesByReplacement) {
  FleetSim sim;
  deploy(sim, shop(2, "1"), 2);
  ASSERT_TRUE(sim.apply(shop(2, "2")).has_value());
  sim.run(20);
  ASSERT_EQ(sim.count("Active", "2"), 2);
  const auto before = sim.members();
  std::string original;
  for (const auto& [id, m] : before) {
    original = m.state == "Active" ? id : original;
  }
  begin(sim);
  ASSERT_TRUE(perform(sim, original, 1).has_value());
  sim.run(10);
  EXPECT_EQ(sim.members()[original].state, "Terminated");
  EXPECT_EQ(sim.count("Active", "1"), 1);
  EXPECT_EQ(sim.count("Active", "2"), 1);
  ASSERT_TRUE(detail(sim).perform);
  EXPECT_TRUE(detail(sim).perform->succeeded);
  EXPECT_THAT(detail(sim).perform->message, HasSubstr(original + " replaced by shop/web/"));
  complete(sim);
}

// SIGKILL of the controller: the lock and a perform in progress are read
// back from the store and hold as before.
TEST(MigrationLock, SurvivesAControllerRestart) {
  FleetSim sim;
  deploy(sim, in_place("1"), 3);
  ASSERT_TRUE(sim.apply(in_place("2")).has_value());
  sim.run(20);
  begin(sim);
  ASSERT_TRUE(perform(sim, "web/1", 1).has_value());
  sim.kill_controller();
  expect_refused_by_lock(status_of(sim.apply(in_place("3"))), sim);
  sim.run(8);
  EXPECT_EQ(sim.members()["shop/web/1"].version, "1") << "the perform went on";
  EXPECT_TRUE(detail(sim).perform->succeeded);
  sim.crash("shop/web/2");
  sim.run(6);
  EXPECT_EQ(sim.members()["shop/web/2"].state, "Failed") << "not healed: still locked";
  complete(sim);
  sim.run(6);
  EXPECT_EQ(sim.count("Active"), 3);
}

}  // namespace
}  // namespace tranche
