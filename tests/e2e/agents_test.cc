// End-to-end: a controller, several real agents with their own state dirs,
// and real tranche-hello members (issue "Agents and members").

#include <signal.h>

#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 6, desired: 3}
    artifact: {version: "1.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
      intervalSeconds: 1
    update: {minReadySeconds: 1}
  - name: db
    members: {min: 1, max: 3, desired: 2}
    artifact: {version: "15", command: ["tranche-hello", "--port", "${PORT_MAIN}"]}
    ports: [main]
    health:
      tcp: {port: main}
    update: {minReadySeconds: 0}
)";

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

class Fleet : public ::testing::Test {
 protected:
  void SetUp() override {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"});
    for (int i = 0; i < 3; ++i) {
      start_agent(i);
    }
    ASSERT_TRUE(wait_until([&] { return connected_hosts() == 3; }, 15s)) << agents_[0]->err();
  }

  void TearDown() override {
    // Members live in their own sessions: stop them through the controller,
    // then make sure none is left behind.
    controller_->cli({"delete", "shop"});
    wait_until([&] { return members().empty(); }, 15s);
    for (const auto& pid : pids_seen_) {
      if (process_alive(pid)) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
  }

  void start_agent(int i) {
    agents_[i] = std::make_unique<Process>(
        std::vector<std::string>{tranche_binary(), "agent", "--server", controller_->url(), "--join-token-file",
                                 (controller_->data_dir() / "join.token").string(), "--state-dir",
                                 (dir_.path() / ("agent" + std::to_string(i))).string(), "--labels",
                                 "rack=r" + std::to_string(i)},
        dir_.path(), "agent" + std::to_string(i), std::map<std::string, std::string>{{"PATH", path_with_hello()}});
  }

  static std::string path_with_hello() { return std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH"); }

  json get(const std::vector<std::string>& args) {
    auto r = controller_->cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  int connected_hosts() {
    int n = 0;
    const json hosts = get({"get", "hosts", "-o", "json"});
    for (const auto& h : hosts["items"]) {
      n += h["connected"].get<bool>() && h["state"] == "Ready" ? 1 : 0;
    }
    return n;
  }

  std::vector<json> members(const std::string& path = "shop") {
    std::vector<json> out;
    const json listed = get({"get", "members", path, "-o", "json"});
    for (const auto& m : listed["items"]) {
      out.push_back(m);
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::vector<json> active(const std::string& path) {
    std::vector<json> out;
    for (const auto& m : members(path)) {
      if (m["state"] == "Active") {
        out.push_back(m);
      }
    }
    return out;
  }

  bool all_active() { return active("shop/web").size() == 3 && active("shop/db").size() == 2 && members().size() == 5; }

  std::string host_of_agent(int i) {
    return read_file(dir_.path() / ("agent" + std::to_string(i)) / "journal.json").empty()
               ? ""
               : json::parse(read_file(dir_.path() / ("agent" + std::to_string(i)) / "journal.json"))["hostId"];
  }

  std::vector<json> events_of_type(const std::string& type) {
    std::vector<json> out;
    auto r = controller_->cli({"events", "-o", "json"});
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      json e = json::parse(line);
      if (e["type"] == type) {
        out.push_back(e);
      }
    }
    return out;
  }

  void apply() {
    write_file(dir_.path() / "shop.yaml", kApp);
    auto r = controller_->cli({"apply", "-f", (dir_.path() / "shop.yaml").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(wait_until([&] { return all_active(); }, 30s)) << get({"get", "members", "-o", "json"}).dump(2);
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Process> agents_[3];
  std::set<int64_t> pids_seen_;
};

TEST_F(Fleet, ClustersReachActiveSpreadAcrossHosts) {
  apply();
  std::set<std::string> web_hosts;
  for (const auto& m : active("shop/web")) {
    web_hosts.insert(m["host"]);
    EXPECT_TRUE(m["ports"].contains("http"));
    EXPECT_TRUE(process_alive(m["pid"]));
  }
  EXPECT_EQ(web_hosts.size(), 3u) << "three web members on three hosts";
  std::set<std::string> db_hosts;
  for (const auto& m : active("shop/db")) {
    db_hosts.insert(m["host"]);
  }
  EXPECT_EQ(db_hosts.size(), 2u);

  // The member really serves, with its environment.
  const json web = active("shop/web").front();
  auto logs = controller_->cli({"logs", web["id"]});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("listening"), std::string::npos) << logs.out;
}

TEST_F(Fleet, AgentRestartKeepsItsMembersRunning) {
  apply();
  const std::string host = host_of_agent(0);
  std::map<std::string, int64_t> before;
  for (const auto& m : members()) {
    if (m["host"] == host) {
      before[m["id"]] = m["pid"];
    }
  }
  ASSERT_FALSE(before.empty());
  agents_[0]->signal(SIGKILL);
  agents_[0]->wait(5s);
  for (const auto& [id, pid] : before) {
    EXPECT_TRUE(process_alive(pid)) << id << " survives its agent";
  }
  start_agent(0);
  ASSERT_TRUE(wait_until([&] { return connected_hosts() == 3; }, 10s));
  for (const auto& m : members()) {
    if (before.contains(m["id"])) {
      EXPECT_EQ(m["pid"], before[m["id"]]) << "same process, re-adopted";
      EXPECT_EQ(m["state"], "Active");
    }
  }
  EXPECT_TRUE(events_of_type("HostStateChanged").size() == 3u) << "three joins, no Unreachable";
  for (const auto& e : events_of_type("MemberStateChanged")) {
    EXPECT_NE(e["to"], "Failed") << e.dump();
  }
}

TEST_F(Fleet, KilledMemberIsReportedAndReplaced) {
  apply();
  const json victim = active("shop/web").front();
  ASSERT_EQ(::kill(static_cast<pid_t>(victim["pid"].get<int64_t>()), SIGKILL), 0);
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : events_of_type("MemberStateChanged")) {
          if (e["member"] == victim["id"] && e["to"] == "Failed") {
            return true;
          }
        }
        return false;
      },
      10s));
  ASSERT_TRUE(wait_until([&] { return all_active(); }, 20s));
  for (const auto& m : members("shop/web")) {
    EXPECT_NE(m["id"], victim["id"]) << "a replacement, with a new id";
  }
  const json history = get({"get", "members", "shop/web", "--state", "Terminated", "-o", "json"});
  ASSERT_EQ(history["items"].size(), 1u);
  EXPECT_EQ(history["items"][0]["id"], victim["id"]);
}

TEST_F(Fleet, LostHostIsReplacedAndItsStaleMembersStoppedOnReturn) {
  apply();
  const std::string host = host_of_agent(1);
  std::vector<json> stranded;
  for (const auto& m : members()) {
    if (m["host"] == host) {
      stranded.push_back(m);
    }
  }
  ASSERT_FALSE(stranded.empty());
  agents_[1]->signal(SIGKILL);
  agents_[1]->wait(5s);
  const auto lost_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until(
      [&] {
        const json hosts = get({"get", "hosts", "-o", "json"});
        for (const auto& h : hosts["items"]) {
          if (h["id"] == host) {
            return h["state"] == "Unreachable";
          }
        }
        return false;
      },
      10s));
  // Heartbeat timeout 1.5 s + one 0.3 s interval, with slack for a loaded machine.
  EXPECT_LT(std::chrono::steady_clock::now() - lost_at, 4s);
  ASSERT_TRUE(wait_until(
      [&] {
        int on_others = 0;
        for (const auto& m : members()) {
          on_others += m["state"] == "Active" && m["host"] != host ? 1 : 0;
        }
        return on_others == 5;
      },
      20s));

  start_agent(1);  // the stale host returns
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& m : stranded) {
          if (process_alive(m["pid"])) {
            return false;
          }
        }
        return true;
      },
      20s));
  ASSERT_TRUE(wait_until([&] { return all_active(); }, 10s));
  for (const auto& m : members()) {
    EXPECT_NE(m["host"], host) << "its old members were stopped, not kept";
  }
}

TEST_F(Fleet, DeleteStopsEveryMember) {
  apply();
  std::vector<int64_t> pids;
  for (const auto& m : members()) {
    pids.push_back(m["pid"]);
  }
  ASSERT_EQ(controller_->cli({"delete", "shop"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return members().empty(); }, 15s));
  for (int64_t pid : pids) {
    EXPECT_TRUE(wait_until([&] { return !process_alive(pid); }, 5s)) << pid;
  }
}

TEST_F(Fleet, DrainedHostTakesNoNewMembers) {
  const std::string host = host_of_agent(2);
  ASSERT_FALSE(host.empty());
  auto r = controller_->cli({"host", "drain", host});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  write_file(dir_.path() / "shop.yaml", kApp);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "shop.yaml").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return all_active(); }, 30s));
  for (const auto& m : members()) {
    EXPECT_NE(m["host"], host);
  }
  EXPECT_EQ(controller_->cli({"host", "undrain", host}).exit_code, 0);
  EXPECT_EQ(controller_->cli({"host", "drain", "nope"}).exit_code, 1);
}

// `tranche controller --dev` runs its own agent, which outlives a crash of
// the controller and is reused by the next one.
TEST(DevMode, LocalAgentOutlivesTheControllerAndIsReused) {
  TempDir dir;
  Controller controller(dir.path() / "data");
  const std::string path = std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH");
  ::setenv("PATH", path.c_str(), 1);  // the local agent inherits it, and its members
  controller.start({"--dev", "--heartbeat-interval", "300ms"});
  write_file(dir.path() / "app.yaml", R"(application: solo
clusters:
  - name: web
    members: {desired: 2}
    artifact: {version: "1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health: {http: {port: http, path: /healthz}}
    update: {minReadySeconds: 0}
)");
  ASSERT_EQ(controller.cli({"apply", "-f", (dir.path() / "app.yaml").string()}).exit_code, 0);
  auto pids = [&] {
    std::set<int64_t> out;
    const json listed = json::parse(controller.cli({"get", "members", "-o", "json"}).out);
    for (const auto& m : listed["items"]) {
      if (m["state"] == "Active") {
        out.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  };
  ASSERT_TRUE(wait_until([&] { return pids().size() == 2; }, 30s));
  const auto before = pids();
  const std::string agent_pid = read_file(dir.path() / "data" / "agent" / "agent.pid");

  controller.kill_hard();
  controller.start({"--dev", "--heartbeat-interval", "300ms"});
  EXPECT_EQ(read_file(dir.path() / "data" / "agent" / "agent.pid"), agent_pid) << "the same local agent";
  ASSERT_TRUE(wait_until([&] { return pids() == before; }, 15s)) << "members kept their processes";

  ASSERT_EQ(controller.cli({"delete", "solo"}).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return pids().empty(); }, 15s));
  ::kill(std::stoi(agent_pid), SIGTERM);
}

}  // namespace
}  // namespace tranche::e2e
