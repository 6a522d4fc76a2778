// The controller's side of the agent protocol and the reconciler, with an
// injected clock and in-process fake connections.

#include "engine/fleet.h"

#include <gtest/gtest.h>

#include "engine/application_service.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class FakeLink final : public AgentLink {
 public:
  void send(std::string message) override { sent.push_back(json::parse(message)); }
  void close(std::string reason) override { closed = reason; }

  std::vector<json> of_type(const std::string& type, const std::string& command = "") const {
    std::vector<json> out;
    for (const auto& m : sent) {
      if (m["type"] == type && (command.empty() || m.value("command", "") == command)) {
        out.push_back(m);
      }
    }
    return out;
  }

  std::vector<json> sent;
  std::string closed;
};

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

  struct Joined {
    std::string id;
    std::string token;
    std::shared_ptr<FakeLink> link;
  };

  Joined join(const std::string& hostname, Fleet* fleet = nullptr) {
    auto link = std::make_shared<FakeLink>();
    protocol::Hello hello;
    hello.join_token = "jt_secret";
    hello.hostname = hostname;
    auto id = (fleet ? fleet : fleet_.get())->connect(hello, link);
    EXPECT_TRUE(id.has_value()) << id.error().describe();
    const json welcome = link->of_type("welcome").at(0);
    return Joined{*id, welcome["hostToken"], link};
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

  void apply(const std::string& text = kApp) {
    ASSERT_TRUE(apps_->apply(text, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  }

  void heartbeat(const Joined& host, std::vector<protocol::MemberReport> members) {
    fleet_->receive(host.id, "heartbeat", protocol::to_json(protocol::Heartbeat{++hb_seq_, std::move(members)}));
  }

  void result(const Joined& host, const std::string& id, bool ok, json data = nullptr) {
    fleet_->receive(host.id, "result", protocol::to_json(protocol::CommandResult{id, ok, std::nullopt, "", data}));
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

TEST_F(FleetTest, AnExitedMemberIsReplaced) {
  Joined a = join("a");
  apply();
  fleet_->tick();
  fleet_->receive(a.id, "event", protocol::to_json(protocol::AgentEvent{"exited", "shop/web/1", 137, "killed"}));
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
  // Both are still Starting; the same command ids go out again and the agent
  // answers them from its journal.
  const auto starts = link->of_type("command", "start");
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0]["id"], "start:shop/web/1");
  EXPECT_EQ(states().size(), 2u) << "no member created twice";
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

}  // namespace
}  // namespace tranche
