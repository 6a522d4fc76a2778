// One scenario per row of the interaction table (reconcile/interactions.h):
// the table is the test's data, and a row without a scenario fails
// EveryRowHasAScenario. Each runs the real fleet with simulated agents and
// the manual clock (fleet_sim.h).

#include "engine/reconcile/interactions.h"

#include <fstream>
#include <functional>
#include <iterator>

#include <gtest/gtest.h>

#include "fleet_sim.h"
#include "migration_scenarios.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using C = Command;

// shop/web with `desired` members of artifact `version`; `update` is the
// rest of its update policy.
std::string shop(int desired, const std::string& version = "1",
                 const std::string& update = "maxUnavailable: 1, maxSurge: 1", const std::string& extra = "") {
  return "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: 20, desired: " +
         std::to_string(desired) + "}\n    artifact: {version: \"" + version +
         "\", command: [\"web\"]}\n    operational: {autoscaling: \"off\"}\n    update: {minReadySeconds: 0, " +
         update + "}\n" + extra;
}

void deploy(FleetSim& sim, const std::string& manifest, int active) {
  ASSERT_TRUE(sim.apply(manifest).has_value());
  sim.run(4);
  ASSERT_EQ(sim.count("Active"), active);
}

std::string set(FleetSim& sim, const json& body) {
  auto done = sim.set(body);
  EXPECT_TRUE(done.has_value()) << done.error().describe();
  return done ? (*done)["operation"].get<std::string>() : std::string();
}

std::set<std::string> ids_in(FleetSim& sim, const std::string& state) {
  std::set<std::string> out;
  for (const auto& [id, m] : sim.members()) {
    if (m.state == state) {
      out.insert(id);
    }
  }
  return out;
}

// Events whose message contains `text`.
int events_saying(FleetSim& sim, const std::string& text, const std::string& type = "") {
  int n = 0;
  for (const auto& e : sim.events(type)) {
    n += e.message.find(text) != std::string::npos ? 1 : 0;
  }
  return n;
}

std::string rollout_phase(FleetSim& sim) {
  auto r = sim.store().latest_rollout("shop").value();
  return r ? r->phase : "";
}

// Every member the cluster ever had is in `ids` before the command; after
// the test they are all Terminated and `n` others are Active.
void all_replaced(FleetSim& sim, const std::set<std::string>& originals, int n) {
  for (const auto& id : originals) {
    EXPECT_EQ(sim.members()[id].state, "Terminated") << id;
  }
  EXPECT_EQ(sim.count("Active"), n);
  EXPECT_TRUE(sim.markers().empty());
}

// A rollout takes the cluster: replace waits and completes after it.
void rollout_then_replace(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const auto originals = ids_in(sim, "Active");
  ASSERT_TRUE(sim.apply(shop(4, "2")).has_value());
  sim.step();
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(30);
  all_replaced(sim, originals, 4);
  EXPECT_EQ(sim.count("Active", "2"), 4);
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
  EXPECT_GE(sim.events("MaintenanceWaiting").size(), 1u);
  EXPECT_EQ(events_saying(sim, "completed", "OperationalStateChanged"), 1)
      << "one completion, of shop/web, never of the members the rollout retired";
  EXPECT_EQ(events_saying(sim, "maintenance replace of shop/web completed: every member replaced"), 1);
  EXPECT_EQ(sim.operation(op)["status"], "Succeeded");
}

void canary_then_replace(FleetSim& sim) {
  deploy(sim, shop(4, "1", "maxUnavailable: 1, maxSurge: 1, canary: 1"), 4);
  ASSERT_TRUE(sim.apply(shop(4, "2", "maxUnavailable: 1, maxSurge: 1, canary: 1")).has_value());
  sim.run(6);
  ASSERT_EQ(rollout_phase(sim), "CanaryPaused");
  set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(8);
  EXPECT_EQ(rollout_phase(sim), "CanaryPaused") << "the canary holds";
  EXPECT_EQ(sim.count("Active", "2"), 1) << "no replacement onto the held revision";
  EXPECT_EQ(sim.count("Active", "1"), 3);
  EXPECT_EQ(events_saying(sim, "maintenance replace: placed"), 0);
  EXPECT_EQ(sim.markers().size(), 4u) << "pending until the rollout is done";
  EXPECT_GE(events_saying(sim, "waits for rollout", "MaintenanceWaiting"), 1);
  // Promoted: the rollout finishes, then the replacements go on.
  ASSERT_TRUE(sim.apps().rollout_control("shop", "promote", {"t", "t"}).has_value());
  sim.run(30);
  EXPECT_EQ(sim.count("Active", "2"), 4);
  EXPECT_TRUE(sim.markers().empty());
}

void stuck_then_replace(FleetSim& sim) {
  deploy(sim, shop(4, "1", "maxUnavailable: 1, maxSurge: 1, progressDeadlineSeconds: 600"), 4);
  sim.break_version("2");
  ASSERT_TRUE(sim.apply(shop(4, "2", "maxUnavailable: 1, maxSurge: 1, progressDeadlineSeconds: 600")).has_value());
  sim.run(5);
  set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(10);
  EXPECT_EQ(events_saying(sim, "maintenance replace: placed"), 0) << "nothing replaced onto the broken revision";
  EXPECT_GE(sim.events("MaintenanceWaiting").size(), 1u);
  EXPECT_FALSE(sim.markers().empty());
  EXPECT_GE(sim.count("Active", "1"), 3);
}

void paused_then_replace(FleetSim& sim) {
  const std::string policy = "maxUnavailable: 1, maxSurge: 1, progressDeadlineSeconds: 3, onFailure: pause";
  deploy(sim, shop(4, "1", policy), 4);
  sim.break_version("2");
  ASSERT_TRUE(sim.apply(shop(4, "2", policy)).has_value());
  sim.run(8);
  ASSERT_EQ(rollout_phase(sim), "Paused");
  set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(10);
  EXPECT_EQ(events_saying(sim, "maintenance replace: placed"), 0)
      << "a paused rollout's revision is not rolled forward by maintenance";
  EXPECT_GE(sim.count("Active", "1"), 3);
  EXPECT_GE(events_saying(sim, "(Paused)", "MaintenanceWaiting"), 1);
  EXPECT_FALSE(sim.markers().empty());
}

// An apply given while maintenance replaces: the rollout first.
void replace_then_apply(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const auto originals = ids_in(sim, "Active");
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.step();
  const int by_maintenance = events_saying(sim, "maintenance replace: placed");
  ASSERT_GE(by_maintenance, 1);
  ASSERT_TRUE(sim.apply(shop(4, "2")).has_value());
  sim.run(30);
  all_replaced(sim, originals, 4);
  EXPECT_EQ(sim.count("Active", "2"), 4);
  EXPECT_EQ(events_saying(sim, "maintenance replace: placed"), by_maintenance)
      << "the rollout replaced the rest; maintenance created nothing after the apply";
  EXPECT_EQ(sim.operation(op)["status"], "Succeeded");
}

// Never fewer than desired - maxUnavailable Active while both run.
void shared_budget(FleetSim& sim, bool restart_first) {
  const std::string policy = "maxUnavailable: 1, maxSurge: 0";
  deploy(sim, shop(4, "1", policy), 4);
  sim.hold_maintenance(true);
  if (restart_first) {
    set(sim, {{"path", "web"}, {"maintenance", "restart"}});
    sim.step();
    ASSERT_TRUE(sim.apply(shop(4, "2", policy)).has_value());
  } else {
    ASSERT_TRUE(sim.apply(shop(4, "2", policy)).has_value());
    sim.step();
    set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  }
  for (int i = 0; i < 40; ++i) {
    sim.step();
    EXPECT_GE(sim.count("Active"), 3) << "step " << i;
    if (i % 3 == 2) {
      sim.release_all();
    }
  }
  EXPECT_EQ(sim.count("Active", "2"), 4);
  EXPECT_TRUE(sim.markers().empty());
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
}

// The defect of issue 12: resume deleted the newer replace marker.
void restart_then_replace(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const auto originals = ids_in(sim, "Active");
  sim.hold_maintenance(true);
  const std::string restart = set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  sim.step();
  ASSERT_EQ(sim.held().size(), 1u);
  const std::string in_maintenance = sim.held()[0];
  sim.step();
  const std::string replace = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  EXPECT_EQ(sim.operation(restart)["status"], "Superseded");
  EXPECT_NE(sim.operation(restart)["message"].get<std::string>().find(replace), std::string::npos);
  EXPECT_NE(sim.operation(replace)["message"].get<std::string>().find("supersedes " + restart), std::string::npos);
  EXPECT_EQ(sim.events("CommandSuperseded").size(), 1u);
  sim.run(2);
  EXPECT_EQ(sim.members()[in_maintenance].state, "Maintenance") << "its restart, at the agent, finishes";
  sim.release_all();
  sim.run(30);
  all_replaced(sim, originals, 4);
  EXPECT_EQ(sim.operation(replace)["status"], "Succeeded");
  EXPECT_EQ(events_saying(sim, "maintenance replace of shop/web completed"), 1);
}

void replace_then_restart(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const auto originals = ids_in(sim, "Active");
  const std::string replace = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.step();
  const std::string restart = set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  EXPECT_EQ(sim.operation(replace)["status"], "Superseded");
  sim.run(30);
  EXPECT_EQ(sim.count("Active"), 4);
  EXPECT_TRUE(sim.markers().empty());
  int kept = 0;
  for (const auto& id : originals) {
    kept += sim.members()[id].state == "Active" ? 1 : 0;
  }
  EXPECT_GE(kept, 2) << "replacements not begun were cancelled: restarted instead";
  EXPECT_GE(events_saying(sim, "resumed after maintenance"), kept);
  EXPECT_EQ(sim.operation(restart)["status"], "Succeeded");
}

void maintenance_then_off(FleetSim& sim, const std::string& value) {
  deploy(sim, shop(4, "1", "maxUnavailable: 0, maxSurge: 1"), 4);
  const auto originals = ids_in(sim, "Active");
  sim.hold_maintenance(true);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", value}});
  sim.step();
  set(sim, {{"path", "web"}, {"maintenance", "off"}});
  EXPECT_EQ(sim.operation(op)["status"], "Superseded");
  sim.release_all();
  sim.run(20);
  EXPECT_TRUE(sim.markers().empty());
  EXPECT_EQ(sim.count("Active"), 4);
  int gone = 0;
  for (const auto& id : originals) {
    gone += sim.members()[id].state == "Terminated" ? 1 : 0;
  }
  EXPECT_LE(gone, 1) << "at most the step begun before off";
  EXPECT_LE(static_cast<int>(sim.events("MemberStateChanged").size()), 40);
  EXPECT_LE(events_saying(sim, "maintenance restart (autohealing off"), 1);
}

// The defect of issue 12: scale-down stopped a member in the middle of its hook.
void restart_then_scale_down(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  sim.hold_maintenance(true);
  set(sim, {{"path", "web"}, {"maintenance", "restart"}, {"allAtOnce", true}});
  sim.step();
  ASSERT_EQ(sim.held().size(), 4u);
  ASSERT_TRUE(sim.apply(shop(1)).has_value());
  sim.run(3);
  EXPECT_EQ(sim.count("Maintenance"), 4) << "no member is stopped in the middle of its hook";
  EXPECT_EQ(sim.count("Stopping") + sim.count("Terminated"), 0);
  EXPECT_EQ(sim.events("ScaleDownWaits").size(), 1u) << "said once";
  EXPECT_EQ(sim.stopped_in_maintenance(), 0);
  sim.release_all();
  sim.run(6);
  EXPECT_EQ(sim.count("Active"), 1);
  EXPECT_EQ(sim.count("Terminated"), 3);
  EXPECT_TRUE(sim.markers().empty());
}

void replace_then_scale_down(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const std::string op = set(sim, {{"path", "web/1"}, {"maintenance", "replace"}});
  ASSERT_TRUE(sim.apply(shop(3)).has_value());
  sim.run(10);
  // A command given on one member ends when its member is gone.
  EXPECT_EQ(sim.operation(op)["status"], "Succeeded") << sim.operation(op).dump();
  EXPECT_EQ(sim.operation(op)["message"],
            "maintenance replace of shop/web/1 completed: the member left the cluster (replaced, or removed as it "
            "shrank)");
  EXPECT_EQ(sim.members()["shop/web/1"].state, "Terminated") << "the marked member goes first";
  EXPECT_EQ(sim.count("Active"), 3);
  EXPECT_EQ(sim.members().size(), 4u) << "nothing replaces it: the cluster shrinks";
  EXPECT_TRUE(sim.markers().empty());
}

void restart_then_autoscaling(FleetSim& sim) {
  const std::string scaling =
      "    autoscaling: {windowSeconds: 2, scaleUpAbove: 0.8, scaleDownBelow: 0.2, cooldownSeconds: 1}\n";
  deploy(sim, shop(4, "1", "maxUnavailable: 1, maxSurge: 1", scaling), 4);
  sim.hold_maintenance(true);
  set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  sim.step();
  ASSERT_EQ(sim.held().size(), 1u);
  const std::string held = sim.held()[0];
  sim.set_load(0.0);
  set(sim, {{"path", "web"}, {"autoscaling", "on"}});
  sim.run(8);
  EXPECT_GE(sim.events("ClusterScaled").size(), 2u);
  EXPECT_EQ(sim.members()[held].state, "Maintenance") << "the autoscaler's scale-down does not stop it mid-hook";
  EXPECT_GE(sim.events("ScaleDownWaits").size(), 1u);
  EXPECT_EQ(sim.stopped_in_maintenance(), 0);
  EXPECT_EQ(sim.count("Stopping") + sim.count("Terminated"), 0)
      << "the members the restart took meanwhile (its budget against the smaller desired) are the surplus: "
         "nothing else goes while they are in their hooks";
  sim.release_all();
  sim.set_load(0.5);
  sim.run(4);
  EXPECT_EQ(sim.stopped_in_maintenance(), 0);
  EXPECT_EQ(sim.count("Active"), 1) << "the autoscaler's count (min 1) once they resumed";
  EXPECT_TRUE(sim.markers().empty());
}

void restart_then_scale_up(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  sim.hold_maintenance(true);
  set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  sim.step();
  ASSERT_TRUE(sim.apply(shop(6)).has_value());
  for (int i = 0; i < 12; ++i) {
    sim.step();
    sim.release_all();
  }
  EXPECT_EQ(sim.count("Active"), 6);
  EXPECT_TRUE(sim.markers().empty());
  for (const auto& e : sim.events("MemberStateChanged")) {
    if (e.member == "shop/web/5" || e.member == "shop/web/6") {
      EXPECT_NE(e.to_json, "\"Maintenance\"") << "members created meanwhile are not put into maintenance";
    }
  }
}

// The defect of issue 12: 6 -> 12 while the rollout is stuck added only
// broken members; Active stayed at 4.
void stuck_then_scale_up(FleetSim& sim) {
  const std::string policy = "maxUnavailable: 2, maxSurge: 1, progressDeadlineSeconds: 600";
  deploy(sim, shop(6, "1", policy), 6);
  sim.break_version("2");
  ASSERT_TRUE(sim.apply(shop(6, "2", policy)).has_value());
  sim.run(6);
  ASSERT_EQ(sim.count("Active", "2"), 0) << "stuck";
  ASSERT_LE(sim.count("Active"), 5);
  ASSERT_TRUE(sim.apply(shop(12, "2", policy)).has_value());
  sim.run(10);
  EXPECT_GE(sim.count("Active"), 10) << "new capacity where it serves: never below desired - maxUnavailable";
  EXPECT_GE(sim.count("Active", "1"), 10);
  EXPECT_GE(events_saying(sim, "which serves"), 6);
}

void rollout_then_delete(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  ASSERT_TRUE(sim.apply(shop(4, "2")).has_value());
  sim.run(2);
  ASSERT_TRUE(sim.apps().undeploy("shop", {"t", "t"}).has_value());
  sim.run(8);
  EXPECT_EQ(rollout_phase(sim), "Aborted");
  EXPECT_EQ(sim.count("Terminated"), static_cast<int>(sim.members().size()));
}

void restart_then_delete(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  sim.hold_maintenance(true);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "restart"}});
  sim.step();
  ASSERT_EQ(sim.held().size(), 1u);
  const std::string held = sim.held()[0];
  ASSERT_TRUE(sim.apps().undeploy("shop", {"t", "t"}).has_value());
  EXPECT_EQ(sim.operation(op)["status"], "Cancelled");
  sim.run(4);
  EXPECT_EQ(sim.members()[held].state, "Maintenance") << "its hook finishes first";
  EXPECT_EQ(sim.count("Maintenance"), 1) << "no other member is taken into maintenance";
  EXPECT_EQ(sim.count("Terminated"), 3);
  sim.release_all();
  sim.run(4);
  EXPECT_EQ(sim.count("Terminated"), 4);
  EXPECT_EQ(events_saying(sim, "maintenance restart of shop/web ended: the application was undeployed"), 1);
  EXPECT_EQ(events_saying(sim, "completed", "OperationalStateChanged"), 0);
  EXPECT_FALSE(sim.value("web", Setting::kMaintenance).has_value());
}

void replace_then_delete(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.step();
  ASSERT_TRUE(sim.apps().undeploy("shop", {"t", "t"}).has_value());
  sim.run(6);
  EXPECT_EQ(sim.count("Terminated"), static_cast<int>(sim.members().size()));
  EXPECT_EQ(sim.operation(op)["status"], "Cancelled");
  EXPECT_EQ(events_saying(sim, "ended: the application was undeployed"), 1);
  EXPECT_TRUE(sim.store().list_operational_values("shop").value().empty() ||
              !sim.value("web", Setting::kMaintenance).has_value());
}

void canary_then_host_drain(FleetSim& sim) {
  deploy(sim, shop(4, "1", "maxUnavailable: 1, maxSurge: 1, canary: 1"), 4);
  ASSERT_TRUE(sim.apply(shop(4, "2", "maxUnavailable: 1, maxSurge: 1, canary: 1")).has_value());
  sim.run(6);
  ASSERT_EQ(rollout_phase(sim), "CanaryPaused");
  std::set<std::string> on_drained;
  for (const auto& [id, m] : sim.members()) {
    if (m.host == sim.host(0) && m.state == "Active") {
      on_drained.insert(id);
    }
  }
  ASSERT_TRUE(sim.fleet().set_host_draining(sim.host(0), true, {"t", "t"}).has_value());
  sim.run(6);
  EXPECT_EQ(rollout_phase(sim), "CanaryPaused");
  for (const auto& id : on_drained) {
    EXPECT_EQ(sim.members()[id].state, "Active") << id << " keeps running on the drained host";
  }
  const size_t before = sim.members().size();  // ordinals up to this many exist
  ASSERT_TRUE(sim.apps().rollout_control("shop", "promote", {"t", "t"}).has_value());
  sim.run(20);
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
  for (const auto& [id, m] : sim.members()) {
    if (m.ordinal > static_cast<int64_t>(before)) {
      EXPECT_NE(m.host, sim.host(0)) << id << ": nothing new on the drained host";
    }
  }
}

void rollout_then_autohealing_off(FleetSim& sim) {
  deploy(sim, shop(4, "1", "maxUnavailable: 1, maxSurge: 0"), 4);
  set(sim, {{"path", "web"}, {"autohealing", "off"}});
  sim.crash("shop/web/1");
  sim.run(2);
  ASSERT_EQ(sim.members()["shop/web/1"].state, "Failed");
  ASSERT_TRUE(sim.apply(shop(4, "2", "maxUnavailable: 1, maxSurge: 0")).has_value());
  sim.run(20);
  EXPECT_EQ(sim.members()["shop/web/1"].state, "Failed") << "kept in place";
  EXPECT_EQ(sim.events("HealingDelayed").size(), 1u);
  EXPECT_EQ(sim.count("Active", "2"), 3) << "not compensated for";
  set(sim, {{"path", "web"}, {"autohealing", "on"}});
  sim.run(6);
  EXPECT_EQ(sim.events("HealingResumed").size(), 1u);
  EXPECT_EQ(sim.count("Active", "2"), 4);
}

void rollout_then_apply(FleetSim& sim) {
  deploy(sim, shop(4), 4);
  ASSERT_TRUE(sim.apply(shop(4, "2")).has_value());
  sim.run(2);
  ASSERT_TRUE(sim.apply(shop(4, "3")).has_value());
  sim.run(30);
  EXPECT_EQ(events_saying(sim, "superseded by revision 3", "RolloutPhaseChanged"), 1);
  EXPECT_EQ(sim.count("Active", "3"), 4);
  EXPECT_EQ(rollout_phase(sim), "Succeeded");
}

void delete_then_apply(FleetSim& sim) {
  deploy(sim, shop(2), 2);
  ASSERT_TRUE(sim.apps().undeploy("shop", {"t", "t"}).has_value());
  sim.run(4);
  ASSERT_EQ(sim.count("Active"), 0);
  ASSERT_TRUE(sim.apply(shop(3)).has_value());
  sim.run(4);
  EXPECT_EQ(sim.count("Active"), 3);
  EXPECT_EQ(sim.events("ApplicationDeployed").size(), 1u);
}

// GET /members: a member being replaced says so, with its successor's id,
// from the successor's creation until it leaves; every member carries its
// maintenance mark.
TEST(MemberJson, AReplacedMemberShowsItsSuccessorAndEveryMemberItsMaintenanceMark) {
  FleetSim sim;
  deploy(sim, shop(2, "1", "maxUnavailable: 0, maxSurge: 1"), 2);
  set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.step();
  auto listed = sim.fleet().members_json(MemberQuery{std::string("shop")}, std::nullopt).value()["items"];
  std::map<std::string, json> by_id;
  for (const auto& m : listed) {
    by_id[m["id"]] = m;
  }
  ASSERT_EQ(by_id.size(), 3u) << listed.dump(1);
  EXPECT_EQ(by_id["shop/web/1"]["maintenance"], "replace");
  EXPECT_EQ(by_id["shop/web/2"]["maintenance"], "replace");
  EXPECT_EQ(by_id["shop/web/3"]["maintenance"], "off") << "created meanwhile: not in maintenance";
  EXPECT_EQ(by_id["shop/web/1"]["updating"]["successor"], "shop/web/3") << listed.dump(1);
  EXPECT_EQ(by_id["shop/web/1"]["state"], "Active") << "it still serves until its successor is Active";
  EXPECT_FALSE(by_id["shop/web/2"].contains("updating")) << "no successor yet";
  EXPECT_EQ(sim.fleet().member_json("shop/web/1", std::nullopt).value()["updating"]["successor"], "shop/web/3");
  sim.run(20);
  EXPECT_EQ(sim.fleet().member_json("shop/web/4", std::nullopt).value()["maintenance"], "off");
  EXPECT_EQ(sim.members()["shop/web/2"].state, "Terminated");
}

// The same during a rollout with method: replace.
TEST(MemberJson, AMemberARolloutReplacesShowsItsSuccessor) {
  FleetSim sim;
  deploy(sim, shop(2, "1", "maxUnavailable: 0, maxSurge: 1"), 2);
  ASSERT_TRUE(sim.apply(shop(2, "2", "maxUnavailable: 0, maxSurge: 1")).has_value());
  sim.step();
  const json first = sim.fleet().member_json("shop/web/1", std::nullopt).value();
  EXPECT_EQ(first["updating"]["successor"], "shop/web/3") << first.dump(1);
  EXPECT_EQ(first["maintenance"], "off");
}

using Scenario = std::function<void(FleetSim&)>;

const std::map<std::pair<Command, Command>, Scenario>& scenarios() {
  static const std::map<std::pair<Command, Command>, Scenario> all = {
      {{C::kRollout, C::kMaintenanceReplace}, rollout_then_replace},
      {{C::kRolloutCanaryHold, C::kMaintenanceReplace}, canary_then_replace},
      {{C::kRolloutStuck, C::kMaintenanceReplace}, stuck_then_replace},
      {{C::kRolloutPaused, C::kMaintenanceReplace}, paused_then_replace},
      {{C::kMaintenanceReplace, C::kApply}, replace_then_apply},
      {{C::kRollout, C::kMaintenanceRestart}, [](FleetSim& sim) { shared_budget(sim, false); }},
      {{C::kMaintenanceRestart, C::kApply}, [](FleetSim& sim) { shared_budget(sim, true); }},
      {{C::kMaintenanceRestart, C::kMaintenanceReplace}, restart_then_replace},
      {{C::kMaintenanceReplace, C::kMaintenanceRestart}, replace_then_restart},
      {{C::kMaintenanceRestart, C::kMaintenanceOff}, [](FleetSim& sim) { maintenance_then_off(sim, "restart"); }},
      {{C::kMaintenanceReplace, C::kMaintenanceOff}, [](FleetSim& sim) { maintenance_then_off(sim, "replace"); }},
      {{C::kMaintenanceRestart, C::kScaleDown}, restart_then_scale_down},
      {{C::kMaintenanceReplace, C::kScaleDown}, replace_then_scale_down},
      {{C::kMaintenanceRestart, C::kAutoscalingOn}, restart_then_autoscaling},
      {{C::kMaintenanceRestart, C::kScaleUp}, restart_then_scale_up},
      {{C::kRolloutStuck, C::kScaleUp}, stuck_then_scale_up},
      {{C::kRollout, C::kDelete}, rollout_then_delete},
      {{C::kMaintenanceRestart, C::kDelete}, restart_then_delete},
      {{C::kMaintenanceReplace, C::kDelete}, replace_then_delete},
      {{C::kRolloutCanaryHold, C::kHostDrain}, canary_then_host_drain},
      {{C::kRollout, C::kAutohealingOff}, rollout_then_autohealing_off},
      {{C::kRollout, C::kApply}, rollout_then_apply},
      {{C::kDelete, C::kApply}, delete_then_apply},
      {{C::kRollout, C::kMigrationLock}, migration_scenarios::rollout_then_migration_lock},
      {{C::kMigrationLock, C::kApply}, migration_scenarios::migration_lock_then_apply},
      {{C::kMigrationLock, C::kScaleUp}, migration_scenarios::migration_lock_then_autoscaling},
      {{C::kMigrationLock, C::kAutohealingOn}, migration_scenarios::migration_lock_then_healing},
  };
  return all;
}

TEST(InteractionTable, EveryRowHasAScenario) {
  for (const Interaction& row : interactions()) {
    EXPECT_TRUE(scenarios().contains({row.running, row.arriving}))
        << "no scenario for the row (" << to_string(row.running) << ", " << to_string(row.arriving) << ")";
  }
  EXPECT_EQ(scenarios().size(), interactions().size()) << "a scenario for a row that is not in the table";
}

TEST(InteractionTable, EachPairHasOneRowAndAPairWithoutOneIsIndependent) {
  std::set<std::pair<Command, Command>> seen;
  for (const Interaction& row : interactions()) {
    EXPECT_TRUE(seen.insert({row.running, row.arriving}).second) << to_string(row.running);
    EXPECT_FALSE(row.outcome.empty());
    EXPECT_FALSE(row.told.empty());
  }
  EXPECT_EQ(resolve(C::kAutoscalingOff, C::kHostDrain), Resolution::kIndependent);
}

// docs/operational-state.md holds interaction_table_markdown() as it is.
TEST(InteractionTable, TheDocsPublishIt) {
  std::ifstream in(std::string(TRANCHE_SOURCE_DIR) + "/docs/operational-state.md");
  ASSERT_TRUE(in.good());
  const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(docs.find(interaction_table_markdown()), std::string::npos)
      << "docs/operational-state.md should publish this table:\n"
      << interaction_table_markdown();
}

class InteractionCell : public ::testing::TestWithParam<Interaction> {};

}  // namespace

void PrintTo(const Interaction& row, std::ostream* out) {
  *out << "(" << to_string(row.running) << ", " << to_string(row.arriving) << ": " << to_string(row.resolution) << ")";
}

namespace {

TEST_P(InteractionCell, FollowsTheTable) {
  const Interaction& row = GetParam();
  auto scenario = scenarios().find({row.running, row.arriving});
  ASSERT_NE(scenario, scenarios().end());
  FleetSim sim;
  scenario->second(sim);
}

std::string cell_name(const ::testing::TestParamInfo<Interaction>& info) {
  std::string name = std::string(to_string(info.param.running)) + "_then_" + std::string(to_string(info.param.arriving));
  std::string out;
  for (char c : name) {
    out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  }
  return out;
}

// A maintenance command given on one member ends when its member resumed
// (it stayed Running: complete_maintenance only looked at nodes' values).
TEST(MaintenanceOutcome, AMembersOwnRestartEndsWhenItResumed) {
  FleetSim sim;
  deploy(sim, shop(2), 2);
  const std::string member = *ids_in(sim, "Active").begin();
  const std::string restart = set(sim, {{"path", member.substr(5)}, {"maintenance", "restart"}});
  sim.run(6);
  EXPECT_EQ(sim.members()[member].state, "Active");
  EXPECT_EQ(sim.operation(restart)["status"], "Succeeded") << sim.operation(restart).dump();
  EXPECT_EQ(sim.operation(restart)["message"], "maintenance restart of " + member + " completed: the member resumed");
  EXPECT_TRUE(sim.store().list_operations("shop", "Running").value().empty());
}

// A cluster that shrinks in the middle of its maintenance replace: the
// node's completion counts what was replaced and what was removed, and each
// retired member says which it was. (It said "every member replaced".)
TEST(MaintenanceOutcome, AReplaceTheClusterShrankDuringSaysHowManyWereRemoved) {
  FleetSim sim;
  deploy(sim, shop(6, "1", "maxUnavailable: 0, maxSurge: 1"), 6);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(3);
  ASSERT_GE(events_saying(sim, "maintenance replace: replaced by shop/web/"), 1) << "one at a time, by its successor";
  ASSERT_TRUE(sim.apply(shop(3, "1", "maxUnavailable: 0, maxSurge: 1")).has_value());
  sim.run(20);
  EXPECT_TRUE(sim.markers().empty());
  EXPECT_EQ(sim.count("Active"), 3);
  const json ended = sim.operation(op);
  EXPECT_EQ(ended["status"], "Succeeded") << ended.dump();
  const std::string message = ended["message"];
  EXPECT_NE(message.find("members replaced"), std::string::npos) << message;
  EXPECT_NE(message.find("removed as the cluster shrank"), std::string::npos) << message;
  EXPECT_EQ(events_saying(sim, "every member replaced"), 0);
  EXPECT_GE(events_saying(sim, "removed as the cluster shrank to 3"), 1);
}

// An apply that starts a rollout is Running until the rollout ends, and
// ends as it does: Succeeded; Superseded by a newer apply, naming it; or
// Cancelled by an abort.
TEST(ApplyOutcome, AnApplyEndsAsItsRolloutDoes) {
  FleetSim sim;
  const std::string paced = "maxUnavailable: 1, maxSurge: 0, pauseBetweenBatchesSeconds: 5";
  deploy(sim, shop(4, "1", paced), 4);
  const std::string v2 = sim.apply(shop(4, "2", paced)).value().operation_id;
  EXPECT_EQ(sim.operation(v2)["status"], "Running");
  sim.run(2);
  const std::string v3 = sim.apply(shop(4, "3", paced)).value().operation_id;
  const json superseded = sim.operation(v2);
  EXPECT_EQ(superseded["status"], "Superseded") << superseded.dump();
  EXPECT_NE(superseded["message"].get<std::string>().find("superseded by " + v3), std::string::npos);
  EXPECT_NE(sim.operation(v3)["message"].get<std::string>().find("supersedes " + v2), std::string::npos);
  EXPECT_EQ(events_saying(sim, "superseded by " + v3, "CommandSuperseded"), 1);
  EXPECT_EQ(sim.operation(v3)["status"], "Running");
  sim.run(60);
  ASSERT_EQ(rollout_phase(sim), "Succeeded");
  EXPECT_EQ(sim.operation(v3)["status"], "Succeeded") << sim.operation(v3).dump();

  const std::string v4 = sim.apply(shop(4, "4", paced)).value().operation_id;
  sim.step();
  ASSERT_TRUE(sim.apps().rollout_control("shop", "abort", {"t", "t"}).has_value());
  EXPECT_EQ(sim.operation(v4)["status"], "Cancelled") << sim.operation(v4).dump();
  EXPECT_TRUE(sim.store().list_operations("shop", "Running").value().empty());
}

// A controller that restarted in the middle of a replace cannot know what
// left before: its completion says so rather than "every member replaced".
TEST(MaintenanceOutcome, AReplaceCompletedAfterAControllerRestartDoesNotClaimEveryMemberReplaced) {
  FleetSim sim;
  deploy(sim, shop(4, "1", "maxUnavailable: 0, maxSurge: 1"), 4);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "replace"}});
  sim.run(2);
  sim.kill_controller();
  sim.run(30);
  EXPECT_TRUE(sim.markers().empty());
  const json ended = sim.operation(op);
  EXPECT_EQ(ended["status"], "Succeeded") << ended.dump();
  EXPECT_NE(ended["message"].get<std::string>().find("no marked member is left (the controller restarted"),
            std::string::npos)
      << ended.dump();
}

// A time box (--for) that ends in the middle of a maintenance restart ends
// it as `maintenance off` would, and its operation says so: the member at
// its hook finishes and resumes, the others are left alone, and nothing
// stays Running.
TEST(TimeBoxedMaintenance, ExpiringEndsItAsOffWouldAndItsOperationSaysBy) {
  FleetSim sim;
  deploy(sim, shop(3), 3);
  const auto originals = ids_in(sim, "Active");
  sim.hold_maintenance(true);
  const std::string op = set(sim, {{"path", "web"}, {"maintenance", "restart"}, {"for", "10s"}});
  sim.run(2);
  ASSERT_EQ(sim.count("Maintenance"), 1) << "maxUnavailable 1: one at a time";
  sim.clock().advance(10s);
  ASSERT_EQ(sim.apps().expire_operational_values().value(), 1);
  const json ended = sim.operation(op);
  EXPECT_EQ(ended["status"], "Superseded") << ended.dump();
  EXPECT_NE(ended["message"].get<std::string>().find("superseded by op-"), std::string::npos) << ended.dump();
  EXPECT_EQ(sim.markers().size(), 1u) << "only the member at its hook keeps its marker";
  sim.hold_maintenance(false);
  sim.release_all();
  sim.run(6);
  EXPECT_EQ(sim.count("Active"), 3);
  EXPECT_EQ(ids_in(sim, "Active"), originals) << "restarted in place, none replaced";
  EXPECT_TRUE(sim.markers().empty());
  int into_maintenance = 0;
  for (const auto& e : sim.events("MemberStateChanged")) {
    into_maintenance += e.to_json == "\"Maintenance\"" ? 1 : 0;
  }
  EXPECT_EQ(into_maintenance, 1) << "no member went into maintenance after the expiry";
  EXPECT_TRUE(sim.store().list_operations("shop", "Running").value().empty());
}

INSTANTIATE_TEST_SUITE_P(Table, InteractionCell,
                         ::testing::ValuesIn(std::vector<Interaction>(interactions().begin(), interactions().end())),
                         cell_name);

}  // namespace
}  // namespace tranche
