// End-to-end: the agent's side of `tranche agent upgrade` at its worst
// moment (src/agent/README.md, "Self-upgrade"). A real controller, one real
// agent running a tranche-hello member, upgraded to tranche-next: SIGKILLed
// mid-switch and started again through its original path, the host comes
// back on one of the two builds, never neither, its member's pid unchanged.

#include <signal.h>
#include <unistd.h>

#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

bool alive(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class AgentUpgradeSwitch : public ::testing::Test {
 protected:
  void SetUp() override {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->use_binary(next_binary());  // agents may be older than their controller, never newer
    controller_->start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "3000ms"});
    start_agent();
    ASSERT_TRUE(wait_until([&] { return host().value("connected", false); }, 20s)) << hosts().dump(1);
    old_version_ = host().value("agentVersion", "");
    next_version_ = api("GET", "/version").body.value("version", "");
    ASSERT_FALSE(old_version_.empty());
    ASSERT_NE(old_version_, next_version_);
    json cluster = {{"name", "web"},
                    {"members", {{"min", 1}, {"max", 1}, {"desired", 1}}},
                    {"artifact", {{"version", "1.0.0"}, {"command", {"tranche-hello", "--port", "${PORT_HTTP}"}}}},
                    {"ports", {"http"}},
                    {"operational", {{"autoscaling", "off"}}}};
    ASSERT_EQ(
        api("POST", "/api/v1/applications", json{{"application", "shop"}, {"clusters", json::array({cluster})}})
                .status /
            100,
        2);
    ASSERT_TRUE(wait_until([&] { return member_pid() > 0; }, 30s)) << members().dump(1);
    ASSERT_EQ(api("POST", "/api/v1/migration/begin").status, 200);
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cout << "--- upgrade\n" << api("GET", "/api/v1/agents/upgrade").body.dump(1) << "\n--- agent\n"
                << read_file(dir_.path() / "agent.err") << std::flush;
    }
    kill_agent_of(dir_.path() / "agent");
    if (const pid_t member = member_pid(); member > 0) {
      ::kill(-member, SIGKILL);
    }
  }

  void start_agent() {
    agent_ = std::make_unique<Process>(
        std::vector<std::string>{tranche_binary(), "agent", "--server", controller_->url(), "--join-token-file",
                                 (controller_->data_dir() / "join.token").string(), "--state-dir",
                                 (dir_.path() / "agent").string()},
        dir_.path(), "agent",
        std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}});
  }

  struct Answer {
    int status = 0;
    json body;
  };

  Answer api(const std::string& method, const std::string& target, const json& body = nullptr) const {
    cli::ApiClient client(controller_->url(), controller_->admin_token());
    auto reply = client.send(method, target, body.is_null() ? "" : body.dump());
    if (!reply) {
      return Answer{0, json{{"transport error", reply.error().describe()}}};
    }
    return Answer{reply->status, json::parse(reply->body, nullptr, false)};
  }

  json hosts() const { return api("GET", "/api/v1/hosts").body.value("items", json::array()); }
  json host() const {
    const json all = hosts();
    return all.empty() ? json::object() : all[0];
  }
  json members() const { return api("GET", "/api/v1/members?app=shop").body.value("items", json::array()); }
  pid_t member_pid() const {
    const json all = members();
    return !all.empty() && all[0]["pid"].is_number() ? all[0]["pid"].get<pid_t>() : -1;
  }

  // The agent process running for the state dir, by its pid file; -1 when none.
  pid_t running_agent() const {
    const std::string pid = read_file(dir_.path() / "agent" / "agent.pid");
    return !pid.empty() && alive(std::stoi(pid)) ? std::stoi(pid) : -1;
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Process> agent_;
  std::string old_version_;
  std::string next_version_;
};

TEST_F(AgentUpgradeSwitch, AnAgentKilledMidSwitchComesBackOnOneOfTheTwoVersions) {
  const pid_t member = member_pid();
  const pid_t agent = agent_->pid();
  const CliResult started = controller_->cli(
      {"agent", "upgrade", "--version", next_version_, "--artifact", next_binary(), "--fallback-seconds", "30"});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  // The switch: the same pid now runs the staged binary. SIGKILLed right then,
  // before or just after the new binary confirmed.
  ASSERT_TRUE(wait_until([&] { return exe_of(agent).string().find("/versions/") != std::string::npos; }, 60s))
      << read_file(dir_.path() / "agent.err");
  agent_->signal(SIGKILL);
  ASSERT_TRUE(agent_->wait(10s).has_value());
  // Its supervisor starts it again through the original path. It runs, or
  // finds the watchdog's fallback running (and says so): one agent either way.
  start_agent();
  // The upgrade learns the host's outcome: done on the new build (it had
  // confirmed), or failed with the reason (it had not, and fell back).
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string state = api("GET", "/api/v1/agents/upgrade").body.value("state", "");
        return state == "Completed" || state == "Paused";
      },
      60s))
      << api("GET", "/api/v1/agents/upgrade").body.dump(1);
  const json upgrade = api("GET", "/api/v1/agents/upgrade").body;
  const bool upgraded = upgrade.value("state", "") == "Completed";
  const std::string expected = upgraded ? next_version_ : old_version_;
  RecordProperty("cameBackOn", expected);  // which of the two depends on the instant of the kill
  ASSERT_TRUE(wait_until(
      [&] {
        const json h = host();
        return h.value("connected", false) && h.value("agentVersion", "") == expected && running_agent() > 0;
      },
      60s))
      << upgrade.dump(1) << hosts().dump(1);
  const fs::path binary = exe_of(running_agent());
  if (upgraded) {
    EXPECT_NE(binary.string().find("/versions/"), std::string::npos) << binary;
  } else {
    EXPECT_EQ(binary, fs::path(tranche_binary()));
    EXPECT_NE(upgrade.value("reason", "").find("back on " + old_version_), std::string::npos) << upgrade.dump(1);
  }
  EXPECT_EQ(member_pid(), member);
  EXPECT_TRUE(alive(member));
}

}  // namespace
}  // namespace tranche::e2e
