// `set maintenance restart|replace --all-at-once` (model.md, "Operational
// state"): the flag is stored with the value and its members' markers, shown
// by the views, and makes the fleet take every marked member of a cluster in
// one pass instead of within maxUnavailable. Injected clock, fake agent links.

#include <gtest/gtest.h>

#include "engine/application_service.h"
#include "engine/fleet/fleet.h"
#include "engine/operational_state.h"
#include "fake_agent_link.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Five members, one of which may be out at a time; a successor is created
// only when an old member may stop (maxSurge 1).
constexpr const char* kApp = R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 10, desired: 5}
    artifact: {version: "1", command: ["web"]}
    operational: {autoscaling: "off"}
    update: {minReadySeconds: 0, maxUnavailable: 1, maxSurge: 1}
)";
constexpr int kMembers = 5;

class MaintenanceAllAtOnceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
    ASSERT_TRUE(fleet_->load().has_value());
    link_ = std::make_shared<FakeLink>();
    protocol::Hello hello;
    hello.join_token = "jt_secret";
    hello.hostname = "a";
    auto id = fleet_->connect(hello, link_);
    ASSERT_TRUE(id.has_value()) << id.error().describe();
    host_ = *id;
    ASSERT_TRUE(apps_->apply(kApp, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
    fleet_->tick();
    healthy();
    fleet_->tick();
    ASSERT_EQ(count("Active"), kMembers);
  }

  // Every member not on its way out runs and is healthy.
  void healthy() {
    std::vector<protocol::MemberReport> reports;
    const auto members = store_->list_members({}).value();
    for (const auto& m : members) {
      if (m.state != "Terminated" && m.state != "Stopping") {
        reports.push_back({m.id, "Running", true, std::nullopt, 100, {}});
      }
    }
    deliver(*fleet_, host_, protocol::to_json(protocol::Heartbeat{++hb_seq_, std::move(reports)}));
  }

  void result(const std::string& id) { deliver(*fleet_, host_, result_message(id, true)); }

  json set(const json& body) {
    auto change = parse_operational_change(body);
    EXPECT_TRUE(change.has_value()) << change.error().describe();
    auto done = apps_->set_operational_state("shop", *change, {"t", "t"});
    EXPECT_TRUE(done.has_value()) << done.error().describe();
    return done.value_or(json());
  }

  int count(const std::string& state) {
    int n = 0;
    const auto members = store_->list_members({}).value();
    for (const auto& m : members) {
      n += m.state == state ? 1 : 0;
    }
    return n;
  }

  // The node's settings as GET /operational-state shows them.
  json node(const std::string& path) {
    const json view = apps_->operational_state("shop", path).value();
    for (const auto& n : view["nodes"]) {
      if (n["path"] == path) {
        return n;
      }
    }
    ADD_FAILURE() << "no node " << path << " in " << view.dump();
    return json::object();
  }

  std::vector<OperationalValueRecord> markers() {
    auto values = store_->list_operational_values("shop").value();
    std::erase_if(values, [](const OperationalValueRecord& v) {
      return v.setting != Setting::kMaintenance || v.path.find('/') == std::string::npos;
    });
    return values;
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::shared_ptr<FakeLink> link_;
  std::string host_;
  uint64_t hb_seq_ = 0;
};

TEST_F(MaintenanceAllAtOnceTest, RestartTakesEveryMemberIntoMaintenanceInOnePass) {
  const json answer = set({{"path", "web"}, {"maintenance", "restart"}, {"allAtOnce", true}});
  ASSERT_EQ(answer["changes"].size(), 1u);
  EXPECT_EQ(answer["changes"][0]["to"], "restart");
  EXPECT_EQ(answer["changes"][0]["allAtOnce"], true);
  const auto stored = markers();
  ASSERT_EQ(stored.size(), static_cast<size_t>(kMembers));
  for (const auto& m : stored) {
    EXPECT_TRUE(m.all_at_once) << m.path;
  }
  const json view = node("web");
  EXPECT_EQ(view["maintenance"]["effective"], "restart") << view.dump();
  EXPECT_EQ(view["maintenance"]["allAtOnce"], true) << view.dump();

  fleet_->tick();
  EXPECT_EQ(count("Maintenance"), kMembers) << "maxUnavailable 1 does not apply";
  EXPECT_EQ(link_->commands("maintenance").size(), static_cast<size_t>(kMembers)) << "every agent has its command";

  // They resume, become Active again, and the node's value returns to off.
  for (const auto& c : link_->commands("maintenance")) {
    result(c["id"]);
  }
  EXPECT_EQ(count("Starting"), kMembers);
  healthy();
  fleet_->tick();
  fleet_->tick();
  EXPECT_EQ(count("Active"), kMembers);
  EXPECT_TRUE(markers().empty());
  const json after = node("web");
  EXPECT_EQ(after["maintenance"]["effective"], "off") << after.dump();
  EXPECT_FALSE(after["maintenance"].contains("allAtOnce")) << after.dump();
}

TEST_F(MaintenanceAllAtOnceTest, WithoutItMaxUnavailableHolds) {
  const json answer = set({{"path", "web"}, {"maintenance", "restart"}});
  EXPECT_FALSE(answer["changes"][0].contains("allAtOnce"));
  for (const auto& m : markers()) {
    EXPECT_FALSE(m.all_at_once) << m.path;
  }
  for (int round = 0; round < 3; ++round) {
    fleet_->tick();
    EXPECT_EQ(count("Maintenance"), 1) << "round " << round;
  }
  EXPECT_EQ(link_->commands("maintenance").size(), 1u);
}

TEST_F(MaintenanceAllAtOnceTest, ReplaceCreatesEverySuccessorInOnePass) {
  set({{"path", "web"}, {"maintenance", "replace"}, {"allAtOnce", true}});
  fleet_->tick();
  EXPECT_EQ(count("Starting"), kMembers) << "surge = every member, not maxSurge 1";
  EXPECT_EQ(count("Active"), kMembers - 1)
      << "the old members serve until their successors are Active, but for the one maxUnavailable 1 lets go";

  for (int round = 0; round < 4; ++round) {
    for (const auto& c : link_->commands("start")) {
      result(c["id"]);
    }
    healthy();
    fleet_->tick();
    for (const auto& c : link_->commands("stop")) {
      result(c["id"]);
    }
    fleet_->tick();
  }
  EXPECT_EQ(count("Active"), kMembers);
  EXPECT_EQ(count("Terminated"), kMembers) << "every original is retired";
  for (int ordinal = 1; ordinal <= kMembers; ++ordinal) {
    EXPECT_EQ(store_->get_member("shop", "shop/web/" + std::to_string(ordinal)).value()->state, "Terminated");
  }
  EXPECT_TRUE(markers().empty());
}

// The flag belongs to the time-boxed value: when it expires, the previous
// value comes back without it.
TEST_F(MaintenanceAllAtOnceTest, AnExpiredTimeBoxRestoresThePreviousValueWithoutTheFlag) {
  set({{"maintenance", "off"}});
  set({{"maintenance", "restart"}, {"allAtOnce", true}, {"for", "10m"}});
  const json boxed = node("");
  EXPECT_EQ(boxed["maintenance"]["allAtOnce"], true) << boxed.dump();
  EXPECT_TRUE(boxed["maintenance"].contains("expiresAt"));

  clock_.advance(10min);
  ASSERT_EQ(apps_->expire_operational_values().value(), 1);
  const auto values = store_->list_operational_values("shop").value();
  const auto app_value = std::find_if(values.begin(), values.end(), [](const OperationalValueRecord& v) {
    return v.path.empty() && v.setting == Setting::kMaintenance;
  });
  ASSERT_NE(app_value, values.end());
  EXPECT_EQ(app_value->value, "off");
  EXPECT_FALSE(app_value->all_at_once);
  const json back = node("");
  EXPECT_FALSE(back["maintenance"].contains("allAtOnce")) << back.dump();
}

TEST_F(MaintenanceAllAtOnceTest, IsIgnoredForOtherSettingsAndForOff) {
  const json answer = set({{"path", "web"}, {"autohealing", "off"}, {"maintenance", "off"}, {"allAtOnce", true}});
  for (const auto& c : answer["changes"]) {
    EXPECT_FALSE(c.contains("allAtOnce")) << c.dump();
  }
  const auto values = store_->list_operational_values("shop").value();
  for (const auto& v : values) {
    EXPECT_FALSE(v.all_at_once) << v.path;
  }
}

}  // namespace
}  // namespace tranche
