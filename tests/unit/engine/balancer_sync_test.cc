// BalancerSync and the fleet's load-balancer gate (updates.md, "load
// balancer"), against an in-memory balancer that keeps HAProxy's rules: new
// servers start enabled, `del` is refused unless the server is in
// maintenance with no session, and a balancer that is down fails every call.

#include "engine/reconcile/balancer_sync.h"

#include <set>

#include <gtest/gtest.h>

#include "engine/application_service.h"
#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class InMemoryBalancer final : public lb::LoadBalancer {
 public:
  struct Server {
    std::string address;
    lb::ServerState state = lb::ServerState::kUp;
    int64_t sessions = 0;
  };

  Status add_server(std::string_view backend, const lb::ServerSpec& spec) override {
    if (auto ok = check(backend); !ok) return ok;
    auto& servers = backends[std::string(backend)];
    if (servers.contains(spec.name)) return fail(ErrorCode::kUnavailable, "already exists");
    servers[spec.name] = Server{lb::to_string(spec.address)};
    ++adds;
    return {};
  }
  Status set_state(std::string_view backend, std::string_view name, lb::AdminState state) override {
    if (auto ok = check(backend); !ok) return ok;
    Server* s = find(backend, name);
    if (!s) return fail(ErrorCode::kUnavailable, "no such server");
    s->state = state == lb::AdminState::kReady   ? lb::ServerState::kUp
               : state == lb::AdminState::kDrain ? lb::ServerState::kDrain
                                                 : lb::ServerState::kMaintenance;
    return {};
  }
  Result<std::optional<lb::ServerInfo>> find_server(std::string_view backend, std::string_view name) override {
    auto all = list_servers(backend);
    if (!all) return std::unexpected(all.error());
    for (auto& s : *all) {
      if (s.name == name) return s;
    }
    return std::nullopt;
  }
  Result<std::vector<lb::ServerInfo>> list_servers(std::string_view backend) override {
    if (auto ok = check(backend); !ok) return std::unexpected(ok.error());
    std::vector<lb::ServerInfo> out;
    for (const auto& [name, s] : backends[std::string(backend)]) {
      out.push_back(lb::ServerInfo{name, s.state, "", s.address, s.sessions});
    }
    return out;
  }
  Status delete_server(std::string_view backend, std::string_view name) override {
    if (auto ok = check(backend); !ok) return ok;
    Server* s = find(backend, name);
    if (!s || s->state != lb::ServerState::kMaintenance || s->sessions > 0) {
      return fail(ErrorCode::kUnavailable, "del server refused");
    }
    backends[std::string(backend)].erase(std::string(name));
    return {};
  }

  Server* find(std::string_view backend, std::string_view name) {
    auto& servers = backends[std::string(backend)];
    auto it = servers.find(std::string(name));
    return it == servers.end() ? nullptr : &it->second;
  }

  std::map<std::string, std::map<std::string, Server>> backends{{"web", {}}};
  bool down = false;
  int adds = 0;

 private:
  Status check(std::string_view backend) {
    if (down) return fail(ErrorCode::kUnavailable, "connect: No such file or directory");
    if (!backends.contains(std::string(backend))) return fail(ErrorCode::kUnavailable, "no such backend");
    return {};
  }
};

BalancerTarget target(bool serve, uint16_t port = 8080, std::chrono::seconds drain = 5s,
                      std::string server = "shop_web_1") {
  return BalancerTarget{"web", std::move(server), lb::ServerAddress{"127.0.0.1", port}, serve, drain};
}

class BalancerSyncTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  InMemoryBalancer balancer_;
  BalancerSync sync_{balancer_, clock_};
};

TEST_F(BalancerSyncTest, AServingMemberIsAddedOnceAndEnabled) {
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kUnknown);
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  sync_.run_once();
  ASSERT_NE(balancer_.find("web", "shop_web_1"), nullptr);
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->address, "127.0.0.1:8080");
  EXPECT_EQ(balancer_.adds, 1);
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kServing);
}

TEST_F(BalancerSyncTest, ALeavingMemberDrainsUntilItsSessionsEndThenLeaves) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  balancer_.find("web", "shop_web_1")->sessions = 2;
  sync_.set_targets({{"shop/web/1", target(false)}});
  sync_.run_once();
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->state, lb::ServerState::kDrain);
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kDraining);
  clock_.advance(1s);
  sync_.run_once();
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kDraining) << "sessions still open";
  balancer_.find("web", "shop_web_1")->sessions = 0;
  sync_.run_once();
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kOut);
  EXPECT_EQ(balancer_.find("web", "shop_web_1"), nullptr) << "deleted";
}

TEST_F(BalancerSyncTest, SessionsAreReadOnlyOnceTheDrainIsInForce) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  sync_.set_targets({{"shop/web/1", target(false)}});
  sync_.run_once();  // no session seen, but they were counted before the drain
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kDraining);
  sync_.run_once();
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kOut);
}

TEST_F(BalancerSyncTest, TheDrainTimeoutEndsTheWaitAndTheServerLeavesOnceItsSessionsAreGone) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  balancer_.find("web", "shop_web_1")->sessions = 1;
  sync_.set_targets({{"shop/web/1", target(false)}});
  sync_.run_once();
  clock_.advance(5s);
  sync_.run_once();
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kOut) << "in maintenance: no traffic";
  ASSERT_NE(balancer_.find("web", "shop_web_1"), nullptr) << "del refused while a session remains";
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->state, lb::ServerState::kMaintenance);
  balancer_.find("web", "shop_web_1")->sessions = 0;
  sync_.run_once();
  EXPECT_EQ(balancer_.find("web", "shop_web_1"), nullptr);
}

TEST_F(BalancerSyncTest, WithoutADrainTimeoutAMemberLeavesAtOnce) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  balancer_.find("web", "shop_web_1")->sessions = 3;
  sync_.set_targets({{"shop/web/1", target(false, 8080, 0s)}});
  sync_.run_once();
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kOut);
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->state, lb::ServerState::kMaintenance);
}

TEST_F(BalancerSyncTest, ServersLostOnAReloadAreAddedAgain) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  balancer_.backends["web"].clear();
  sync_.run_once();
  EXPECT_NE(balancer_.find("web", "shop_web_1"), nullptr);
  EXPECT_EQ(balancer_.adds, 2);
}

TEST_F(BalancerSyncTest, AMemberThatMovedIsRegisteredAtItsNewAddress) {
  sync_.set_targets({{"shop/web/1", target(true, 8080)}});
  sync_.run_once();
  sync_.set_targets({{"shop/web/1", target(true, 9090)}});
  sync_.run_once();
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->address, "127.0.0.1:9090");
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kServing);
}

TEST_F(BalancerSyncTest, StaleMemberServersLeaveAndTheOperatorsOwnStay) {
  balancer_.backends["web"]["shop_web_7"] = {"127.0.0.1:1000"};
  balancer_.backends["web"]["static1"] = {"127.0.0.1:2000"};
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  EXPECT_EQ(balancer_.find("web", "shop_web_7"), nullptr) << "a member the fleet does not have";
  EXPECT_NE(balancer_.find("web", "static1"), nullptr);
}

TEST_F(BalancerSyncTest, ABalancerThatIsDownIsAProblemAndNothingIsCalledOut) {
  sync_.set_targets({{"shop/web/1", target(true)}});
  sync_.run_once();
  balancer_.down = true;
  sync_.set_targets({{"shop/web/1", target(false)}, {"shop/web/2", target(false, 8081, 5s, "shop_web_2")}});
  clock_.advance(1s);
  sync_.run_once();
  const auto problem = sync_.problem("web");
  ASSERT_TRUE(problem.has_value());
  EXPECT_NE(problem->message.find("No such file"), std::string::npos) << problem->message;
  EXPECT_EQ(problem->seen_at, clock_.now());
  EXPECT_EQ(sync_.presence("shop/web/1"), BalancerPresence::kServing) << "the last known state";
  EXPECT_EQ(sync_.presence("shop/web/2"), BalancerPresence::kUnknown);
  balancer_.down = false;
  sync_.run_once();
  EXPECT_FALSE(sync_.problem("web").has_value());
  EXPECT_EQ(sync_.presence("shop/web/2"), BalancerPresence::kOut);
}

// --- the fleet's side -------------------------------------------------------

std::string balanced_app(const std::string& version, const std::string& method = "replace") {
  return R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: ")" +
         version + R"(", command: ["web"]}
    ports: [http]
    operational: {autoscaling: "off"}
    update: {method: )" +
         method + R"(, maxUnavailable: 1, maxSurge: 1, minReadySeconds: 0}
    loadBalancer: {haproxy: {backend: web}, drainTimeoutSeconds: 5}
)";
}

class FleetBalancerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
    ASSERT_TRUE(fleet_->load().has_value());
    fleet_->attach_balancer(sync_);
    protocol::Hello hello;
    hello.join_token = "jt_secret";
    hello.hostname = "a";
    host_ = fleet_->connect(hello, link_).value();
  }

  void apply(const std::string& text) {
    ASSERT_TRUE(apps_->apply(text, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
  }

  // Answers every start and update so far, reports every member healthy,
  // and lets the fleet and the balancer take a step each.
  void step() {
    for (const auto& kind : {"start", "update"}) {
      for (const auto& c : link_->commands(kind)) {
        const std::string id = c["id"];
        if (answered_.insert(id).second) {
          const int port = 8000 + static_cast<int>(answered_.size());
          receive(result_message(id, true, json{{"pid", port}, {"ports", {{"http", port}}}}));
        }
      }
    }
    std::vector<protocol::MemberReport> reports;
    const auto members = store_->list_members({}).value();
    for (const auto& m : members) {
      if (m.state != "Terminated") {
        reports.push_back({m.id, "Running", true, std::nullopt, m.pid.value_or(1), m.ports});
      }
    }
    receive(protocol::to_json(protocol::Heartbeat{++hb_seq_, reports}));
    fleet_->tick();
    sync_.run_once();
  }

  void receive(const json& message) { deliver(*fleet_, host_, message); }

  void stop_results() {
    for (const auto& c : link_->commands("stop")) {
      if (answered_.insert(c["id"]).second) {
        receive(result_message(c["id"], true));
      }
    }
  }

  int stops_of(const std::string& member) {
    int n = 0;
    for (const auto& c : link_->commands("stop")) {
      n += c["member"] == member ? 1 : 0;
    }
    return n;
  }

  std::string state(const std::string& id) { return store_->get_member("shop", id).value()->state; }
  size_t serving() { return balancer_.backends["web"].size(); }

  ManualClock clock_;
  InMemoryBalancer balancer_;
  BalancerSync sync_{balancer_, clock_};
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::shared_ptr<FakeLink> link_ = std::make_shared<FakeLink>();
  std::string host_;
  std::set<std::string> answered_;
  uint64_t hb_seq_ = 0;
};

TEST_F(FleetBalancerTest, ActiveMembersAreRegisteredAtTheirFirstPort) {
  apply(balanced_app("1"));
  for (int i = 0; i < 3; ++i) step();
  ASSERT_EQ(state("shop/web/1"), "Active");
  ASSERT_NE(balancer_.find("web", "shop_web_1"), nullptr);
  const std::string port = std::to_string(store_->get_member("shop", "shop/web/1").value()->ports.at("http"));
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->address, "127.0.0.1:" + port);
  EXPECT_EQ(serving(), 2u);
  const json member = fleet_->member_json("shop/web/1", std::nullopt).value();
  EXPECT_EQ(member["loadBalancer"]["state"], "serving");
}

TEST_F(FleetBalancerTest, ARollingReplaceStopsNoMemberBeforeItsSessionsEnd) {
  apply(balanced_app("1"));
  for (int i = 0; i < 3; ++i) step();
  ASSERT_EQ(serving(), 2u);
  balancer_.find("web", "shop_web_1")->sessions = 1;
  apply(balanced_app("2"));
  // The surge member becomes Active, then an old one leaves the backend.
  for (int i = 0; i < 4 && state("shop/web/1") == "Active"; ++i) step();
  ASSERT_EQ(state("shop/web/1"), "Draining");
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(state("shop/web/1"), "Draining") << "a session is open";
  EXPECT_EQ(stops_of("shop/web/1"), 0);
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->state, lb::ServerState::kDrain);
  balancer_.find("web", "shop_web_1")->sessions = 0;
  for (int i = 0; i < 3 && state("shop/web/1") == "Draining"; ++i) step();
  EXPECT_EQ(state("shop/web/1"), "Stopping");
  EXPECT_EQ(stops_of("shop/web/1"), 1);
  EXPECT_EQ(balancer_.find("web", "shop_web_1"), nullptr);
  for (int i = 0; i < 20 && store_->latest_rollout("shop").value()->phase == "Progressing"; ++i) {
    stop_results();
    step();
  }
  EXPECT_EQ(store_->latest_rollout("shop").value()->phase, "Succeeded");
  EXPECT_EQ(serving(), 2u);
  for (const auto& [name, server] : balancer_.backends["web"]) {
    EXPECT_TRUE(name == "shop_web_3" || name == "shop_web_4") << name << " is an old member";
  }
}

TEST_F(FleetBalancerTest, AnInPlaceUpdateIsSentOnlyOnceTheMemberIsOutOfTraffic) {
  apply(balanced_app("1", "in-place"));
  for (int i = 0; i < 3; ++i) step();
  balancer_.find("web", "shop_web_1")->sessions = 1;
  apply(balanced_app("2", "in-place"));
  step();
  ASSERT_EQ(state("shop/web/1"), "Updating");
  step();
  EXPECT_TRUE(link_->commands("update").empty()) << "still draining";
  balancer_.find("web", "shop_web_1")->sessions = 0;
  step();
  step();
  ASSERT_EQ(link_->commands("update").size(), 1u);
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(state("shop/web/1"), "Active");
  ASSERT_NE(balancer_.find("web", "shop_web_1"), nullptr) << "back in once Active";
  EXPECT_EQ(balancer_.find("web", "shop_web_1")->state, lb::ServerState::kUp);
}

TEST_F(FleetBalancerTest, ABalancerThatIsDownPausesTheRolloutAndStopsNothing) {
  apply(balanced_app("1"));
  for (int i = 0; i < 3; ++i) step();
  balancer_.down = true;
  apply(balanced_app("2"));
  for (int i = 0; i < 6; ++i) {
    clock_.advance(1s);
    step();
  }
  const auto rollout = store_->latest_rollout("shop").value();
  EXPECT_EQ(rollout->phase, "Paused");
  EXPECT_NE(rollout->reason.find("load balancer does not answer"), std::string::npos) << rollout->reason;
  EXPECT_TRUE(link_->commands("stop").empty());
  EXPECT_NE(state("shop/web/1"), "Stopping");
  EXPECT_NE(state("shop/web/2"), "Stopping");
}

// A resume right after the balancer is back must not be undone by what a
// pass found before it (the e2e test raced this); a pass after the resume
// that still fails pauses again.
TEST_F(FleetBalancerTest, OnlyAPassAfterTheResumeCanPauseTheRolloutAgain) {
  apply(balanced_app("1"));
  for (int i = 0; i < 3; ++i) step();
  balancer_.down = true;
  apply(balanced_app("2"));
  for (int i = 0; i < 3; ++i) {
    clock_.advance(1s);
    step();
  }
  ASSERT_EQ(store_->latest_rollout("shop").value()->phase, "Paused");
  auto phase = [&] { return store_->latest_rollout("shop").value()->phase; };

  balancer_.down = false;
  clock_.advance(1s);
  ASSERT_TRUE(apps_->rollout_control("shop", "resume", {"t", "t"}).has_value());
  fleet_->tick();  // the balancer's last pass still failed, before the resume
  EXPECT_EQ(phase(), "Progressing");

  balancer_.down = true;
  clock_.advance(1s);
  sync_.run_once();
  fleet_->tick();
  EXPECT_EQ(phase(), "Paused") << "a pass after the resume failed too";

  balancer_.down = false;
  clock_.advance(1s);
  ASSERT_TRUE(apps_->rollout_control("shop", "resume", {"t", "t"}).has_value());
  for (int i = 0; i < 20 && phase() != "Succeeded"; ++i) {
    clock_.advance(1s);
    step();
    stop_results();
  }
  EXPECT_EQ(phase(), "Succeeded");
}

TEST_F(FleetBalancerTest, WithoutDrainingMembersAreStoppedAtOnce) {
  fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret", false});
  ASSERT_TRUE(fleet_->load().has_value());
  fleet_->attach_balancer(sync_);
  protocol::Hello hello;
  hello.join_token = "jt_secret";
  hello.hostname = "b";
  host_ = fleet_->connect(hello, link_).value();
  apply(balanced_app("1"));
  for (int i = 0; i < 3; ++i) step();
  ASSERT_EQ(serving(), 2u);
  balancer_.find("web", "shop_web_1")->sessions = 1;
  ASSERT_TRUE(apps_->undeploy("shop", {"t", "t"}).has_value());
  step();
  EXPECT_EQ(link_->commands("stop").size(), 2u) << "the control experiment does not wait for sessions";
}

}  // namespace
}  // namespace tranche
