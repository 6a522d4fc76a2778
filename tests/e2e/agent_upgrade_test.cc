// End-to-end: `tranche agent upgrade` (updates.md, "Upgrading Tranche
// itself"; docs/upgrading.md). A tranche-next controller (agents may be
// older than their controller, never newer), three real `tranche` agents,
// tranche-hello members behind a real HAProxy under tranche-loadgen's load.
// Upgraded to tranche-next one host at a time, every agent reports the new
// version, no member is restarted (same pids) and no request fails; a binary
// that exits at once falls back on the first host by itself and pauses the
// upgrade with the reason, the other hosts untouched.

#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kHaproxy = "/usr/sbin/haproxy";
constexpr int kHosts = 3;

json manifest() {
  json cluster = {
      {"name", "web"},
      {"members", {{"min", 1}, {"max", 10}, {"desired", kHosts}}},
      {"artifact", {{"version", "1.0.0"}, {"command", {"tranche-hello", "--port", "${PORT_HTTP}"}}}},
      {"ports", {"http"}},
      {"health", {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}}},
      {"loadBalancer", {{"haproxy", {{"backend", "web"}}}, {"drainTimeoutSeconds", 5}}},
      {"operational", {{"autoscaling", "off"}}},
  };
  return json{{"application", "shop"}, {"clusters", json::array({cluster})}};
}

class AgentUpgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kHaproxy, X_OK) != 0) {
      GTEST_SKIP() << "no HAProxy at " << kHaproxy;
    }
    socket_ = dir_.path() / "admin.sock";
    frontend_port_ = free_port();
    const fs::path config = dir_.path() / "haproxy.cfg";
    write_file(config, "global\n  stats socket " + socket_.string() +
                           " level admin\n"
                           "defaults\n  mode http\n  retries 0\n  timeout connect 1s\n  timeout client 10s\n"
                           "  timeout server 10s\n"
                           "frontend www\n  bind 127.0.0.1:" +
                           std::to_string(frontend_port_) +
                           "\n  default_backend web\n"
                           "backend web\n  balance roundrobin\n");
    haproxy_ = std::make_unique<Process>(std::vector<std::string>{kHaproxy, "-f", config.string(), "-db"}, dir_.path(),
                                         "haproxy");
    ASSERT_TRUE(wait_until([&] { return fs::exists(socket_) || !haproxy_->running(); }, 10s));
    ASSERT_TRUE(haproxy_->running()) << haproxy_->err();

    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->use_binary(next_binary());
    start_controller();
    for (int i = 0; i < kHosts; ++i) {
      const std::string name = "agent" + std::to_string(i);
      agents_.push_back(std::make_unique<Process>(
          std::vector<std::string>{tranche_binary(), "agent", "--server-file",
                                   (controller_->data_dir() / "controller.url").string(), "--join-token-file",
                                   (controller_->data_dir() / "join.token").string(), "--state-dir",
                                   (dir_.path() / name).string(), "--labels", "name=" + name, "--slots", "1"},
          dir_.path(), name,
          std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}}));
    }
    ASSERT_TRUE(wait_until([&] { return connected_hosts() == kHosts; }, 20s)) << api("GET", "/api/v1/hosts").body;
    const Answer version = api("GET", "/version");
    next_version_ = version.body.value("version", "");
    ASSERT_FALSE(next_version_.empty()) << version.body;

    ASSERT_EQ(api("POST", "/api/v1/applications", manifest()).status / 100, 2);
    ASSERT_TRUE(wait_until([&] { return all_serving(); }, 60s)) << members().dump(1);
  }

  void TearDown() override {
    if (!controller_) {
      return;
    }
    if (HasFailure()) {
      std::cout << "--- upgrade\n" << api("GET", "/api/v1/agents/upgrade").body.dump(1) << "\n--- agent0 (tail)\n"
                << agents_[0]->out().substr(agents_[0]->out().size() > 4000 ? agents_[0]->out().size() - 4000 : 0)
                << std::flush;
    }
    api("POST", "/api/v1/migration/complete");
    api("DELETE", "/api/v1/applications/shop");
    wait_until([&] { return members().empty(); }, 30s);
    for (int i = 0; i < kHosts; ++i) {
      kill_agent_of(dir_.path() / ("agent" + std::to_string(i)));
    }
  }

  struct Answer {
    int status = 0;
    json body;
  };

  void start_controller() {
    controller_->start(
        {"--heartbeat-interval", "300ms", "--heartbeat-timeout", "3000ms", "--haproxy-socket", socket_.string()});
  }

  Answer api(const std::string& method, const std::string& target, const json& body = nullptr) const {
    cli::ApiClient client(controller_->url(), controller_->admin_token());
    auto reply = client.send(method, target, body.is_null() ? "" : body.dump());
    if (!reply) {
      return Answer{0, json{{"transport error", reply.error().describe()}}};
    }
    return Answer{reply->status, json::parse(reply->body, nullptr, false)};
  }

  json hosts() const { return api("GET", "/api/v1/hosts").body.value("items", json::array()); }

  int connected_hosts() const {
    int n = 0;
    for (const auto& h : hosts()) {
      n += h.value("connected", false) ? 1 : 0;
    }
    return n;
  }

  // Host id -> the version its agent reports.
  std::map<std::string, std::string> agent_versions() const {
    std::map<std::string, std::string> out;
    for (const auto& h : hosts()) {
      out[h["id"]] = h["agentVersion"].is_string() ? h["agentVersion"].get<std::string>() : "";
    }
    return out;
  }

  json members() const {
    const Answer a = api("GET", "/api/v1/members?app=shop");
    return a.status == 200 ? a.body.value("items", json::array()) : json::array();
  }

  bool all_serving() const {
    int serving = 0;
    for (const auto& m : members()) {
      serving += m["state"] == "Active" && m.contains("loadBalancer") && m["loadBalancer"]["state"] == "serving";
    }
    return serving == kHosts;
  }

  // Member id -> its process id.
  std::map<std::string, int64_t> pids() const {
    std::map<std::string, int64_t> out;
    for (const auto& m : members()) {
      out[m["id"]] = m["pid"].is_number() ? m["pid"].get<int64_t>() : -1;
    }
    return out;
  }

  json upgrade() const { return api("GET", "/api/v1/agents/upgrade").body; }

  std::unique_ptr<Process> start_load(const std::string& name) {
    return std::make_unique<Process>(
        std::vector<std::string>{std::string(TRANCHE_BIN_DIR) + "/tranche-loadgen", "--url",
                                 "http://127.0.0.1:" + std::to_string(frontend_port_) + "/", "--connections", "3",
                                 "--keep-alive-rate", "40/s", "--new-connection-rate", "20/s", "--duration", "240s",
                                 "--stop-file", (dir_.path() / (name + ".stop")).string(), "--json"},
        dir_.path(), name);
  }

  json finish_load(const std::string& name, Process& load) {
    write_file(dir_.path() / (name + ".stop"), "");
    EXPECT_EQ(load.wait(20s), 0) << load.err();
    const std::string out = load.out();
    const size_t line = out.rfind("{\"bench\"");
    EXPECT_NE(line, std::string::npos) << out;
    return line == std::string::npos ? json::object() : json::parse(out.substr(line, out.find('\n', line) - line));
  }

  void lock_platform() {
    const Answer locked = api("POST", "/api/v1/migration/begin");
    ASSERT_EQ(locked.status, 200) << locked.body;
  }

  TempDir dir_;
  fs::path socket_;
  int frontend_port_ = 0;
  std::unique_ptr<Process> haproxy_;
  std::unique_ptr<Controller> controller_;
  std::vector<std::unique_ptr<Process>> agents_;
  std::string next_version_;
};

TEST_F(AgentUpgrade, ThreeAgentsUpgradeUnderLoadWithoutRestartingAMemberOrFailingARequest) {
  const auto before = pids();
  ASSERT_EQ(before.size(), static_cast<size_t>(kHosts));
  for (const auto& [host, version] : agent_versions()) {
    ASSERT_NE(version, next_version_) << host;
  }
  auto load = start_load("upgrade");
  // The load runs for at least this long, so that its 100 requests and more
  // are a sample worth the name even when the upgrade takes half a second.
  const auto load_ends_no_sooner = std::chrono::steady_clock::now() + 2s;

  // Without the platform's lock, refused with the way to take it.
  const CliResult unlocked = controller_->cli({"agent", "upgrade", "--version", next_version_, "--artifact",
                                               next_binary(), "--fallback-seconds", "30"});
  EXPECT_EQ(unlocked.exit_code, 1);
  EXPECT_NE(unlocked.err.find("migration begin --all"), std::string::npos) << unlocked.err;

  lock_platform();
  const CliResult started = controller_->cli({"agent", "upgrade", "--version", next_version_, "--artifact",
                                              next_binary(), "--max-unavailable", "1", "--fallback-seconds", "30"});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  EXPECT_NE(started.out.find("batch 1 of 3"), std::string::npos) << started.out;

  // One host at a time: never two upgrading together.
  int most_at_once = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        const json u = upgrade();
        most_at_once = std::max(most_at_once, u["counts"].value("upgrading", 0));
        return u.value("state", "") != "Running";
      },
      180s))
      << upgrade().dump(1);
  const json done = upgrade();
  EXPECT_EQ(done["state"], "Completed") << done.dump(1);
  EXPECT_EQ(done["counts"]["done"], kHosts) << done.dump(1);
  EXPECT_EQ(most_at_once, 1);
  for (const auto& [host, version] : agent_versions()) {
    EXPECT_EQ(version, next_version_) << host;
  }
  EXPECT_EQ(pids(), before) << "a member was restarted";
  std::this_thread::sleep_until(load_ends_no_sooner);
  const json run = finish_load("upgrade", *load);
  EXPECT_EQ(run.value("failed", -1), 0) << run.dump();
  EXPECT_GT(run.value("sent", 0), 100) << run.dump();

  const CliResult status = controller_->cli({"agent", "upgrade", "status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("Completed"), std::string::npos) << status.out;
}

TEST_F(AgentUpgrade, ABinaryThatExitsAtOnceFallsBackOnTheFirstHostAndPausesTheUpgrade) {
  const auto before_versions = agent_versions();
  const auto before_pids = pids();
  const fs::path broken = dir_.path() / "broken-agent";
  write_file(broken, "#!/bin/sh\necho 'this agent does not start' >&2\nexit 1\n");
  fs::permissions(broken, fs::perms::owner_all);
  lock_platform();
  const CliResult started = controller_->cli(
      {"agent", "upgrade", "--version", next_version_, "--artifact", broken.string(), "--fallback-seconds", "20"});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;

  ASSERT_TRUE(wait_until([&] { return upgrade().value("state", "") == "Paused"; }, 120s)) << upgrade().dump(1);
  const json paused = upgrade();
  const json& first = paused["progress"][0];
  EXPECT_EQ(first["status"], "failed") << paused.dump(1);
  EXPECT_NE(paused.value("reason", "").find("host " + first["host"].get<std::string>()), std::string::npos)
      << paused.dump(1);
  for (size_t i = 1; i < paused["progress"].size(); ++i) {
    EXPECT_EQ(paused["progress"][i]["status"], "pending") << paused.dump(1);
  }
  // The first host is back on its previous binary, connected; the others
  // never moved; no member was restarted.
  ASSERT_TRUE(wait_until([&] { return connected_hosts() == kHosts && agent_versions() == before_versions; }, 60s))
      << hosts().dump(1);
  EXPECT_EQ(pids(), before_pids);

  // Aborted, it is over.
  const CliResult aborted = controller_->cli({"agent", "upgrade", "abort"});
  EXPECT_EQ(aborted.exit_code, 0) << aborted.err;
  EXPECT_EQ(upgrade()["state"], "Aborted");
}

TEST_F(AgentUpgrade, AControllerKilledMidUpgradeResumesItFromTheStore) {
  const auto before = pids();
  lock_platform();
  const CliResult started = controller_->cli({"agent", "upgrade", "--version", next_version_, "--artifact",
                                              next_binary(), "--fallback-seconds", "30"});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  controller_->kill_hard();
  start_controller();
  ASSERT_TRUE(wait_until([&] { return upgrade().value("state", "") != "Running"; }, 180s)) << upgrade().dump(1);
  if (upgrade()["state"] == "Paused") {
    // The kill cut the first host's download: its agent said so and the
    // upgrade paused; resumed, the host is tried again and it goes on.
    EXPECT_NE(upgrade().value("reason", "").find("not staged"), std::string::npos) << upgrade().dump(1);
    const CliResult resumed = controller_->cli({"agent", "upgrade", "resume"});
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    ASSERT_TRUE(wait_until([&] { return upgrade().value("state", "") != "Running"; }, 180s)) << upgrade().dump(1);
  }
  const json done = upgrade();
  EXPECT_EQ(done["state"], "Completed") << done.dump(1);
  EXPECT_EQ(done["id"], 1) << "the same upgrade, not a new one";
  EXPECT_EQ(done["counts"]["done"], kHosts) << done.dump(1);
  ASSERT_TRUE(wait_until([&] { return connected_hosts() == kHosts; }, 30s)) << hosts().dump(1);
  for (const auto& [host, version] : agent_versions()) {
    EXPECT_EQ(version, next_version_) << host;
  }
  EXPECT_EQ(pids(), before) << "a member was restarted";
}

}  // namespace
}  // namespace tranche::e2e
