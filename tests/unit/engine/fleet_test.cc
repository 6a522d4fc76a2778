// The controller's side of the agent protocol and the reconciler, with an
// injected clock and in-process fake connections.

#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"
#include "interposed_store.h"

#include <gtest/gtest.h>

#include "engine/application_service.h"
#include "engine/operational_state.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kApp = R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "1", command: ["web"]}
    update: {minReadySeconds: 2}
)";

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = make_fleet();
  }

  std::unique_ptr<Fleet> make_fleet() {
    auto fleet = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
    EXPECT_TRUE(fleet->load().has_value());
    return fleet;
  }

  using Joined = JoinedHost;

  Joined join(const std::string& hostname, Fleet* fleet = nullptr) {
    return join_host(fleet ? *fleet : *fleet_, hostname);
  }

  std::shared_ptr<FakeLink> reconnect(const Joined& host, std::vector<protocol::HelloMember> running,
                                      Fleet* fleet = nullptr) {
    auto link = std::make_shared<FakeLink>();
    protocol::Hello hello;
    hello.host_id = host.id;
    hello.host_token = host.token;
    hello.hostname = "again";
    hello.members = std::move(running);
    EXPECT_TRUE((fleet ? fleet : fleet_.get())->connect(hello, link).has_value());
    return link;
  }

  // shop/web with 3 members, maxUnavailable 1, all Active on `host`; what
  // the host reports of them.
  std::vector<protocol::MemberReport> three_active_members(const Joined& host) {
    std::string app = kApp;
    app.replace(app.find("desired: 2"), 10, "desired: 3");
    app.replace(app.find("update: {minReadySeconds: 2}"), 28, "update: {minReadySeconds: 0, maxUnavailable: 1}");
    apply(app);
    fleet_->tick();
    std::vector<protocol::MemberReport> running;
    for (int i = 1; i <= 3; ++i) {
      running.push_back({"shop/web/" + std::to_string(i), "Running", true, {}, i, {}});
    }
    heartbeat(host, running);
    fleet_->tick();
    return running;
  }

  void apply(const std::string& text = kApp) {
    ASSERT_TRUE(apps_->apply(text, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  }

  void heartbeat(const Joined& host, std::vector<protocol::MemberReport> members) {
    deliver(*fleet_, host.id, protocol::to_json(protocol::Heartbeat{++hb_seq_, std::move(members)}));
  }

  void result(const Joined& host, const std::string& id, bool ok, json data = nullptr) {
    deliver(*fleet_, host.id, result_message(id, ok, std::move(data)));
  }

  std::map<std::string, std::string> states() {
    std::map<std::string, std::string> out;
    const auto members = store_->list_members({}).value();
    for (const auto& m : members) {
      out[m.id] = m.state;
    }
    return out;
  }

  size_t events() { return store_->list_events({0, std::nullopt, 100000}).value().size(); }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  uint64_t hb_seq_ = 0;
};

TEST_F(FleetTest, WrongTokensAreRefused) {
  protocol::Hello hello;
  hello.join_token = "wrong";
  hello.hostname = "h";
  auto refused = fleet_->connect(hello, std::make_shared<FakeLink>());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);

  Joined a = join("a");
  protocol::Hello forged;
  forged.host_id = a.id;
  forged.host_token = "ht_forged";
  forged.hostname = "a";
  EXPECT_FALSE(fleet_->connect(forged, std::make_shared<FakeLink>()).has_value());
  EXPECT_TRUE(store_->get_host(a.id).value()->token_hash.find("ht_") == std::string::npos) << "stored hashed";
}

TEST_F(FleetTest, MembersArePlacedAcrossHostsAndStarted) {
  Joined a = join("a");
  Joined b = join("b");
  apply();
  fleet_->tick();
  ASSERT_EQ(a.link->of_type("command", "start").size(), 1u);
  ASSERT_EQ(b.link->of_type("command", "start").size(), 1u);
  EXPECT_EQ(states(), (std::map<std::string, std::string>{{"shop/web/1", "Starting"}, {"shop/web/2", "Starting"}}));
  const json start = a.link->of_type("command", "start")[0];
  EXPECT_EQ(start["spec"]["command"], json::array({"web"}));
  fleet_->tick();
  EXPECT_EQ(a.link->of_type("command", "start").size(), 1u) << "sent once per connection";
}

TEST_F(FleetTest, HealthyForMinReadySecondsMakesActive) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  heartbeat(a, {{"shop/web/1", "Running", true, {}, 10, {}}, {"shop/web/2", "Running", false, {}, 11, {}}});
  clock_.advance(1s);
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/1"], "Starting");
  clock_.advance(1s);
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/1"], "Active");
  EXPECT_EQ(states()["shop/web/2"], "Starting") << "never healthy";
}

// A batch's members become healthy at about the same time: they become
// Active in the same pass, as one change (a batch of 10,000 is one log line
// and one staged change per group, not 10,000), each with its own event.
TEST_F(FleetTest, MembersHealthyForMinReadySecondsBecomeActiveTogetherEachWithItsEvent) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  heartbeat(a, {{"shop/web/1", "Running", true, {}, 10, {}}, {"shop/web/2", "Running", true, {}, 11, {}}});
  fleet_->tick();
  const uint64_t before = store_->last_event_seq().value();
  clock_.advance(2s);
  fleet_->tick();
  const std::vector<EventRecord> changed = store_->list_events({before, std::nullopt, 100}).value();
  std::vector<EventRecord> active;
  for (const EventRecord& e : changed) {
    if (e.type == "MemberStateChanged" && e.to_json == "\"Active\"") {
      active.push_back(e);
    }
  }
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[1].seq, active[0].seq + 1);
  EXPECT_NE(active[0].member, active[1].member);
  for (const EventRecord& e : active) {
    EXPECT_EQ(e.from_json, "\"Starting\"") << e.member;
    EXPECT_EQ(e.message, "healthy for minReadySeconds (2s)") << e.member;
  }
}

TEST_F(FleetTest, DuplicateAndOutOfOrderResultsAreHarmless) {
  Joined a = join("a");
  Joined b = join("b");
  apply();
  fleet_->tick();
  const std::string on_a = a.link->of_type("command", "start")[0]["member"];
  const std::string on_b = b.link->of_type("command", "start")[0]["member"];
  const size_t before = events();

  result(a, "stop:" + on_a, true);  // a stop result before any stop: ignored
  EXPECT_EQ(states()[on_a], "Starting");
  result(a, "start:" + on_b, true, {{"pid", 99}});  // a result for another host's member: ignored
  EXPECT_FALSE(store_->get_member("shop", on_b).value()->pid.has_value());
  result(a, "start:" + on_a, true, {{"pid", 42}, {"ports", {{"http", 8080}}}});
  result(a, "start:" + on_a, true, {{"pid", 42}, {"ports", {{"http", 8080}}}});  // redelivered
  result(a, "start:unknown/x/1", false);
  EXPECT_EQ(store_->get_member("shop", on_a).value()->pid, 42);
  EXPECT_EQ(events(), before) << "no state changed";
  EXPECT_EQ(a.link->of_type("ack").size(), 5u) << "every result is acknowledged, so the agent stops replaying";
}

TEST_F(FleetTest, AMalformedMessageIsRejectedAndCountedAndTheLinkStaysUp) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  const std::string member = a.link->of_type("command", "start")[0]["member"];
  const size_t before = events();

  // A string pid threw in the untyped build and ended the agent's connection.
  deliver(*fleet_, a.id, result_message("start:" + member, true, {{"pid", "42"}, {"ports", {{"http", 8080}}}}));
  deliver(*fleet_, a.id, result_message("start:" + member, true, {{"pid", 42}, {"ports", json::array({8080})}}));
  deliver(*fleet_, a.id, result_message("start:" + member, true, {{"pid", -42}}));
  deliver(*fleet_, a.id,
          {{"type", "heartbeat"}, {"seq", 1}, {"members", {{{"id", member}, {"state", "Exited"}, {"healthy", "no"}}}}});
  deliver(*fleet_, a.id, {{"type", "event"}, {"event", "exited"}, {"exitCode", 1}});  // whose?
  deliver(*fleet_, a.id, {{"type", "gossip"}});

  EXPECT_EQ(fleet_->rejected_messages(), 6u);
  EXPECT_EQ(states()[member], "Starting");
  EXPECT_FALSE(store_->get_member("shop", member).value()->pid.has_value());
  EXPECT_EQ(events(), before) << "nothing changed state";
  EXPECT_TRUE(a.link->closed.empty()) << "the link stays up";
  EXPECT_TRUE(a.link->of_type("ack").empty()) << "a rejected result is not acknowledged: the agent keeps it";
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Ready");

  // The same link goes on.
  result(a, "start:" + member, true, {{"pid", 42}, {"ports", {{"http", 8080}}}});
  EXPECT_EQ(store_->get_member("shop", member).value()->pid, 42);
  EXPECT_EQ(a.link->of_type("ack").size(), 1u);
  EXPECT_EQ(fleet_->rejected_messages(), 6u);
}

TEST_F(FleetTest, RejectedMessagesAreNoSignOfLife) {
  Joined a = join("a");
  clock_.advance(2s);
  deliver(*fleet_, a.id, {{"type", "heartbeat"}, {"seq", "1"}});
  clock_.advance(1500ms);  // 3.5 s since a's last message that decoded
  fleet_->tick();
  EXPECT_EQ(fleet_->rejected_messages(), 1u);
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
}

TEST_F(FleetTest, AnExitedMemberIsReplaced) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 137, "killed"}));
  EXPECT_EQ(states()["shop/web/1"], "Failed");
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/1"], "Stopping") << "cleaned up on its host";
  EXPECT_EQ(states()["shop/web/3"], "Starting") << "replaced by a new member";
  result(a, "stop:shop/web/1", true);
  EXPECT_EQ(states()["shop/web/1"], "Terminated");
}

TEST_F(FleetTest, SilentHostBecomesUnreachableAndItsMembersAreReplaced) {
  Joined a = join("a");
  Joined b = join("b");
  apply();
  fleet_->tick();
  const std::string on_a = a.link->of_type("command", "start")[0]["member"];
  clock_.advance(2s);
  heartbeat(b, {});
  fleet_->tick();
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Ready");
  clock_.advance(1500ms);  // 3.5 s since a's last word, 1.5 s since b's
  heartbeat(b, {});
  fleet_->tick();
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
  EXPECT_EQ(store_->get_host(b.id).value()->state, "Ready");
  EXPECT_EQ(states()[on_a], "Unreachable");
  EXPECT_EQ(b.link->of_type("command", "start").size(), 2u) << "the replacement went to b";
  EXPECT_FALSE(a.link->closed.empty());

  // a comes back still running its old member: it is stale and stopped.
  auto back = reconnect(a, {{on_a, 1, "Running", 10}});
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Ready");
  EXPECT_EQ(states()[on_a], "Stopping");
  fleet_->tick();
  ASSERT_EQ(back->of_type("command", "stop").size(), 1u);
  EXPECT_EQ(back->of_type("command", "stop")[0]["member"], on_a);
}

// A result that was on its way when the host's connection was closed for
// silence: there is no connection to acknowledge it on (this used to
// dereference the closed link and crash the controller, bench P7 at
// 100,000 members). The agent sends it again once reconnected.
TEST_F(FleetTest, AResultArrivingAfterTheHostTimedOutIsLeftForItsReconnection) {
  Joined a = join("a");
  Joined b = join("b");
  apply();
  fleet_->tick();
  const std::string on_a = a.link->of_type("command", "start")[0]["member"];
  clock_.advance(4s);
  heartbeat(b, {});
  fleet_->tick();
  ASSERT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
  const size_t sent = a.link->sent.size();

  result(a, "start:" + on_a, true, {{"pid", 7}});
  fleet_->tick();
  EXPECT_EQ(a.link->sent.size(), sent) << "nothing goes out on the closed connection";
  EXPECT_EQ(states()[on_a], "Unreachable");
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable") << "not a sign of life";
}

// Past its deadline, but its frames wait unread in the socket: the
// controller is behind, not the host. It stays Ready, for a few timeouts.
TEST_F(FleetTest, AHostWhoseFramesWaitUnreadIsNotCalledSilentForAFewTimeouts) {
  Joined a = join("a");
  Joined b = join("b");
  a.link->unread = true;
  for (int second = 1; second <= 8; ++second) {
    clock_.advance(1s);
    heartbeat(b, {});
    fleet_->tick();
    ASSERT_EQ(store_->get_host(a.id).value()->state, "Ready") << "after " << second << " s";
  }
  EXPECT_TRUE(a.link->closed.empty());
  clock_.advance(4s);  // 12 s: still unread at 8 s (under three timeouts) it was watched again; now it is not
  heartbeat(b, {});
  fleet_->tick();
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
}

// Every agent reconnects to a restarted controller at once and waits its
// turn: a host not back yet is not Unreachable one timeout after the restart,
// only a few timeouts after it (HostDeadlines::kReconnectTimeouts).
TEST_F(FleetTest, ARestartedControllerGivesItsHostsAFewTimeoutsToReconnect) {
  Joined a = join("a");
  Joined b = join("b");
  fleet_ = make_fleet();  // restarted: same store, fresh memory, neither host connected
  reconnect(b, {});
  for (int second = 1; second <= 9; ++second) {  // three timeouts of 3 s
    clock_.advance(1s);
    heartbeat(b, {});
    fleet_->tick();
    ASSERT_EQ(store_->get_host(a.id).value()->state, "Ready") << "after " << second << " s";
  }
  clock_.advance(1s);
  heartbeat(b, {});
  fleet_->tick();
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
  EXPECT_EQ(store_->get_host(b.id).value()->state, "Ready");
}

TEST_F(FleetTest, AgentRunningSomethingUnknownIsToldToStopIt) {
  Joined a = join("a");
  auto link = reconnect(a, {{"gone/web/9", 1, "Running", 5}});
  ASSERT_EQ(link->of_type("command", "stop").size(), 1u);
  EXPECT_EQ(link->of_type("command", "stop")[0]["id"], "stop:gone/web/9");
}

TEST_F(FleetTest, ARestartedControllerResendsWhatIsOutstanding) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  result(a, "start:shop/web/1", true, {{"pid", 1}});

  auto restarted = make_fleet();  // same store, fresh memory
  auto link = reconnect(a, {{"shop/web/1", 1, "Running", 1}}, restarted.get());
  restarted->tick();
  // Both are still Starting. web/2's start has no result yet: the same command
  // id goes out again and the agent answers it from its journal. web/1 runs.
  const auto starts = link->of_type("command", "start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0]["id"], "start:shop/web/2");
  EXPECT_EQ(states().size(), 2u) << "no member created twice";
}

// Issue 14's fault campaign (seed 1417334799): a restarted controller took
// its next ordinal from the live members only, so once the newest members
// were Terminated it created a member under a Terminated one's id, and the
// store's INSERT OR REPLACE overwrote that member's history.
TEST_F(FleetTest, ARestartedControllerNeverReusesTheIdOfATerminatedMember) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  std::string one = kApp;
  one.replace(one.find("desired: 2"), 10, "desired: 1");
  apply(one);
  fleet_->tick();
  result(a, "stop:shop/web/2", true);
  ASSERT_EQ(states()["shop/web/2"], "Terminated");

  auto restarted = make_fleet();  // same store, fresh memory
  auto link = reconnect(a, {{"shop/web/1", 1, "Running", 1}}, restarted.get());
  apply();  // desired 2 again
  restarted->tick();
  const auto now = states();
  EXPECT_EQ(now.size(), 3u) << "a new member beside the history";
  EXPECT_EQ(now.at("shop/web/2"), "Terminated") << "the history is kept";
  EXPECT_TRUE(now.contains("shop/web/3")) << "the new member has a new id";
}

TEST_F(FleetTest, UndeployStopsEveryMember) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  ASSERT_TRUE(apps_->undeploy("shop", {"t", "t"}).has_value());
  fleet_->tick();
  EXPECT_EQ(a.link->of_type("command", "stop").size(), 2u);
  result(a, "stop:shop/web/1", true);
  result(a, "stop:shop/web/2", true);
  EXPECT_EQ(states(), (std::map<std::string, std::string>{{"shop/web/1", "Terminated"}, {"shop/web/2", "Terminated"}}));
}

TEST_F(FleetTest, CordonedHostGetsNothingNew) {
  Joined a = join("a");
  Joined b = join("b");
  ASSERT_TRUE(fleet_->set_host_draining(a.id, true, {"t", "t"}).has_value());
  apply();
  fleet_->tick();
  EXPECT_TRUE(a.link->of_type("command", "start").empty());
  EXPECT_EQ(b.link->of_type("command", "start").size(), 2u);
  EXPECT_EQ(fleet_->set_host_draining("nope", true, {"t", "t"}).error().code, ErrorCode::kNotFound);
}

std::vector<EventRecord> events_of(Store& store, const std::string& type);

constexpr const char* kScaled = R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "1", command: ["web"]}
    update: {minReadySeconds: 0}
    autoscaling: {windowSeconds: 10, scaleUpAbove: 0.8, scaleDownBelow: 0.2, cooldownSeconds: 30}
    operational: {autoscaling: "off"}
)";

TEST_F(FleetTest, AutoscalingTracksLoadWhenOffAndScalesWithCooldownWhenOn) {
  Joined a = join("a");
  apply(kScaled);
  fleet_->tick();
  auto report = [&](double load) {
    std::vector<protocol::MemberReport> reports;
    for (const auto& [id, state] : states()) {
      if (state != "Terminated") {
        reports.push_back({id, "Running", true, protocol::MemberStats{load, std::nullopt}, 1, {}});
      }
    }
    heartbeat(a, reports);
  };
  report(0.9);  // healthy: Starting -> Active on the next tick
  fleet_->tick();
  report(0.9);
  fleet_->tick();
  EXPECT_TRUE(events_of(*store_, "LoadStateChanged").empty()) << "no verdict before a whole window";
  clock_.advance(10s);
  report(0.9);
  fleet_->tick();
  ASSERT_EQ(events_of(*store_, "LoadStateChanged").size(), 1u);
  EXPECT_EQ(events_of(*store_, "LoadStateChanged")[0].to_json, "\"overload\"");
  clock_.advance(60s);
  report(0.9);
  fleet_->tick();
  EXPECT_EQ(states().size(), 2u) << "autoscaling off: tracked, not acted on";

  auto on = parse_operational_change({{"path", "web"}, {"autoscaling", "on"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *on, {"t", "t"}).has_value());
  fleet_->tick();
  EXPECT_EQ(states().size(), 3u) << "one member added";
  EXPECT_EQ(store_->list_cluster_scales("shop").value().at(0).desired, 3);
  clock_.advance(10s);
  report(0.9);
  fleet_->tick();
  EXPECT_EQ(states().size(), 3u) << "cooldown";
  clock_.advance(20s);
  report(0.9);
  fleet_->tick();
  EXPECT_EQ(states().size(), 4u);
  clock_.advance(60s);
  report(0.9);
  fleet_->tick();
  EXPECT_EQ(states().size(), 4u) << "never above max";

  clock_.advance(11s);  // the overload samples leave the window
  report(0.05);
  fleet_->tick();
  EXPECT_EQ(events_of(*store_, "LoadStateChanged").back().to_json, "\"underload\"");
  int live = 0;
  for (const auto& [id, state] : states()) {
    live += state == "Stopping" ? 0 : 1;
  }
  EXPECT_EQ(live, 3) << "one member removed";
  EXPECT_EQ(events_of(*store_, "ClusterScaled").size(), 3u);
}

TEST_F(FleetTest, AnOperatorsNewDesiredOverridesTheAutoscaler) {
  Joined a = join("a");
  apply(kScaled);
  WriteBatch batch;
  batch.mutations.push_back(PutClusterScale{{"shop", "web", 4, 2, "test", clock_.now()}});
  ASSERT_TRUE(store_->commit(batch).has_value());
  fleet_->tick();
  EXPECT_EQ(states().size(), 4u) << "the autoscaler's count holds";
  std::string changed = kScaled;
  changed.replace(changed.find("desired: 2"), 10, "desired: 1");
  apply(changed);
  fleet_->tick();
  int live = 0;
  for (const auto& [id, state] : states()) {
    live += state == "Stopping" ? 0 : 1;
  }
  EXPECT_EQ(live, 1) << "the manifest's new desired wins";
}

// Issue 14's fault campaign (seed 4254243005): maintenance counted as out
// only live members that were not Active, so a member being stopped (here:
// a failed one whose replacement has no room yet) did not count, and a
// restart left desired - 2 Active with maxUnavailable 1.
TEST_F(FleetTest, MaintenanceRestartCountsEveryMemberAlreadyOut) {
  Joined a = join_host(*fleet_, "a", 3);
  const std::vector<protocol::MemberReport> running = three_active_members(a);
  ASSERT_EQ(states()["shop/web/3"], "Active");

  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 1, "crashed"}));
  fleet_->tick();
  ASSERT_EQ(states()["shop/web/1"], "Stopping");
  ASSERT_FALSE(states().contains("shop/web/4")) << "no slot for a replacement while it stops";

  auto restart = parse_operational_change({{"path", "web"}, {"maintenance", "restart"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *restart, {"t", "t"}).has_value());
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/2"], "Active");
  EXPECT_EQ(states()["shop/web/3"], "Active") << "2 Active of 3 is all maxUnavailable 1 allows";
  EXPECT_TRUE(a.link->of_type("command", "maintenance").empty());

  result(a, "stop:shop/web/1", true);
  fleet_->tick();
  heartbeat(a, {running[1], running[2], {"shop/web/4", "Running", true, {}, 4, {}}});
  fleet_->tick();
  ASSERT_EQ(states()["shop/web/4"], "Active");
  fleet_->tick();
  EXPECT_EQ(a.link->of_type("command", "maintenance").size(), 1u) << "with the replacement Active, one may go";
}

TEST_F(FleetTest, MaintenanceRestartGoesAFewAtATimeAndEndsByItself) {
  Joined a = join("a");
  const std::vector<protocol::MemberReport> running = three_active_members(a);
  ASSERT_EQ(states()["shop/web/3"], "Active");

  auto restart = parse_operational_change({{"path", "web"}, {"maintenance", "restart"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *restart, {"t", "t"}).has_value());
  fleet_->tick();
  auto in_maintenance = [&] {
    int n = 0;
    for (const auto& [id, s] : states()) {
      n += s == "Maintenance" ? 1 : 0;
    }
    return n;
  };
  EXPECT_EQ(in_maintenance(), 1) << "maxUnavailable 1";
  const auto commands = a.link->of_type("command", "maintenance");
  ASSERT_EQ(commands.size(), 1u);
  const std::string first = commands[0]["member"];

  // Replayed and out-of-order results are harmless; the real one resumes it.
  result(a, "maintenance:" + first + ":0", true);
  result(a, commands[0]["id"], true, {{"pid", 100}});
  result(a, commands[0]["id"], true, {{"pid", 100}});
  EXPECT_EQ(states()[first], "Starting");
  EXPECT_EQ(store_->get_member("shop", first).value()->pid, 100);
  fleet_->tick();
  EXPECT_EQ(in_maintenance(), 0) << "the next waits until the first is Active again";
  heartbeat(a, running);
  fleet_->tick();
  EXPECT_EQ(in_maintenance(), 1);

  // "off" cancels what has not started; the member in maintenance finishes.
  auto off = parse_operational_change({{"path", "web"}, {"maintenance", "off"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *off, {"t", "t"}).has_value());
  const json second = a.link->of_type("command", "maintenance").back();
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"resumed", second["member"], std::nullopt, "ok"}));
  heartbeat(a, running);
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(in_maintenance(), 0);
  EXPECT_EQ(a.link->of_type("command", "maintenance").size(), 2u) << "the third was cancelled";
}

TEST_F(FleetTest, MaintenanceValueReturnsToOffWhenEveryMemberResumed) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  heartbeat(a, {{"shop/web/1", "Running", true, {}, 1, {}}, {"shop/web/2", "Running", true, {}, 2, {}}});
  clock_.advance(2s);
  fleet_->tick();
  auto restart = parse_operational_change({{"maintenance", "restart"}, {"propagate", true}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *restart, {"t", "t"}).has_value());
  for (int round = 0; round < 2; ++round) {
    fleet_->tick();
    const json command = a.link->of_type("command", "maintenance").back();
    result(a, command["id"], true);
    heartbeat(a, {{"shop/web/1", "Running", true, {}, 1, {}}, {"shop/web/2", "Running", true, {}, 2, {}}});
    clock_.advance(2s);
    fleet_->tick();
  }
  fleet_->tick();
  const auto values = store_->list_operational_values("shop").value();
  EXPECT_TRUE(std::none_of(values.begin(), values.end(), [](const OperationalValueRecord& v) {
    return v.setting == Setting::kMaintenance;
  })) << "markers and the application's value are gone";
  const auto changed = events_of(*store_, "OperationalStateChanged");
  EXPECT_NE(changed.back().message.find("completed"), std::string::npos) << changed.back().message;
}

std::vector<EventRecord> events_of(Store& store, const std::string& type) {
  auto all = store.list_events({0, std::nullopt, 100000}).value();
  std::erase_if(all, [&](const EventRecord& e) { return e.type != type; });
  return all;
}

TEST_F(FleetTest, AutohealingOffDelaysHealingUntilItIsOnAgain) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  auto off = parse_operational_change({{"path", "web"}, {"autohealing", "off"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *off, {"t", "t"}).has_value());
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 1, ""}));
  fleet_->tick();
  for (int i = 0; i < 5; ++i) {
    clock_.advance(1s);
    heartbeat(a, {});
    fleet_->tick();
  }
  EXPECT_EQ(states(), (std::map<std::string, std::string>{{"shop/web/1", "Failed"}, {"shop/web/2", "Starting"}}))
      << "neither stopped nor replaced";
  ASSERT_EQ(events_of(*store_, "HealingDelayed").size(), 1u) << "published once";
  EXPECT_TRUE(store_->get_member("shop", "shop/web/1").value()->healing_delayed_since.has_value());

  auto on = parse_operational_change({{"path", "web"}, {"autohealing", "on"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *on, {"t", "t"}).has_value());
  fleet_->tick();
  const auto resumed = events_of(*store_, "HealingResumed");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_NE(resumed[0].message.find("delayed since"), std::string::npos) << resumed[0].message;
  EXPECT_NE(resumed[0].message.find("(5s)"), std::string::npos) << resumed[0].message;
  EXPECT_FALSE(store_->get_member("shop", "shop/web/1").value()->healing_delayed_since.has_value());
  EXPECT_EQ(states()["shop/web/1"], "Stopping");
  EXPECT_EQ(states()["shop/web/3"], "Starting") << "healed now";
}

TEST_F(FleetTest, AutohealingOffKeepsAnUnreachableMemberUnreplaced) {
  Joined a = join("a");
  Joined b = join("b");
  auto off = parse_operational_change({{"autohealing", "off"}});
  apply();
  ASSERT_TRUE(apps_->set_operational_state("shop", *off, {"t", "t"}).has_value());
  fleet_->tick();
  clock_.advance(4s);
  heartbeat(b, {});
  fleet_->tick();
  EXPECT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
  EXPECT_EQ(states().size(), 2u) << "no replacement started";
  EXPECT_EQ(events_of(*store_, "HealingDelayed").size(), 1u);
}

// --- rollouts -------------------------------------------------------------

std::string rollout_app(const std::string& version, const std::string& update) {
  return R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: ")" +
         version + R"(", command: ["web"]}
    hooks: {update: ["sh", "-c", "true"]}
    operational: {autoscaling: "off"}
    update: )" +
         update + "\n";
}

class FleetRolloutTest : public FleetTest {
 protected:
  // Every member that the fleet asked `host` to start is running and healthy.
  void start_all(const Joined& host, FakeLink& link) {
    for (const auto& c : link.of_type("command", "start")) {
      result(host, c["id"], true, json{{"pid", 100}, {"ports", json::object()}});
    }
  }

  // shop/web's two members deployed with `update` on `host`, started and Active.
  void deploy_active(const Joined& host, const std::string& update) {
    apply(rollout_app("1", update));
    fleet_->tick();
    start_all(host, *host.link);
    healthy(host);
    fleet_->tick();
  }

  void healthy(const Joined& host) {
    std::vector<protocol::MemberReport> reports;
    for (const auto& [id, state] : states()) {
      if (state != "Terminated" && state != "Stopping") {
        reports.push_back({id, "Running", true, std::nullopt, 100, {}});
      }
    }
    heartbeat(host, reports);
  }

  std::string phase() {
    auto r = store_->latest_rollout("shop").value();
    return r ? r->phase : "none";
  }

  std::vector<MemberRecord> live_members() {
    auto all = store_->list_members({}).value();
    std::erase_if(all, [](const MemberRecord& m) { return m.state == "Terminated" || m.state == "Stopping"; });
    return all;
  }
};

TEST_F(FleetRolloutTest, InPlaceUpdatesEachMemberOnceAcrossAControllerRestart) {
  Joined a = join("a");
  deploy_active(a, "{method: in-place, maxUnavailable: 1, minReadySeconds: 0}");
  ASSERT_EQ(states(), (std::map<std::string, std::string>{{"shop/web/1", "Active"}, {"shop/web/2", "Active"}}));

  apply(rollout_app("2", "{method: in-place, maxUnavailable: 1, minReadySeconds: 0}"));
  fleet_->tick();
  EXPECT_EQ(phase(), "Progressing");
  ASSERT_EQ(states()["shop/web/1"], "Updating");
  EXPECT_EQ(states()["shop/web/2"], "Active") << "maxUnavailable 1: one at a time";
  const auto first = a.link->of_type("command", "update");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0]["id"], "update:shop/web/1:2");
  EXPECT_EQ(first[0]["spec"]["version"], "2");
  EXPECT_EQ(first[0]["spec"]["hook"], json::array({"sh", "-c", "true"}));

  // A controller restart resends the same command: the agent answers it from its journal.
  fleet_ = make_fleet();
  auto link = reconnect(a, {{"shop/web/1", 2, "Updating", 100}, {"shop/web/2", 1, "Running", 100}});
  fleet_->tick();
  const auto resent = link->of_type("command", "update");
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0]["id"], "update:shop/web/1:2");

  result(a, "update:shop/web/1:2", true, json{{"pid", 101}, {"ports", {{"http", 8101}}}});
  EXPECT_EQ(states()["shop/web/1"], "Starting");
  // The agent answers the member's first start again (same id): not the process any more.
  result(a, "start:shop/web/1", true, json{{"pid", 100}, {"ports", {{"http", 8100}}}});
  const auto updated = store_->get_member("shop", "shop/web/1").value().value();
  EXPECT_EQ(updated.pid, 101);
  EXPECT_EQ(updated.ports.at("http"), 8101);
  healthy(a);
  fleet_->tick();  // web/1 Active, so the next batch may start
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/2"], "Updating");
  result(a, "update:shop/web/2:2", true, json{{"pid", 102}, {"ports", json::object()}});
  healthy(a);
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(phase(), "Succeeded");
  std::set<std::string> ids;
  for (const auto& c : link->of_type("command", "update")) {
    ids.insert(c["id"]);
  }
  EXPECT_EQ(ids, (std::set<std::string>{"update:shop/web/1:2", "update:shop/web/2:2"}));
  for (const auto& m : live_members()) {
    EXPECT_EQ(m.revision, 2) << m.id;
    EXPECT_EQ(m.version, "2") << m.id;
    EXPECT_EQ(m.state, "Active") << m.id;
  }
}

// An apply that commits while a pass reads (after the applications, before
// the rollout) starts a rollout to a revision the pass's record of the
// application does not have yet. Planned against that record, the first
// member was updated "from revision 1 to 1" and then replaced by a new
// member (seen in P5 at 100,000 members: 8,901 replaced, 105,148 updates).
TEST_F(FleetRolloutTest, AnApplyDuringAPassIsRolledOutToItsOwnRevision) {
  Joined a = join("a");
  deploy_active(a, "{method: in-place, maxUnavailable: 1, minReadySeconds: 0}");
  InterposedStore racing(*store_);
  fleet_ = std::make_unique<Fleet>(racing, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
  ASSERT_TRUE(fleet_->load().has_value());  // its first pass visits every application
  auto link = reconnect(a, {{"shop/web/1", 1, "Running", 100}, {"shop/web/2", 1, "Running", 100}});
  racing.before_next_latest_rollout(
      [&] { apply(rollout_app("2", "{method: in-place, maxUnavailable: 1, minReadySeconds: 0}")); });
  fleet_->tick();  // reads revision 1, then the apply's rollout to revision 2
  fleet_->tick();

  const auto web1 = store_->get_member("shop", "shop/web/1").value().value();
  EXPECT_EQ(web1.state, "Updating");
  EXPECT_EQ(web1.revision, 2);
  std::set<std::string> ids;
  for (const auto& c : link->of_type("command", "update")) {
    ids.insert(c["id"]);
  }
  EXPECT_EQ(ids, std::set<std::string>{"update:shop/web/1:2"});
  EXPECT_EQ(states().size(), 2u) << "no member replaced";
  fleet_.reset();  // before `racing`, which it reads through
}

// A restarted controller reads its members in id order ("web/10" before
// "web/2"); a rollout still takes them oldest first, by ordinal. The
// application's name is long enough that member ids live on the heap, so
// that a record replaced in place (a new pid, a new revision) moves its id.
TEST_F(FleetRolloutTest, ARestartedControllerUpdatesMembersOldestFirst) {
  Joined a = join("a");
  const std::string app = "a-shop-with-a-long-name";
  auto twelve = [&](const std::string& version) {
    std::string text = rollout_app(version, "{method: in-place, maxUnavailable: 1, minReadySeconds: 0}");
    const std::string two = "{min: 1, max: 4, desired: 2}";
    text.replace(text.find(two), two.size(), "{min: 1, max: 12, desired: 12}");
    text.replace(text.find("shop"), 4, app);
    return text;
  };
  apply(twelve("1"));
  fleet_->tick();
  start_all(a, *a.link);
  healthy(a);
  fleet_->tick();
  ASSERT_EQ(states().size(), 12u);
  ASSERT_EQ(states()[app + "/web/12"], "Active");

  fleet_ = make_fleet();
  std::vector<protocol::HelloMember> running;
  for (int i = 1; i <= 12; ++i) {
    running.push_back({app + "/web/" + std::to_string(i), 1, "Running", 100});
  }
  auto link = reconnect(a, running);
  apply(twelve("2"));
  auto rollout_phase = [&] {
    auto r = store_->latest_rollout(app).value();
    return r ? r->phase : "none";
  };
  std::vector<std::string> order;
  for (int step = 0; step < 40 && rollout_phase() != "Succeeded"; ++step) {
    fleet_->tick();
    for (const auto& c : link->of_type("command", "update")) {
      const std::string id = c["id"];
      if (std::find(order.begin(), order.end(), id) == order.end()) {
        order.push_back(id);
        result(a, id, true, json{{"pid", 200}, {"ports", json::object()}});
      }
    }
    healthy(a);  // pid 100 again: each updated member's record is replaced once more
  }
  ASSERT_EQ(rollout_phase(), "Succeeded");
  std::vector<std::string> oldest_first;
  for (int i = 1; i <= 12; ++i) {
    oldest_first.push_back("update:" + app + "/web/" + std::to_string(i) + ":2");
  }
  EXPECT_EQ(order, oldest_first);
}

// The agent restarts a member itself when it updates it in place or takes it
// through a maintenance: a start command afterwards would only bring back the
// first start's result (four frames per member and change, for nothing).
TEST_F(FleetRolloutTest, AMemberTheAgentRestartedItselfGetsNoStartCommand) {
  Joined a = join("a");
  deploy_active(a, "{method: in-place, maxUnavailable: 2, minReadySeconds: 0}");
  ASSERT_EQ(a.link->of_type("command", "start").size(), 2u);

  apply(rollout_app("2", "{method: in-place, maxUnavailable: 2, minReadySeconds: 0}"));
  fleet_->tick();
  const auto updates = a.link->of_type("command", "update");
  ASSERT_EQ(updates.size(), 2u);
  for (const auto& c : updates) {
    result(a, c["id"], true, json{{"pid", 101}, {"ports", json::object()}});
  }
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/1"], "Starting");
  EXPECT_EQ(a.link->of_type("command", "start").size(), 2u) << "updated in place: not started again";
  healthy(a);
  fleet_->tick();
  fleet_->tick();
  ASSERT_EQ(phase(), "Succeeded");

  auto restart = parse_operational_change({{"maintenance", "restart"}, {"allAtOnce", true}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *restart, {"t", "t"}).has_value());
  fleet_->tick();
  const auto maintenances = a.link->of_type("command", "maintenance");
  ASSERT_EQ(maintenances.size(), 2u);
  for (const auto& c : maintenances) {
    deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"resumed", c["member"], std::nullopt, "ok"}));
  }
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/2"], "Starting");
  EXPECT_EQ(a.link->of_type("command", "start").size(), 2u) << "resumed after maintenance: not started again";
}

TEST_F(FleetRolloutTest, AFailingNewMemberRollsBackToThePreviousTemplates) {
  Joined a = join("a");
  const std::string policy = "{maxSurge: 1, maxUnavailable: 0, minReadySeconds: 0, maxFailures: 0}";
  deploy_active(a, policy);

  apply(rollout_app("2", policy));
  fleet_->tick();
  EXPECT_EQ(states()["shop/web/3"], "Starting") << "surge: the new member starts before an old one stops";
  EXPECT_EQ(states()["shop/web/1"], "Active");
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/3", 1, "crashed"}));
  fleet_->tick();  // counts the failure and starts the rollback
  EXPECT_EQ(phase(), "RollingBack");
  auto app = store_->get_application("shop").value();
  ASSERT_TRUE(app);
  EXPECT_EQ(app->current_revision, 3);
  EXPECT_EQ(store_->get_revision("shop", 3).value()->manifest_json,
            store_->get_revision("shop", 1).value()->manifest_json);
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(phase(), "Failed");
  const auto rollout = store_->latest_rollout("shop").value();
  EXPECT_NE(rollout->reason.find("maxFailures 0"), std::string::npos) << rollout->reason;
  const auto members = live_members();
  ASSERT_EQ(members.size(), 2u);
  for (const auto& m : members) {
    EXPECT_EQ(m.state, "Active") << m.id;
    EXPECT_EQ(m.revision, 3) << m.id << ": same template as revision 1, relabelled without a restart";
    EXPECT_EQ(m.version, "1");
  }
  EXPECT_EQ(a.link->of_type("command", "stop").size(), 1u) << "only the failed new member is stopped";
}

TEST_F(FleetRolloutTest, MaintenanceReplaceGivesEveryMarkedMemberASuccessor) {
  Joined a = join("a");
  deploy_active(a, "{maxSurge: 1, maxUnavailable: 0, minReadySeconds: 0}");
  auto change = parse_operational_change(json{{"path", "web"}, {"maintenance", "replace"}});
  ASSERT_TRUE(apps_->set_operational_state("shop", *change, {"t", "t"}).has_value());
  for (int round = 0; round < 6; ++round) {
    fleet_->tick();
    start_all(a, *a.link);
    healthy(a);
    for (const auto& c : a.link->of_type("command", "stop")) {
      result(a, c["id"], true);
    }
    fleet_->tick();
  }
  std::set<std::string> ids;
  for (const auto& m : live_members()) {
    ids.insert(m.id);
    EXPECT_EQ(m.state, "Active") << m.id;
  }
  std::string log;
  const auto all_events = store_->list_events({0, std::nullopt, 100000}).value();
  for (const auto& e : all_events) {
    log += e.type + " " + e.member + " " + e.from_json + "->" + e.to_json + " " + e.message + "\n";
  }
  EXPECT_EQ(ids, (std::set<std::string>{"shop/web/3", "shop/web/4"})) << log;
  EXPECT_EQ(states()["shop/web/1"], "Terminated");
  const auto values = store_->list_operational_values("shop").value();
  EXPECT_TRUE(std::none_of(values.begin(), values.end(), [](const OperationalValueRecord& v) {
    return v.setting == Setting::kMaintenance;
  })) << "markers and the node's value are cleared when every member is replaced";
}

// Issue 14, defect 2: members that were Active before their host's blip
// are Active again when it comes back still running them, so a rolling
// replace keeps charging them to maxUnavailable (they went back to Starting,
// and the planner retired every old member at once).
TEST_F(FleetRolloutTest, AHostBlipDuringARollingReplaceKeepsTheAvailabilityBudget) {
  auto manifest = [](const std::string& version) {
    return "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: 8, desired: 4}\n"
           "    artifact: {version: \"" +
           version +
           "\", command: [\"web\"]}\n    operational: {autoscaling: \"off\"}\n"
           "    update: {method: replace, maxUnavailable: 0, maxSurge: 1, minReadySeconds: 2}\n";
  };
  Joined a = join("a");
  auto settle = [&] {  // healthy heartbeats for longer than minReadySeconds
    for (int i = 0; i < 4; ++i) {
      start_all(a, *a.link);
      healthy(a);
      clock_.advance(1s);
      fleet_->tick();
    }
  };
  apply(manifest("1"));
  fleet_->tick();
  settle();
  ASSERT_EQ(live_members().size(), 4u);

  apply(manifest("2"));
  fleet_->tick();  // the surge member, Starting
  start_all(a, *a.link);
  healthy(a);
  auto left_old = [&] {  // old members no longer serving
    int n = 0;
    const auto all = store_->list_members({}).value();
    for (const auto& m : all) {
      n += m.revision == 1 && m.state != "Active" ? 1 : 0;
    }
    return n;
  };
  ASSERT_EQ(left_old(), 0);

  // The agent stops answering past the heartbeat timeout, then comes back
  // still running every member.
  clock_.advance(4s);
  fleet_->tick();
  ASSERT_EQ(store_->get_host(a.id).value()->state, "Unreachable");
  std::vector<protocol::HelloMember> running;
  const auto all = store_->list_members({}).value();
  for (const auto& m : all) {
    if (m.state == "Unreachable") {
      running.push_back({m.id, m.revision, "Running", 100});
    }
  }
  reconnect(a, running);
  healthy(a);
  fleet_->tick();

  EXPECT_EQ(left_old(), 0) << "maxUnavailable 0: no old member leaves before a new one is Active";
  const auto after = store_->list_members({}).value();
  for (const auto& m : after) {
    if (m.revision == 1) {
      EXPECT_EQ(m.state, "Active") << m.id << " was Active before the blip";
    }
  }
}

}  // namespace
}  // namespace tranche
