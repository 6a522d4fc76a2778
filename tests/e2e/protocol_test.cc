// End-to-end: protocol versions and build skew between a controller and
// real agents (protocol/versions.h, docs/upgrading.md). An agent plays an
// older or an unknown protocol with its hidden --protocol N; tranche-next is
// an agent one minor version newer than its controller.

#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = R"(application: shop
operational: {autoscaling: "off"}
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "1.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
      intervalSeconds: 1
    update: {minReadySeconds: 0}
)";

// What a process logged (spdlog writes to stdout, refusals to start to stderr).
std::string output(const Process& p) { return p.out() + p.err(); }

class Protocol : public ::testing::Test {
 protected:
  void SetUp() override { controller_.start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"}); }

  void TearDown() override {
    controller_.cli({"delete", "shop"});
    wait_until([&] { return get({"get", "members", "shop", "-o", "json"})["items"].empty(); }, 15s);
  }

  // An agent of `binary` with its own state dir and labels name=NAME.
  Process& start_agent(const std::string& name, const std::string& binary, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {binary,
                                     "agent",
                                     "--server",
                                     controller_.url(),
                                     "--join-token-file",
                                     (controller_.data_dir() / "join.token").string(),
                                     "--state-dir",
                                     (dir_.path() / name).string(),
                                     "--labels",
                                     "name=" + name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agents_.push_back(std::make_unique<Process>(
        argv, dir_.path(), name,
        std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}}));
    return *agents_.back();
  }

  json get(const std::vector<std::string>& args) {
    auto r = controller_.cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  json host_labelled(const std::string& name) {
    const json hosts = get({"get", "hosts", "-o", "json"});
    for (const auto& h : hosts["items"]) {
      if (h["labels"].value("name", "") == name) {
        return h;
      }
    }
    return nullptr;
  }

  std::vector<json> events_of_type(const std::string& type) {
    std::vector<json> out;
    std::istringstream lines(controller_.cli({"events", "-o", "json"}).out);
    for (std::string line; std::getline(lines, line);) {
      json e = json::parse(line);
      if (e["type"] == type) {
        out.push_back(e);
      }
    }
    return out;
  }

  TempDir dir_;
  Controller controller_{dir_.path() / "data"};
  std::vector<std::unique_ptr<Process>> agents_;
};

TEST_F(Protocol, AnAgentOfAnUnknownProtocolOrANewerBuildIsRefusedWithTheReason) {
  Process& future = start_agent("future", tranche_binary(), {"--protocol", "9"});
  Process& next = start_agent("next", next_binary());
  json refused_future;
  json refused_next;
  ASSERT_TRUE(wait_until(
      [&] {
        refused_future = host_labelled("future");
        refused_next = host_labelled("next");
        return refused_future.is_object() && refused_next.is_object() && refused_future["refused"].is_string() &&
               refused_next["refused"].is_string();
      },
      15s))
      << output(future) << output(next);

  // In get hosts: a host in state Refused, never connected, with the reason.
  for (const json& h : {refused_future, refused_next}) {
    EXPECT_EQ(h["state"], "Refused") << h.dump();
    EXPECT_EQ(h["connected"], false);
    EXPECT_EQ(h["protocol"], nullptr);
  }
  EXPECT_NE(refused_future["refused"].get<std::string>().find("agent protocol version 9 is not supported: this "
                                                              "controller speaks versions 1 to 3"),
            std::string::npos)
      << refused_future.dump();
  EXPECT_NE(refused_next["refused"].get<std::string>().find("the agent is newer than its controller"),
            std::string::npos)
      << refused_next.dump();
  EXPECT_EQ(refused_next["agentVersion"].get<std::string>().substr(0, 6), "0.2.0+") << "tranche-next says so";
  const std::string table = controller_.cli({"get", "hosts"}).out;
  EXPECT_NE(table.find("Refused"), std::string::npos) << table;

  // In the event log, once each.
  const auto said = events_of_type("HostRefused");
  ASSERT_EQ(said.size(), 2u);
  for (const auto& e : said) {
    const std::string path = e["path"];
    EXPECT_TRUE(path == "host/" + refused_future["id"].get<std::string>() ||
                path == "host/" + refused_next["id"].get<std::string>())
        << e.dump();
  }

  // The agents heard why (the error message, the close frame) and wait
  // before trying again instead of spinning.
  ASSERT_TRUE(wait_until(
      [&] {
        return output(future).find("connecting again in 30 s") != std::string::npos &&
               output(next).find("connecting again in 30 s") != std::string::npos;
      },
      5s));
  EXPECT_NE(output(future).find("controller refused this agent: hello.protocol: agent protocol version 9"),
            std::string::npos)
      << output(future);
  EXPECT_NE(output(next).find("controller refused this agent: hello.agentVersion: agent 0.2.0"), std::string::npos)
      << output(next);
  EXPECT_TRUE(future.running());
  EXPECT_TRUE(next.running());
}

TEST_F(Protocol, AnAgentOfTheOlderProtocolIsWelcomedInItAndRunsMembers) {
  Process& old = start_agent("old", tranche_binary(), {"--protocol", "1"});
  Process& current = start_agent("current", tranche_binary());
  ASSERT_TRUE(wait_until(
      [&] {
        const json a = host_labelled("old");
        const json b = host_labelled("current");
        return a.is_object() && b.is_object() && a["connected"] == true && b["connected"] == true;
      },
      15s))
      << output(old) << output(current);
  EXPECT_EQ(host_labelled("old")["protocol"], 1);
  EXPECT_EQ(host_labelled("current")["protocol"], 3);
  EXPECT_EQ(host_labelled("old")["refused"], nullptr);
  const std::string table = controller_.cli({"get", "hosts"}).out;
  EXPECT_NE(table.find("PROTOCOL"), std::string::npos) << table;

  // Members on both (placement spreads them), Active and healthy.
  write_file(dir_.path() / "shop.yaml", kApp);
  ASSERT_EQ(controller_.cli({"apply", "-f", (dir_.path() / "shop.yaml").string()}).exit_code, 0);
  const std::string old_id = host_labelled("old")["id"];
  ASSERT_TRUE(wait_until(
      [&] {
        int active_on_old = 0;
        int active = 0;
        const json members = get({"get", "members", "shop", "-o", "json"});
        for (const auto& m : members["items"]) {
          active += m["state"] == "Active" ? 1 : 0;
          active_on_old += m["state"] == "Active" && m["host"] == old_id ? 1 : 0;
        }
        return active == 2 && active_on_old == 1;
      },
      20s))
      << output(old);
  EXPECT_TRUE(events_of_type("HostRefused").empty());
}

}  // namespace
}  // namespace tranche::e2e
