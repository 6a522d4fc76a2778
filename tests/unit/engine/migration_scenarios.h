#pragma once
// Migration mode (engine/migration.h) meeting what runs on a cluster: the
// scenarios of the interaction table's migration rows (interactions_test.cc
// maps them) and of migration_test.cc, on the real fleet with simulated
// agents and the manual clock (fleet_sim.h).

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/time_format.h"
#include "fleet_sim.h"

namespace tranche::migration_scenarios {

inline const Caller kAlice{"alice", "POST /api/v1/applications/shop/migration/begin"};
inline const Caller kBob{"bob", "POST /api/v1/applications/shop/migration/complete"};

// shop/web with `desired` members of artifact `version`.
inline std::string shop(int desired, const std::string& version = "1",
                        const std::string& update = "maxUnavailable: 1, maxSurge: 1", const std::string& extra = "") {
  return "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: 20, desired: " +
         std::to_string(desired) + "}\n    artifact: {version: \"" + version +
         "\", command: [\"web\"]}\n    operational: {autoscaling: \"off\"}\n    update: {minReadySeconds: 0, " +
         update + "}\n" + extra;
}

inline void deploy(FleetSim& sim, const std::string& manifest, int active) {
  auto applied = sim.apply(manifest);
  ASSERT_TRUE(applied.has_value()) << applied.error().describe();
  sim.run(6);
  ASSERT_EQ(sim.count("Active"), active);
}

inline void begin(FleetSim& sim, const std::string& app = "shop") {
  auto locked = sim.apps().migration_begin(app, kAlice);
  ASSERT_TRUE(locked.has_value()) << locked.error().describe();
}

inline void complete(FleetSim& sim, const std::string& app = "shop") {
  auto lifted = sim.apps().migration_end(app, true, kBob);
  ASSERT_TRUE(lifted.has_value()) << lifted.error().describe();
}

// The refusal every mutating call gets: 409 naming the lock, who took it and
// when.
inline void expect_refused_by_lock(const Status& refused, FleetSim& sim, const std::string& subject = "shop") {
  ASSERT_FALSE(refused.has_value()) << "not refused";
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  const auto lock = sim.store().get_migration_lock(subject == "the platform" ? "" : subject).value();
  ASSERT_TRUE(lock);
  EXPECT_THAT(refused.error().message, ::testing::HasSubstr("the migration lock of " + subject + ", taken by alice at " +
                                                            format_rfc3339(lock->locked_at)));
}

template <class T>
Status status_of(const Result<T>& r) {
  if (r) {
    return {};
  }
  return std::unexpected(r.error());
}

inline int events_saying(FleetSim& sim, const std::string& type, const std::string& text) {
  int n = 0;
  for (const auto& e : sim.events(type)) {
    n += e.message.find(text) != std::string::npos ? 1 : 0;
  }
  return n;
}

inline std::string rollout_phase(FleetSim& sim) {
  auto r = sim.store().latest_rollout("shop").value();
  return r ? r->phase : "";
}

// A rollout in progress pauses at its batch boundary when the lock is taken:
// the member already at its agent finishes, no other one moves; it resumes
// on complete.
inline void rollout_then_migration_lock(FleetSim& sim) {
  deploy(sim, shop(4, "1", "method: in-place, maxUnavailable: 1"), 4);
  ASSERT_TRUE(sim.apply(shop(4, "2", "method: in-place, maxUnavailable: 1")).has_value());
  sim.step();  // the first batch is handed to its agent
  const int in_flight = sim.count("Updating") + sim.count("Starting") + sim.count("Active", "2");
  ASSERT_EQ(in_flight, 1);
  begin(sim);
  EXPECT_EQ(rollout_phase(sim), "Paused");
  EXPECT_EQ(events_saying(sim, "RolloutPhaseChanged", "paused at its batch boundary by the migration lock of shop"), 1);
  sim.run(10);
  EXPECT_EQ(sim.count("Active", "2"), 1) << "the member at its agent finished";
  EXPECT_EQ(sim.count("Active", "1"), 3) << "no new batch while locked";
  EXPECT_EQ(rollout_phase(sim), "Paused");
  complete(sim);
  EXPECT_EQ(events_saying(sim, "RolloutPhaseChanged", "resumed: the migration lock of shop was lifted"), 1);
  sim.run(16);
  EXPECT_EQ(sim.count("Active", "2"), 4);
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
}

// The autoscaler's decision while locked: said once, not acted on; taken
// once the lock is lifted.
inline void migration_lock_then_autoscaling(FleetSim& sim) {
  const std::string scaling =
      "    autoscaling: {windowSeconds: 2, scaleUpAbove: 0.8, scaleDownBelow: 0.2, cooldownSeconds: 1}\n";
  deploy(sim, shop(2, "1", "maxUnavailable: 1, maxSurge: 1", scaling), 2);
  ASSERT_TRUE(sim.set({{"path", "web"}, {"autoscaling", "on"}}).has_value());
  begin(sim);
  sim.set_load(0.95);
  sim.run(12);
  EXPECT_EQ(sim.events("AutoscalingSuspended").size(), 1u) << "once per decision, not once per pass";
  EXPECT_EQ(events_saying(sim, "AutoscalingSuspended", "suspended by the migration lock of shop, taken by alice"), 1);
  EXPECT_TRUE(sim.events("ClusterScaled").empty());
  EXPECT_EQ(sim.count("Active"), 2);
  complete(sim);
  sim.run(6);
  EXPECT_FALSE(sim.events("ClusterScaled").empty()) << "the decision is taken once the lock is lifted";
  EXPECT_GT(sim.count("Active"), 2);
}

// A failed member is not healed while locked (said once, naming the lock);
// it is healed once the lock is lifted.
inline void migration_lock_then_healing(FleetSim& sim) {
  deploy(sim, shop(2), 2);
  begin(sim);
  sim.crash("shop/web/1");
  sim.run(8);
  EXPECT_EQ(sim.members()["shop/web/1"].state, "Failed") << "kept in place";
  EXPECT_EQ(sim.count("Active"), 1) << "not replaced";
  EXPECT_EQ(sim.events("HealingDelayed").size(), 1u);
  EXPECT_EQ(events_saying(sim, "HealingDelayed", "autohealing is suspended by the migration lock of shop"), 1);
  complete(sim);
  sim.run(6);
  EXPECT_EQ(sim.events("HealingResumed").size(), 1u);
  EXPECT_EQ(sim.count("Active"), 2);
}

// Every mutating call is refused while locked; reads and dry runs answer;
// a refused change re-submitted after complete proceeds.
inline void migration_lock_then_apply(FleetSim& sim) {
  deploy(sim, shop(2), 2);
  begin(sim);
  expect_refused_by_lock(status_of(sim.apply(shop(2, "2"))), sim);
  expect_refused_by_lock(status_of(sim.set({{"path", "web"}, {"autohealing", "off"}})), sim);
  expect_refused_by_lock(status_of(sim.set({{"path", "web"}, {"maintenance", "restart"}})), sim);
  expect_refused_by_lock(status_of(sim.apps().undeploy("shop", {"t", "t"})), sim);
  expect_refused_by_lock(status_of(sim.apps().undo("shop", 1, {"t", "t"})), sim);
  for (const char* action : {"pause", "resume", "abort", "promote"}) {
    expect_refused_by_lock(status_of(sim.apps().rollout_control("shop", action, {"t", "t"})), sim);
  }
  EXPECT_TRUE(sim.apps().apply(shop(2, "2"), ManifestFormat::kYaml, true, {"t", "t"}).has_value()) << "a dry run";
  auto described = sim.apps().describe_application("shop");
  ASSERT_TRUE(described.has_value());
  EXPECT_EQ((*described)["migration"]["lockedBy"], "alice");
  EXPECT_EQ((*described)["migration"]["performInProgress"], false);
  EXPECT_EQ(sim.apps().list_applications(std::nullopt).value()["items"][0]["migration"]["lockedBy"], "alice");
  sim.run(4);
  EXPECT_EQ(sim.count("Active", "1"), 2);
  complete(sim);
  EXPECT_EQ(sim.apps().describe_application("shop").value()["migration"], nullptr);
  ASSERT_TRUE(sim.apply(shop(2, "2")).has_value()) << "re-submitted after complete";
  sim.run(12);
  EXPECT_EQ(sim.count("Active", "2"), 2);
  EXPECT_EQ(sim.events("MigrationLocked").size(), 1u);
  EXPECT_EQ(sim.events("MigrationUnlocked").size(), 1u);
}

}  // namespace tranche::migration_scenarios
