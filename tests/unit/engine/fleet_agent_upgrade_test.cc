// The fleet's side of agent upgrades (reconcile/agent_upgrade.cc) with fake
// agent links: the platform's lock required, each host's command sent once
// its record is durable, re-sent with the same id to a controller restarted
// mid-upgrade, the next batch on an ok from the new version, a pause on a
// fall-back, and host tokens recognised for the download.

#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class FleetAgentUpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    start_fleet();
    for (const char* name : {"a", "b"}) {
      auto link = std::make_shared<FakeLink>();
      auto id = fleet_->connect(hello(name, "", "", "0.1.0+gold"), link);
      ASSERT_TRUE(id) << id.error().describe();
      hosts_.push_back(Host{*id, link->of_type("welcome").at(0)["hostToken"], link});
    }
    artifact_ = ArtifactRecord{"tranche-agent", "0.2.0", std::string(64, 'c'), 1234, "ops", clock_.now()};
  }

  void start_fleet() {
    FleetOptions options{1s, 3s, 10s, "jt_secret"};
    options.controller_version = "0.2.0+gnew";
    fleet_ = std::make_unique<Fleet>(*store_, clock_, options);
    ASSERT_TRUE(fleet_->load().has_value());
  }

  static protocol::Hello hello(const std::string& hostname, const std::string& id, const std::string& token,
                               const std::string& version) {
    protocol::Hello h;
    h.hostname = hostname;
    h.host_id = id;
    h.host_token = token;
    h.join_token = token.empty() ? "jt_secret" : "";
    h.agent_version = version;
    h.labels = {{"name", hostname}};
    return h;
  }

  // The agent of host `i` connects again (a restart, or its new binary).
  std::shared_ptr<FakeLink> reconnect(size_t i, const std::string& version,
                                      std::optional<protocol::AgentUpgradeReport> report = std::nullopt) {
    auto link = std::make_shared<FakeLink>();
    protocol::Hello h = hello(i == 0 ? "a" : "b", hosts_[i].id, hosts_[i].token, version);
    h.upgrade = std::move(report);
    EXPECT_TRUE(fleet_->connect(h, link).has_value());
    hosts_[i].link = link;
    return link;
  }

  void lock_platform() {
    ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutMigrationLock{{"", "ops", clock_.now(), "{}", clock_.now(), 0}}}}));
  }

  Result<json> start(int64_t max_unavailable = 1, const std::string& selector = "") {
    return fleet_->start_agent_upgrade(
        Fleet::AgentUpgradeRequest{"0.2.0", artifact_, max_unavailable, selector, 30},
        Caller{"ops", "POST /api/v1/agents/upgrade"});
  }

  std::vector<json> upgrade_commands(size_t i) const { return hosts_[i].link->commands("upgradeAgent"); }

  struct Host {
    std::string id;
    std::string token;
    std::shared_ptr<FakeLink> link;
  };
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Fleet> fleet_;
  std::vector<Host> hosts_;
  ArtifactRecord artifact_;
};

TEST_F(FleetAgentUpgradeTest, NeedsThePlatformsLock) {
  auto refused = start();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_THAT(refused.error().message, HasSubstr("tranche migration begin --all"));
  EXPECT_TRUE(upgrade_commands(0).empty());
  EXPECT_EQ(fleet_->agent_upgrade_json().error().code, ErrorCode::kNotFound);
}

TEST_F(FleetAgentUpgradeTest, RefusesAVersionNewerThanTheControllerAndAnEmptySelection) {
  lock_platform();
  auto newer = fleet_->start_agent_upgrade(Fleet::AgentUpgradeRequest{"0.3.0", artifact_, 1, "", 30},
                                           Caller{"ops", "POST /api/v1/agents/upgrade"});
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().field, "version");
  EXPECT_THAT(newer.error().message, HasSubstr("newer than its controller"));
  auto nobody = start(1, "name=zzz");
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().field, "hosts");
  auto bad = start(1, "name");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "hosts");
}

TEST_F(FleetAgentUpgradeTest, OneHostAtATimeResentAfterARestartThenTheNext) {
  lock_platform();
  auto started = start();
  ASSERT_TRUE(started) << started.error().describe();
  EXPECT_EQ((*started)["state"], "Running");
  const auto ordered = (*started)["progress"];
  ASSERT_EQ(ordered.size(), 2u);
  const size_t first = ordered[0]["host"] == hosts_[0].id ? 0 : 1;
  const size_t second = 1 - first;

  ASSERT_EQ(upgrade_commands(first).size(), 1u);
  EXPECT_TRUE(upgrade_commands(second).empty());
  const json command = upgrade_commands(first)[0];
  const std::string id = command["id"];
  EXPECT_EQ(id, "upgradeAgent:1:" + hosts_[first].id + ":1");
  EXPECT_EQ(command["spec"]["version"], "0.2.0");
  EXPECT_EQ(command["spec"]["sha256"], artifact_.sha256);
  EXPECT_EQ(command["spec"]["size"], 1234);
  EXPECT_EQ(command["spec"]["path"], "/api/v1/artifacts/sha256/" + artifact_.sha256);
  EXPECT_EQ(command["spec"]["fallbackSeconds"], 30);
  // A second upgrade waits for this one.
  EXPECT_EQ(start().error().code, ErrorCode::kConflict);

  // The controller restarts mid-upgrade: the upgrade is read back and the
  // same command goes to the agent when it reconnects, nothing else.
  start_fleet();
  auto again = reconnect(first, "0.1.0+gold");
  reconnect(second, "0.1.0+gold");
  fleet_->tick();
  ASSERT_EQ(upgrade_commands(first).size(), 1u);
  EXPECT_EQ(upgrade_commands(first)[0]["id"], id);
  EXPECT_TRUE(upgrade_commands(second).empty());

  // The new binary connects, reports and answers ok: done, and the next
  // host's turn comes.
  reconnect(first, "0.2.0+gnew", protocol::AgentUpgradeReport{id, "0.2.0", true, "confirmed"});
  deliver(*fleet_, hosts_[first].id, result_message(id, true));
  fleet_->tick();
  const json progress = fleet_->agent_upgrade_json().value();
  EXPECT_EQ(progress["progress"][0]["status"], "done") << progress.dump(1);
  ASSERT_EQ(upgrade_commands(second).size(), 1u);
  EXPECT_TRUE(upgrade_commands(first).empty()) << "not sent again once answered";

  // The second falls back: the upgrade pauses with its reason.
  const std::string second_id = upgrade_commands(second)[0]["id"];
  json failed = result_message(second_id, false);
  failed["message"] = "tranche 0.2.0 exited with status 1 0.1 s after the switch; back on 0.1.0";
  deliver(*fleet_, hosts_[second].id, failed);
  fleet_->tick();
  const json paused = fleet_->agent_upgrade_json().value();
  EXPECT_EQ(paused["state"], "Paused");
  EXPECT_THAT(paused["reason"].get<std::string>(), HasSubstr("exited with status 1"));

  // Durable: a restarted controller shows the same.
  start_fleet();
  EXPECT_EQ(fleet_->agent_upgrade_json().value()["state"], "Paused");
  EXPECT_EQ(fleet_->agent_upgrade_json().value()["progress"], paused["progress"]);
}

TEST_F(FleetAgentUpgradeTest, LiftingTheLockPausesItAndResumeNeedsItBack) {
  lock_platform();
  ASSERT_TRUE(start());
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {DeleteMigrationLock{"", 1}}}));
  fleet_->tick();
  const json paused = fleet_->agent_upgrade_json().value();
  EXPECT_EQ(paused["state"], "Paused");
  EXPECT_THAT(paused["reason"].get<std::string>(), HasSubstr("migration lock was lifted"));
  auto refused = fleet_->control_agent_upgrade("resume", Caller{"ops", "POST"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  lock_platform();
  auto resumed = fleet_->control_agent_upgrade("resume", Caller{"ops", "POST"});
  ASSERT_TRUE(resumed) << resumed.error().describe();
  EXPECT_EQ((*resumed)["state"], "Running");
  auto aborted = fleet_->control_agent_upgrade("abort", Caller{"ops", "POST"});
  ASSERT_TRUE(aborted);
  EXPECT_EQ((*aborted)["state"], "Aborted");
  EXPECT_EQ(fleet_->control_agent_upgrade("sideways", Caller{"ops", "POST"}).error().field, "action");
}

TEST_F(FleetAgentUpgradeTest, HostTokensNameTheirHost) {
  EXPECT_EQ(fleet_->host_of_token(hosts_[1].token), hosts_[1].id);
  EXPECT_EQ(fleet_->host_of_token("ht_not-a-token"), std::nullopt);
}

}  // namespace
}  // namespace tranche
