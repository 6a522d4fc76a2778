// The fleet's side of protocol versions and build skew (protocol/versions.h):
// what a controller agrees with each agent, and how a refused agent is
// recorded once it has proven who it is.

#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class FleetVersionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    FleetOptions options{1s, 3s, 10s, "jt_secret"};
    options.controller_version = "0.4.0+g1a2b3c";
    fleet_ = std::make_unique<Fleet>(*store_, clock_, options);
    ASSERT_TRUE(fleet_->load().has_value());
  }

  static protocol::Hello joining(const std::string& hostname, int oldest, int newest, std::string version = "") {
    protocol::Hello hello;
    hello.join_token = "jt_secret";
    hello.hostname = hostname;
    hello.oldest_protocol = oldest;
    hello.protocol = newest;
    hello.agent_version = std::move(version);
    return hello;
  }

  json host(const std::string& id) {
    const json hosts = fleet_->hosts_json(std::nullopt);
    for (const auto& h : hosts["items"]) {
      if (h["id"] == id) {
        return h;
      }
    }
    return nullptr;
  }

  std::vector<EventRecord> refusals() {
    std::vector<EventRecord> out;
    const auto events = store_->list_events({0, std::nullopt, 1000}).value();
    for (const auto& e : events) {
      if (e.type == "HostRefused") {
        out.push_back(e);
      }
    }
    return out;
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Fleet> fleet_;
};

TEST_F(FleetVersionsTest, TheHighestCommonProtocolIsWelcomedAndShown) {
  auto both = std::make_shared<FakeLink>();
  auto id = fleet_->connect(joining("new", 1, 2, "0.4.0"), both);
  ASSERT_TRUE(id.has_value()) << id.error().describe();
  EXPECT_EQ(both->of_type("welcome").at(0)["protocol"], 2);
  EXPECT_EQ(both->agreed, 2) << "its connection is told, after the welcome: no batch frames in 2";
  EXPECT_EQ(host(*id)["protocol"], 2);
  EXPECT_EQ(host(*id)["agentVersion"], "0.4.0");
  EXPECT_EQ(host(*id)["refused"], nullptr);

  auto batching = std::make_shared<FakeLink>();
  ASSERT_TRUE(fleet_->connect(joining("batching", 1, 3, "0.4.0"), batching).has_value());
  EXPECT_EQ(batching->agreed, 3) << "batch frames from here on";

  auto old = std::make_shared<FakeLink>();
  auto old_id = fleet_->connect(joining("old", 1, 1, "0.2.0"), old);
  ASSERT_TRUE(old_id.has_value()) << old_id.error().describe();
  EXPECT_EQ(old->of_type("welcome").at(0)["protocol"], 1) << "an agent of protocol 1 is spoken to in 1";
  EXPECT_EQ(host(*old_id)["protocol"], 1);

  auto silent = fleet_->connect(joining("silent", 1, 2), std::make_shared<FakeLink>());
  EXPECT_TRUE(silent.has_value()) << "no agentVersion: judged by protocol only";
  EXPECT_TRUE(refusals().empty());
}

TEST_F(FleetVersionsTest, AFirstJoinOfAnUnknownProtocolIsRecordedAsARefusedHostOnce) {
  auto link = std::make_shared<FakeLink>();
  auto refused = fleet_->connect(joining("future", 4, 4, "0.4.0"), link);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().field, "hello.protocol");
  EXPECT_TRUE(link->of_type("welcome").empty());

  const auto hosts = fleet_->hosts_json(std::nullopt)["items"];
  ASSERT_EQ(hosts.size(), 1u);
  const json h = hosts[0];
  EXPECT_EQ(h["state"], "Refused");
  EXPECT_EQ(h["hostname"], "future");
  EXPECT_EQ(h["connected"], false);
  EXPECT_EQ(h["protocol"], nullptr);
  EXPECT_THAT(h["refused"].get<std::string>(), HasSubstr("agent protocol version 4 is not supported"));
  ASSERT_EQ(refusals().size(), 1u);
  EXPECT_EQ(refusals()[0].path, "host/" + h["id"].get<std::string>());
  EXPECT_THAT(refusals()[0].message, HasSubstr("(future) refused: agent protocol version 4 is not supported"));

  // It retries: the same refusal is said once, and it stays one host.
  EXPECT_FALSE(fleet_->connect(joining("future", 4, 4, "0.4.0"), std::make_shared<FakeLink>()).has_value());
  EXPECT_EQ(refusals().size(), 1u);
  EXPECT_EQ(fleet_->hosts_json(std::nullopt)["items"].size(), 1u);

  // Another agent of the same hostname but other labels is another host.
  auto other = joining("future", 4, 4, "0.4.0");
  other.labels = {{"rack", "b"}};
  EXPECT_FALSE(fleet_->connect(other, std::make_shared<FakeLink>()).has_value());
  EXPECT_EQ(fleet_->hosts_json(std::nullopt)["items"].size(), 2u);
  EXPECT_EQ(refusals().size(), 2u);

  // Its upgraded agent joins as that host.
  auto welcomed = std::make_shared<FakeLink>();
  auto id = fleet_->connect(joining("future", 1, 2, "0.4.0"), welcomed);
  ASSERT_TRUE(id.has_value()) << id.error().describe();
  EXPECT_EQ(*id, h["id"].get<std::string>());
  EXPECT_EQ(host(*id)["state"], "Ready");
  EXPECT_EQ(host(*id)["refused"], nullptr);
  EXPECT_EQ(store_->get_host(*id).value()->state, "Ready") << "durable";
  EXPECT_EQ(fleet_->hosts_json(std::nullopt)["items"].size(), 2u);
}

TEST_F(FleetVersionsTest, ARestartedControllerStillKnowsTheRefusedHostItsUpgradedAgentJoinsAs) {
  ASSERT_FALSE(fleet_->connect(joining("future", 4, 4, "0.4.0"), std::make_shared<FakeLink>()).has_value());
  const std::string refused_id = fleet_->hosts_json(std::nullopt)["items"].at(0)["id"];
  auto accepted = fleet_->connect(joining("present", 1, 2, "0.4.0"), std::make_shared<FakeLink>());
  ASSERT_TRUE(accepted.has_value()) << accepted.error().describe();

  FleetOptions options{1s, 3s, 10s, "jt_secret"};
  options.controller_version = "0.4.0+g1a2b3c";
  fleet_ = std::make_unique<Fleet>(*store_, clock_, options);
  ASSERT_TRUE(fleet_->load().has_value());
  auto id = fleet_->connect(joining("future", 1, 2, "0.4.0"), std::make_shared<FakeLink>());
  ASSERT_TRUE(id.has_value()) << id.error().describe();
  EXPECT_EQ(*id, refused_id);
  EXPECT_EQ(host(*id)["state"], "Ready");
  EXPECT_EQ(fleet_->hosts_json(std::nullopt)["items"].size(), 2u);

  // Joined, it is no longer a refused host: another first join of its
  // hostname is a host of its own.
  auto again = fleet_->connect(joining("future", 1, 2, "0.4.0"), std::make_shared<FakeLink>());
  ASSERT_TRUE(again.has_value()) << again.error().describe();
  EXPECT_NE(*again, refused_id);
  EXPECT_EQ(fleet_->hosts_json(std::nullopt)["items"].size(), 3u);
}

TEST_F(FleetVersionsTest, AnUnauthenticatedAgentIsRefusedWithoutARecord) {
  auto hello = joining("stranger", 4, 4);
  hello.join_token = "wrong";
  auto refused = fleet_->connect(hello, std::make_shared<FakeLink>());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);
  EXPECT_TRUE(fleet_->hosts_json(std::nullopt)["items"].empty());
  EXPECT_TRUE(refusals().empty());
}

TEST_F(FleetVersionsTest, AKnownHostsNewerOrTooOldAgentIsRefusedAndShown) {
  JoinedHost a = join_host(*fleet_, "a");
  protocol::Hello again;
  again.host_id = a.id;
  again.host_token = a.token;
  again.hostname = "a";
  for (const char* version : {"0.5.0+g9", "0.1.0"}) {
    again.agent_version = version;
    auto refused = fleet_->connect(again, std::make_shared<FakeLink>());
    ASSERT_FALSE(refused.has_value()) << version;
    EXPECT_EQ(refused.error().field, "hello.agentVersion");
    EXPECT_EQ(host(a.id)["agentVersion"], version) << "the version it was refused for";
    EXPECT_EQ(host(a.id)["state"], "Ready") << "its state is its members' story, told by its heartbeats";
  }
  const auto said = refusals();
  ASSERT_EQ(said.size(), 2u);
  EXPECT_THAT(said[0].message, HasSubstr("the agent is newer than its controller"));
  EXPECT_THAT(said[1].message, HasSubstr("3 minor versions older"));
  EXPECT_THAT(host(a.id)["refused"].get<std::string>(), HasSubstr("3 minor versions older"));

  again.agent_version = "0.2.0";
  auto link = std::make_shared<FakeLink>();
  ASSERT_TRUE(fleet_->connect(again, link).has_value()) << "two minor versions older";
  EXPECT_EQ(host(a.id)["refused"], nullptr);
  EXPECT_EQ(host(a.id)["agentVersion"], "0.2.0");
}

}  // namespace
}  // namespace tranche
