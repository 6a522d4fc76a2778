// The fleet engine's machinery: the group commit (nothing is acted on
// before it is durable), the work queue, and what never waits on an agent.

#include <gtest/gtest.h>

#include <set>

#include "../store/store_test_util.h"
#include "engine/application_service.h"
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
  int commits_ = 0;
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

TEST_F(FleetEngineTest, AnIdlePassWritesNothing) {
  join("a");
  apply(2);
  fleet_->tick();
  const int before = commits_;
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(commits_, before);
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

}  // namespace
}  // namespace tranche
