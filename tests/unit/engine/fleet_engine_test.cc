// The fleet engine's machinery: the group commit (nothing is acted on
// before it is durable), the work queue, and what never waits on an agent.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "../store/store_test_util.h"
#include "engine/application_service.h"
#include "engine/fleet/agent_inbox.h"
#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class FleetEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("tranche.db");
    store_ = std::move(open_sqlite_store({path_}).value());
    store_->observe_commits([this](std::chrono::nanoseconds, bool ok) {
      ++commits_;
      if (on_commit_ && ok) {
        on_commit_();
      }
    });
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = make_fleet();
  }

  std::unique_ptr<Fleet> make_fleet() {
    auto fleet = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
    EXPECT_TRUE(fleet->load().has_value());
    return fleet;
  }

  using Joined = JoinedHost;
  Joined three_clusters_to_restart(bool all_at_once = true);
  void all_started_and_healthy(Joined& host);

  // A fleet that writes a rollout's batch in groups of `updates` updates.
  void use_updates_per_group(size_t updates) {
    FleetOptions options{1s, 3s, 10s, "jt_secret"};
    options.updates_per_group = updates;
    fleet_ = std::make_unique<Fleet>(*store_, clock_, options);
    ASSERT_TRUE(fleet_->load().has_value());
  }

  // shop/web: `desired` members updated in place, `batch` at a time.
  static std::string in_place_manifest(int desired, int batch, const std::string& version) {
    return "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: " + std::to_string(desired + 10) +
           ", desired: " + std::to_string(desired) + "}\n    update: {method: in-place, maxUnavailable: " +
           std::to_string(batch) + ", minReadySeconds: 0}\n    artifact: {version: \"" + version +
           "\", command: [\"web\"]}\n";
  }


  Joined join(const std::string& hostname, int64_t slots = 64) { return join_host(*fleet_, hostname, slots); }

  void apply(int members) {
    const std::string manifest = "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: " +
                                 std::to_string(members + 10) + ", desired: " + std::to_string(members) +
                                 "}\n    artifact: {version: \"1\", command: [\"web\"]}\n";
    ASSERT_TRUE(apps_->apply(manifest, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  }

  std::vector<std::string> command_ids(const FakeLink& link, const std::string& command) {
    std::vector<std::string> ids;
    for (const json& c : link.commands(command)) {
      ids.push_back(c["id"]);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  store_test::TempDir dir_;
  std::string path_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  uint64_t host_seq_ = 0;         // the heartbeats' seq
  std::atomic<int> commits_ = 0;  // a group written ahead commits on a thread of its own
  std::function<void()> on_commit_;
};

TEST_F(FleetEngineTest, OnePassPlacesAThousandMembersInOneCommit) {
  std::vector<Joined> hosts;
  for (int i = 0; i < 20; ++i) {
    hosts.push_back(join("h" + std::to_string(i)));
  }
  apply(1000);
  const int before = commits_;

  fleet_->tick();

  EXPECT_EQ(commits_ - before, 1) << "one group for the whole pass, not two commits a member";
  const auto members = store_->list_members({}).value();
  ASSERT_EQ(members.size(), 1000u);
  for (const auto& m : members) {
    EXPECT_EQ(m.state, "Starting") << m.id;
  }
  size_t starts = 0;
  for (const auto& h : hosts) {
    starts += h.link->commands("start").size();
  }
  EXPECT_EQ(starts, 1000u);
  // Created and Starting of each member, gap-free.
  const auto events = store_->list_events({0, std::nullopt, 100000}).value();
  for (size_t i = 1; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, events[i - 1].seq + 1);
  }
}

TEST_F(FleetEngineTest, ALargeApplyIsPlacedOverSeveralBoundedPasses) {
  std::vector<Joined> hosts;
  for (int i = 0; i < 10; ++i) {
    hosts.push_back(join("h" + std::to_string(i), 1000));
  }
  apply(2500);
  auto started = [&] {
    size_t n = 0;
    for (const auto& h : hosts) {
      n += h.link->commands("start").size();
    }
    return n;
  };
  fleet_->tick();
  EXPECT_EQ(store_->list_members({}).value().size(), 2000u) << "at most 2,000 a pass";
  EXPECT_EQ(started(), 2000u) << "and their commands go out with it";
  fleet_->tick();
  EXPECT_EQ(store_->list_members({}).value().size(), 2500u);
  EXPECT_EQ(started(), 2500u);
}

TEST_F(FleetEngineTest, APassSaysWhenItLeftPlacementsForTheNextOne) {
  for (int i = 0; i < 10; ++i) {
    join("h" + std::to_string(i), 1000);
  }
  apply(2500);
  EXPECT_TRUE(fleet_->tick()) << "2,000 placed, 500 wait: the caller ticks again sooner";
  EXPECT_FALSE(fleet_->tick()) << "the rest placed";
  EXPECT_EQ(store_->list_members({}).value().size(), 2500u);
  EXPECT_FALSE(fleet_->tick()) << "nothing left";
}

TEST_F(FleetEngineTest, AnIdlePassWritesNothing) {
  join("a");
  apply(2);
  fleet_->tick();
  const int before = commits_;
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(commits_.load(), before);
}

TEST_F(FleetEngineTest, CommandsGoOutOnlyOnceDurableAndAgainUnderTheSameIdsAfterACrash) {
  Joined a = join("a");
  apply(3);
  std::vector<size_t> sent_at_commit;
  on_commit_ = [&] { sent_at_commit.push_back(a.link->commands("start").size()); };

  fleet_->tick();

  ASSERT_FALSE(sent_at_commit.empty());
  EXPECT_EQ(sent_at_commit.back(), 0u) << "no start command before the members' Starting is written";
  const auto first = command_ids(*a.link, "start");
  ASSERT_EQ(first.size(), 3u);

  // SIGKILL right after the commit, as if nothing had reached the agent: a
  // new controller on the same store, the agent reconnecting with nothing.
  on_commit_ = nullptr;
  fleet_ = make_fleet();
  auto link = std::make_shared<FakeLink>();
  protocol::Hello hello;
  hello.host_id = a.id;
  hello.host_token = a.token;
  hello.hostname = "a";
  ASSERT_TRUE(fleet_->connect(hello, link).has_value());
  fleet_->tick();

  EXPECT_EQ(command_ids(*link, "start"), first) << "the same ids: an agent that had them acts once";
  EXPECT_EQ(store_->list_members({}).value().size(), 3u) << "no member placed twice";
}

TEST_F(FleetEngineTest, AGroupTheStoreRefusesIsNotActedOnAndTheFleetReloads) {
  Joined a = join("a");
  apply(2);
  fleet_->tick();
  auto started = [&] {
    std::set<std::string> members;
    for (const json& c : a.link->commands("start")) {
      members.insert(c["member"].get<std::string>());
    }
    return members;
  };
  ASSERT_EQ(started().size(), 2u);
  // The medium refuses the pass that places a third member.
  store_test::RawDb(path_).refuse_inserts("members");
  apply(3);
  fleet_->tick();
  EXPECT_EQ(started(), (std::set<std::string>{"shop/web/1", "shop/web/2"}))
      << "nothing of a refused group is acted on (commands of the reloaded view go out again, same ids)";
  EXPECT_EQ(store_->list_members({}).value().size(), 2u);
  auto listed = fleet_->members_json({}, std::nullopt);
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ((*listed)["items"].size(), 2u) << "the view was reloaded from the store";

  store_test::RawDb(path_).allow_inserts();
  fleet_->tick();
  const auto members = store_->list_members({}).value();
  ASSERT_EQ(members.size(), 3u);
  std::set<std::string> stored;
  for (const auto& m : members) {
    EXPECT_EQ(m.state, "Starting");
    stored.insert(m.id);
  }
  EXPECT_EQ(started(), stored);
}

TEST_F(FleetEngineTest, AResultIsAcknowledgedOnlyOnceItsEffectIsDurable) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  int wakes = 0;
  fleet_->on_staged([&] { ++wakes; });
  deliver(*fleet_, a.id, result_message("start:shop/web/1", true, {{"pid", 42}, {"ports", json::object()}}));
  EXPECT_EQ(wakes, 1) << "the committer is woken";
  EXPECT_TRUE(a.link->of_type("ack").empty()) << "no ack before the commit";
  EXPECT_FALSE(store_->get_member("shop", "shop/web/1").value()->pid.has_value());

  ASSERT_TRUE(fleet_->flush().has_value());
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->pid, 42);
  ASSERT_EQ(a.link->of_type("ack").size(), 1u);
  EXPECT_EQ(a.link->of_type("ack")[0]["id"], "start:shop/web/1");
}

TEST_F(FleetEngineTest, ASettledClusterWaitsForAChangeOrTheResync) {
  Joined a = join("a");
  uint64_t seq = 0;
  auto beat = [&] {  // every member the agent was told to start runs, healthy
    std::vector<protocol::MemberReport> reports;
    for (const json& start : a.link->commands("start")) {
      reports.push_back({start["member"], "Running", true, {}, 10, {}});
    }
    deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{++seq, reports}));
  };
  apply(2);
  fleet_->tick();
  beat();
  clock_.advance(3s);  // minReadySeconds
  beat();
  fleet_->tick();
  const auto settled = store_->list_members({}).value();
  for (const auto& m : settled) {
    ASSERT_EQ(m.state, "Active") << m.id;
  }
  // A change nobody announced (no event): the autoscaler's count written
  // behind the fleet's back. Settled clusters are not looked at...
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutClusterScale{{"shop", "web", 3, 2, "test", clock_.now()}}}}));
  beat();
  fleet_->tick();
  EXPECT_EQ(store_->list_members({}).value().size(), 2u) << "an idle pass reconciles nothing";
  // ...until the resync.
  for (int i = 0; i < 10; ++i) {
    clock_.advance(1s);
    beat();
    fleet_->tick();
  }
  EXPECT_EQ(store_->list_members({}).value().size(), 3u);
  // A change announced by an event is acted on at the next pass.
  apply(1);
  fleet_->tick();
  int live = 0;
  const auto after_apply = store_->list_members({}).value();
  for (const auto& m : after_apply) {
    live += m.state == "Starting" || m.state == "Active" ? 1 : 0;
  }
  EXPECT_EQ(live, 1);
}

// An application's operational values (100,000 maintenance markers during
// an --all-at-once) are read once and kept: read again after an event names
// the application, the fleet's own write of one, or the resync.
TEST_F(FleetEngineTest, OperationalValuesAreReadAgainOnlyAfterAChangeIsAnnouncedOrTheResync) {
  Joined a = join("a");
  uint64_t seq = 0;
  auto beat = [&] {  // what the agent runs: every member it started but web/1, which exits below
    std::vector<protocol::MemberReport> reports;
    for (const json& start : a.link->commands("start")) {
      if (start["member"] != "shop/web/1") {
        reports.push_back({start["member"], "Running", true, {}, 10, {}});
      }
    }
    deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{++seq, reports}));
  };
  auto state_of = [&](const std::string& id) { return store_->get_member("shop", id).value()->state; };
  apply(2);
  fleet_->tick();
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{++seq, {{"shop/web/1", "Running", true, {}, 10, {}}}}));
  beat();
  clock_.advance(3s);  // minReadySeconds
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{++seq, {{"shop/web/1", "Running", true, {}, 10, {}}}}));
  beat();
  fleet_->tick();
  ASSERT_EQ(state_of("shop/web/2"), "Active");
  // A maintenance marker written behind the fleet's back (no event)...
  OperationalValueRecord marker{"shop",       "web/2", Setting::kMaintenance, "restart", std::nullopt,
                                std::nullopt, "test",  clock_.now()};
  marker.all_at_once = true;
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutOperationalValue{marker}}}));
  // ...is not seen by a pass that reconciles the cluster for a reason of its
  // own (web/1 exited): the values it read before stand...
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 1, "crashed"}));
  fleet_->tick();
  EXPECT_EQ(state_of("shop/web/2"), "Active");
  // ...until the resync reads them again.
  for (int i = 0; i < 10 && state_of("shop/web/2") == "Active"; ++i) {
    clock_.advance(1s);
    beat();
    fleet_->tick();
  }
  EXPECT_EQ(state_of("shop/web/2"), "Maintenance");
}

TEST_F(FleetEngineTest, LogsAreAnsweredWhenTheAgentAnswersWithoutAThreadWaiting) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  std::vector<Result<json>> answers;
  fleet_->logs("shop/web/1", std::nullopt, std::nullopt, 5s, [&](Result<json> r) { answers.push_back(std::move(r)); });
  EXPECT_TRUE(answers.empty()) << "logs() returned before the agent answered";
  const auto asked = a.link->commands("logs");
  ASSERT_EQ(asked.size(), 1u);
  deliver(*fleet_, a.id,
          json{{"type", "result"},
               {"id", asked[0]["id"]},
               {"ok", true},
               {"message", ""},
               {"data", {{"stdout", "hello\n"}, {"stderr", ""}}}});
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0].has_value()) << answers[0].error().describe();
  EXPECT_EQ((*answers[0])["stdout"], "hello\n");
  EXPECT_EQ((*answers[0])["member"], "shop/web/1");
}

TEST_F(FleetEngineTest, LogsNotAnsweredInTimeFailOnTheNextPassAndUnknownMembersAtOnce) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  std::vector<Result<json>> answers;
  auto collect = [&](Result<json> r) { answers.push_back(std::move(r)); };
  fleet_->logs("shop/web/9", std::nullopt, std::nullopt, 5s, collect);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].error().code, ErrorCode::kNotFound);
  fleet_->logs("shop/web/1", std::string("other"), std::nullopt, 5s, collect);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[1].error().code, ErrorCode::kNotFound) << "another application's member is hidden";

  fleet_->logs("shop/web/1", std::nullopt, std::nullopt, 5s, collect);
  clock_.advance(4s);
  fleet_->tick();
  EXPECT_EQ(answers.size(), 2u);
  clock_.advance(2s);
  fleet_->tick();
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[2].error().code, ErrorCode::kUnavailable);
  EXPECT_NE(answers[2].error().message.find("did not send the logs within"), std::string::npos);
}

// ---- The agents' edge: messages wait in the inbox, commands go out in batches ----

TEST(AgentInboxTest, HandsOverEverythingInArrivalOrderOnce) {
  AgentInbox inbox;
  EXPECT_TRUE(inbox.empty());
  for (uint64_t i = 1; i <= 3; ++i) {
    inbox.push({"h" + std::to_string(i), TimePoint{std::chrono::seconds(i)}, protocol::Heartbeat{i, {}}});
  }
  EXPECT_FALSE(inbox.empty());
  auto taken = inbox.take();
  ASSERT_EQ(taken.size(), 3u);
  for (uint64_t i = 1; i <= 3; ++i) {
    EXPECT_EQ(taken[i - 1].host, "h" + std::to_string(i));
    EXPECT_EQ(taken[i - 1].arrived, TimePoint{std::chrono::seconds(i)});
    EXPECT_EQ(std::get<protocol::Heartbeat>(taken[i - 1].message).seq, i);
  }
  EXPECT_TRUE(inbox.empty());
  inbox.push({"h4", TimePoint{}, protocol::Ack{"x"}});
  auto next = inbox.take(std::move(taken));
  ASSERT_EQ(next.size(), 1u) << "the spare buffer handed in is not handed back full";
  EXPECT_EQ(next[0].host, "h4");
}

TEST_F(FleetEngineTest, AnAgentsMessageNeverWaitsForTheFleetsLock) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  std::atomic<int> wakes{0};
  fleet_->on_staged([&] { ++wakes; });
  // A pass that holds the fleet's lock and does not let go: a logs request
  // that timed out is answered under it, and its callback waits for the test.
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  fleet_->logs("shop/web/1", std::nullopt, std::nullopt, 1s, [&](Result<json>) {
    entered.set_value();
    released.wait();
  });
  clock_.advance(2s);
  std::thread pass([&] { fleet_->tick(); });
  const bool holding = entered.get_future().wait_for(10s) == std::future_status::ready;
  auto delivered = std::async(std::launch::async, [&] {
    deliver(*fleet_, a.id, result_message("start:shop/web/1", true, {{"pid", 42}, {"ports", json::object()}}));
  });
  const bool returned = delivered.wait_for(10s) == std::future_status::ready;
  release.set_value();
  pass.join();
  ASSERT_TRUE(holding) << "the pass never answered the logs request";
  EXPECT_TRUE(returned) << "receive() waited for the pass to let go of the fleet";
  EXPECT_EQ(wakes, 1) << "the result wakes the committer";

  ASSERT_TRUE(fleet_->flush().has_value());
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->pid, 42) << "the committer handled it";
  ASSERT_EQ(a.link->of_type("ack").size(), 1u);
}

TEST_F(FleetEngineTest, HeartbeatsWaitForThePassResultsWakeTheCommitter) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  int wakes = 0;
  fleet_->on_staged([&] { ++wakes; });
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{1, {{"shop/web/1", "Running", true, {}, 7, {}}}}));
  EXPECT_EQ(wakes, 0) << "a heartbeat wakes nobody";
  EXPECT_FALSE(store_->get_member("shop", "shop/web/1").value()->pid.has_value());
  fleet_->tick();
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->pid, 7) << "the next pass handled it";

  deliver(*fleet_, a.id, result_message("start:shop/web/1", true, {{"pid", 7}, {"ports", json::object()}}));
  EXPECT_EQ(wakes, 1);
  EXPECT_TRUE(a.link->of_type("ack").empty()) << "handled by the committer, not by the connection";
  ASSERT_TRUE(fleet_->flush().has_value());
  EXPECT_EQ(a.link->of_type("ack").size(), 1u);
}

TEST_F(FleetEngineTest, AnAckWakesNobodyAndIsTakenAtTheInboxsTurn) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  int wakes = 0;
  fleet_->on_staged([&] { ++wakes; });
  deliver(*fleet_, a.id, protocol::to_json(protocol::Ack{"start:shop/web/1"}));
  EXPECT_EQ(wakes, 0) << "an ack changes nothing: the committer sleeps on";
  fleet_->handle_inbox();
  EXPECT_EQ(wakes, 0) << "and nothing was staged by it";
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 1, "gone"}));
  EXPECT_EQ(wakes, 1) << "an event does wake it";
}

// A member's new state is what moves its cluster on: written, it asks for a
// pass now instead of waiting for the next tick; a message that changes no
// member's state asks for nothing.
TEST_F(FleetEngineTest, AnAgentsMessageThatChangesAMembersStateAsksForAPass) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  ASSERT_FALSE(fleet_->take_pass_request());
  deliver(*fleet_, a.id, protocol::to_json(protocol::Ack{"start:shop/web/1"}));
  deliver(*fleet_, a.id, result_message("start:shop/web/1", true, {{"pid", 42}, {"ports", json::object()}}));
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{++host_seq_, {{"shop/web/1", "Running", true, {}, 42, {}}}}));
  EXPECT_FALSE(fleet_->take_pass_request()) << "an ack, a pid and a health report change no state";

  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 1, "crashed"}));
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->state, "Failed");
  EXPECT_TRUE(fleet_->take_pass_request());
  EXPECT_FALSE(fleet_->take_pass_request()) << "one change, one request";

  fleet_->tick();  // stops it and starts its replacement
  ASSERT_EQ(store_->get_member("shop", "shop/web/1").value()->state, "Stopping");
  deliver(*fleet_, a.id, protocol::to_json(protocol::Ack{"stop:shop/web/1"}));
  EXPECT_FALSE(fleet_->take_pass_request()) << "the pass's own changes need no other pass";
}

TEST_F(FleetEngineTest, AHeartbeatsHandlingTimeCountsItsWaitForThePass) {
  Joined a = join("a");
  fleet_->on_staged([] {});
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{1, {}}));
  deliver(*fleet_, a.id, result_message("start:none", true, {}));
  EXPECT_EQ(fleet_->heartbeat_handling().count(), 0u) << "waiting in the inbox: not handled yet";
  clock_.advance(3ms);
  fleet_->tick();
  const Histogram handled = fleet_->heartbeat_handling();
  EXPECT_EQ(handled.count(), 1u) << "the heartbeat, not the result";
  EXPECT_DOUBLE_EQ(handled.sum(), 0.003) << "arrival to handled, by the fleet's clock";
  EXPECT_DOUBLE_EQ(handled.quantile_bound(0.99), 0.005);
}

TEST_F(FleetEngineTest, HeartbeatsAreHandledBetweenPassesAndWhatTheyChangeIsWrittenByTheCommitter) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  int wakes = 0;
  fleet_->on_staged([&] { ++wakes; });
  fleet_->handle_inbox();
  EXPECT_EQ(wakes, 0) << "nothing waited";
  deliver(*fleet_, a.id, protocol::to_json(protocol::Heartbeat{1, {{"shop/web/1", "Running", true, {}, 7, {}}}}));
  EXPECT_EQ(wakes, 0) << "a heartbeat wakes nobody";
  clock_.advance(1ms);
  fleet_->handle_inbox();
  EXPECT_EQ(fleet_->heartbeat_handling().count(), 1u);
  EXPECT_DOUBLE_EQ(fleet_->heartbeat_handling().sum(), 0.001);
  EXPECT_EQ(wakes, 1) << "its pid is staged: the committer writes it";
  ASSERT_TRUE(fleet_->flush().has_value());
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->pid, 7);
}

TEST_F(FleetEngineTest, WhatAConnectionSaidIsHandledBeforeTheHelloOfItsSuccessor) {
  Joined a = join("a");
  apply(1);
  fleet_->tick();
  int wakes = 0;
  fleet_->on_staged([&] { ++wakes; });
  deliver(*fleet_, a.id, result_message("start:shop/web/1", true, {{"pid", 42}, {"ports", json::object()}}));
  // The agent reconnects before the committer ran: its result was said on
  // the old connection, and is acknowledged there.
  auto link = std::make_shared<FakeLink>();
  protocol::Hello hello;
  hello.host_id = a.id;
  hello.host_token = a.token;
  hello.hostname = "a";
  hello.members.push_back({"shop/web/1", 1, "Running", 42});
  ASSERT_TRUE(fleet_->connect(hello, link).has_value());
  ASSERT_TRUE(fleet_->flush().has_value());
  EXPECT_EQ(a.link->of_type("ack").size(), 1u);
  EXPECT_TRUE(link->of_type("ack").empty());
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->pid, 42);
  EXPECT_EQ(store_->get_member("shop", "shop/web/1").value()->state, "Starting") << "nothing lost across the hello";
}

// Every member started on `host` reports Running and healthy, twice, a
// heartbeat timeout apart: the next pass makes them Active.
void FleetEngineTest::all_started_and_healthy(Joined& host) {
  for (int beat = 0; beat < 2; ++beat) {
    std::vector<protocol::MemberReport> reports;
    for (const json& start : host.link->commands("start")) {
      reports.push_back({start["member"], "Running", true, {}, 10, {}});
    }
    deliver(*fleet_, host.id, protocol::to_json(protocol::Heartbeat{++host_seq_, reports}));
    clock_.advance(beat == 0 ? 3s : 0s);
  }
  fleet_->tick();
}

// Three clusters of 20 Active members on host "a", a fleet that writes a
// group per cluster (a cluster's change is 40 mutations), and a maintenance
// restart --all-at-once of the application accepted: the next pass changes
// the 60 members.
FleetEngineTest::Joined FleetEngineTest::three_clusters_to_restart(bool all_at_once) {
  FleetOptions options{1s, 3s, 10s, "jt_secret"};
  options.mutations_per_group = 30;
  fleet_ = std::make_unique<Fleet>(*store_, clock_, options);
  EXPECT_TRUE(fleet_->load().has_value());
  Joined a = join("a", 100);
  std::string manifest = "application: shop\nclusters:\n";
  for (const char* name : {"a", "b", "c"}) {
    manifest += std::string("  - name: ") + name +
                "\n    members: {min: 1, max: 30, desired: 20}\n    artifact: {version: \"1\", command: [\"web\"]}\n";
  }
  EXPECT_TRUE(apps_->apply(manifest, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  fleet_->tick();
  all_started_and_healthy(a);
  const auto active = store_->list_members({}).value();
  EXPECT_EQ(active.size(), 60u);
  for (const auto& m : active) {
    EXPECT_EQ(m.state, "Active") << m.id;
  }
  auto change = parse_operational_change(json{{"maintenance", "restart"}, {"allAtOnce", all_at_once}});
  EXPECT_TRUE(change.has_value());
  EXPECT_TRUE(apps_->set_operational_state("shop", *change, {"t", "t"}).has_value());
  return a;
}

TEST_F(FleetEngineTest, APassThatChangesManyMembersWritesThemInGroupsEachSentOnceDurable) {
  Joined a = three_clusters_to_restart();
  const auto first_seq = store_->last_event_seq().value();
  // The groups are written while the pass stages the next ones, and the
  // commands go out as each group's answer comes in: a command is sent only
  // for a member whose Maintenance the store has.
  std::vector<std::string> sent_before_durable;
  a.link->on_send = [&](const json& message) {
    if (message.value("command", "") == "maintenance") {
      auto member = store_->get_member("shop", message["member"]);
      if (!member || !*member || (*member)->state != "Maintenance") {
        sent_before_durable.push_back(message["member"]);
      }
    }
  };
  const int commits_before = commits_;

  fleet_->tick();

  a.link->on_send = nullptr;
  EXPECT_GE(commits_ - commits_before, 3) << "one group per cluster, not one for the pass";
  EXPECT_TRUE(sent_before_durable.empty()) << sent_before_durable.size() << " commands before their change was durable";
  EXPECT_EQ(a.link->commands("maintenance").size(), 60u);
  const auto in_maintenance = store_->list_members({}).value();
  for (const auto& m : in_maintenance) {
    EXPECT_EQ(m.state, "Maintenance") << m.id;
  }
  const auto events = store_->list_events({first_seq, std::nullopt, 100000}).value();
  ASSERT_GE(events.size(), 60u);
  for (size_t i = 1; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, events[i - 1].seq + 1) << "event seqs stay gap-free across the groups";
  }
}

// A long maintenance hook must not cost a pass over the application's
// markers every tick: once every marked member's command is at its agent,
// only an answer (or an operator's change, or the resync) brings a pass.
TEST_F(FleetEngineTest, AMaintenanceWhoseMembersAreAllAtTheirAgentsWaitsForTheirAnswers) {
  Joined a = three_clusters_to_restart();
  fleet_->tick();
  const auto commands = a.link->commands("maintenance");
  ASSERT_EQ(commands.size(), 60u);
  fleet_->tick();  // the pass after the commands went out finds them all at the agent
  const auto live = [&] {
    const auto members = store_->list_members({}).value();
    return std::count_if(members.begin(), members.end(), [](const MemberRecord& m) { return m.state != "Terminated"; });
  };
  // A change nobody announced (no event): cluster a's count written behind
  // the fleet's back. While the maintenance waits, no pass looks at it...
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutClusterScale{{"shop", "a", 21, 20, "test", clock_.now()}}}}));
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(live(), 60) << "a pass reconciled a maintenance that only waits for its agents";
  // ...until an agent answers for a member of cluster a.
  std::string member_of_a;
  for (const json& c : commands) {
    if (c["member"].get<std::string>().starts_with("shop/a/")) {
      member_of_a = c["member"];
      break;
    }
  }
  ASSERT_FALSE(member_of_a.empty());
  deliver(*fleet_, a.id, protocol::to_json(protocol::AgentEvent{"resumed", member_of_a, std::nullopt, "ok"}));
  fleet_->tick();
  EXPECT_EQ(store_->get_member("shop", member_of_a).value()->state, "Starting");
  EXPECT_EQ(live(), 61) << "the answer queued its cluster, and the pass found the new count";
}

// ...but a paced one, with marked members still Active (waiting for their
// turn), stays in the queue: each pass looks at the application.
TEST_F(FleetEngineTest, APacedMaintenanceWithMembersStillToTakeStaysQueued) {
  Joined a = three_clusters_to_restart(/*all_at_once=*/false);
  fleet_->tick();
  const size_t taken = a.link->commands("maintenance").size();
  ASSERT_GT(taken, 0u);
  ASSERT_LT(taken, 60u) << "paced: the budget takes a few members of each cluster";
  fleet_->tick();
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutClusterScale{{"shop", "a", 21, 20, "test", clock_.now()}}}}));
  fleet_->tick();
  const auto members = store_->list_members({.cluster = "a"}).value();
  EXPECT_EQ(std::count_if(members.begin(), members.end(), [](const MemberRecord& m) { return m.state != "Terminated"; }),
            21)
      << "the next pass reconciled the application, and found the new count";
}

TEST_F(FleetEngineTest, AGroupRefusedInAPassStopsTheGroupsWrittenAfterItAndNoneOfThemIsActedOn) {
  Joined a = three_clusters_to_restart();
  // The medium fails the second cluster's group; the third was handed to
  // the store before the second's answer came.
  store_test::RawDb(path_).exec(
      "CREATE TRIGGER refuse BEFORE UPDATE ON members WHEN NEW.cluster = 'b' "
      "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END");

  fleet_->tick();

  std::map<std::string, std::string> stored;
  const auto after_refusal = store_->list_members({}).value();
  for (const auto& m : after_refusal) {
    stored[m.cluster] += m.state == "Maintenance" ? "M" : m.state == "Active" ? "A" : "?";
  }
  EXPECT_EQ(stored["a"], std::string(20, 'M')) << "the group before the refused one is durable";
  EXPECT_EQ(stored["b"], std::string(20, 'A')) << "refused";
  EXPECT_EQ(stored["c"], std::string(20, 'A')) << "not written after a refused group";
  std::set<std::string> commanded;
  for (const json& c : a.link->commands("maintenance")) {
    commanded.insert(c["member"].get<std::string>().substr(0, 7));
  }
  EXPECT_EQ(commanded, (std::set<std::string>{"shop/a/"})) << "only what is durable is acted on";
  auto listed = fleet_->members_json({.state = "Maintenance"}, std::nullopt);
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ((*listed)["items"].size(), 20u) << "the view was reloaded from the store";

  store_test::RawDb(path_).exec("DROP TRIGGER refuse");
  fleet_->tick();
  const auto after_retry = store_->list_members({}).value();
  for (const auto& m : after_retry) {
    EXPECT_EQ(m.state, "Maintenance") << m.id;
  }
  std::map<std::string, std::set<std::string>> ids;  // member -> its commands' ids
  for (const json& c : a.link->commands("maintenance")) {
    ids[c["member"]].insert(c["id"]);
  }
  EXPECT_EQ(ids.size(), 60u);
  for (const auto& [member, its] : ids) {
    EXPECT_EQ(its.size(), 1u) << member << ": one maintenance, under one id";
  }
}

TEST_F(FleetEngineTest, ARolloutBatchIsWrittenInGroupsOfUpdatesEachSentOnceDurable) {
  use_updates_per_group(10);
  Joined a = join("a", 100);
  ASSERT_TRUE(apps_->apply(in_place_manifest(30, 30, "1"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  fleet_->tick();
  all_started_and_healthy(a);
  ASSERT_TRUE(apps_->apply(in_place_manifest(30, 30, "2"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  const auto first_seq = store_->last_event_seq().value();
  std::vector<std::string> sent_before_durable;
  a.link->on_send = [&](const json& message) {
    if (message.value("command", "") == "update") {
      auto member = store_->get_member("shop", message["member"]);
      if (!member || !*member || (*member)->state != "Updating") {
        sent_before_durable.push_back(message["member"]);
      }
    }
  };
  const int commits_before = commits_;

  fleet_->tick();

  a.link->on_send = nullptr;
  EXPECT_GE(commits_ - commits_before, 3) << "the batch of 30 in groups of 10 updates, not one group";
  EXPECT_TRUE(sent_before_durable.empty()) << sent_before_durable.size() << " updates before they were durable";
  EXPECT_EQ(command_ids(*a.link, "update").size(), 30u);
  const auto updating = store_->list_members({}).value();
  for (const auto& m : updating) {
    EXPECT_EQ(m.state, "Updating") << m.id;
  }
  const auto events = store_->list_events({first_seq, std::nullopt, 100000}).value();
  ASSERT_GE(events.size(), 30u);
  for (size_t i = 1; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, events[i - 1].seq + 1) << "event seqs stay gap-free across the groups";
  }
}

// Placement spreads a cluster over its hosts, so a batch in ordinal order
// would give every group a few of each host's members, and each host a
// frame per group.
TEST_F(FleetEngineTest, ARolloutBatchIsWrittenHostByHostSoEachHostHasItsUpdatesInOneBatch) {
  use_updates_per_group(10);
  Joined a = join("a");
  Joined b = join("b");
  ASSERT_TRUE(apps_->apply(in_place_manifest(20, 20, "1"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  fleet_->tick();
  all_started_and_healthy(a);
  all_started_and_healthy(b);
  ASSERT_EQ(a.link->commands("start").size(), 10u) << "placement spreads the cluster over both hosts";
  ASSERT_TRUE(apps_->apply(in_place_manifest(20, 20, "2"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  const size_t a_before = a.link->batches.size();
  const size_t b_before = b.link->batches.size();

  fleet_->tick();

  EXPECT_EQ(a.link->commands("update").size(), 10u);
  EXPECT_EQ(b.link->commands("update").size(), 10u);
  EXPECT_EQ(std::vector<size_t>(a.link->batches.begin() + a_before, a.link->batches.end()), std::vector<size_t>{10});
  EXPECT_EQ(std::vector<size_t>(b.link->batches.begin() + b_before, b.link->batches.end()), std::vector<size_t>{10});
}

// The pass that starts a batch first makes the last of the batch before it
// Active: those rows are written while the rollout plans, as a group of
// their own, ahead of the batch's first updates (which stand on them).
TEST_F(FleetEngineTest, TheActivesThatEndABatchAreWrittenAheadOfTheNextBatchsUpdates) {
  use_updates_per_group(10);
  Joined a = join("a");
  ASSERT_TRUE(apps_->apply(in_place_manifest(20, 10, "1"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  fleet_->tick();
  all_started_and_healthy(a);
  ASSERT_TRUE(apps_->apply(in_place_manifest(20, 10, "2"), ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  fleet_->tick();
  const std::vector<json> first_batch = a.link->commands("update");
  ASSERT_EQ(first_batch.size(), 10u);
  for (const json& update : first_batch) {
    deliver(*fleet_, a.id, result_message(update["id"], true, {{"pid", 100}, {"ports", json::object()}}));
    deliver(*fleet_, a.id,
            protocol::to_json(protocol::AgentEvent{"healthy", update["member"], std::nullopt, "passing"}));
  }
  const uint64_t seq_before = store_->last_event_seq().value();
  const int commits_before = commits_;

  fleet_->tick();

  EXPECT_EQ(commits_ - commits_before, 2) << "the 10 Actives, then the next batch's 10 updates";
  EXPECT_EQ(a.link->commands("update").size(), 20u);
  const std::vector<EventRecord> events = store_->list_events({seq_before, std::nullopt, 100}).value();
  ASSERT_EQ(events.size(), 20u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].to_json, i < 10 ? "\"Active\"" : "\"Updating\"") << i;
  }
}

TEST_F(FleetEngineTest, ADispatchSendsEachAgentItsCommandsInOneBatch) {
  Joined a = join("a");
  Joined b = join("b");
  apply(6);
  fleet_->tick();
  EXPECT_EQ(a.link->batches, std::vector<size_t>{3});
  EXPECT_EQ(b.link->batches, std::vector<size_t>{3});
  EXPECT_EQ(a.link->commands("start").size(), 3u);
  EXPECT_EQ(b.link->commands("start").size(), 3u);
}

}  // namespace
}  // namespace tranche
