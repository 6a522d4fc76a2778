// End-to-end: a controller, several real agents with their own state dirs,
// and real tranche-hello members (issue "Agents and members").

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <functional>
#include <limits>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "common/time_format.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

// Fixed sizes: members without a stats endpoint report the host's load,
// which on a busy test machine would make the autoscaler add members.
constexpr const char* kApp = R"(application: shop
operational: {autoscaling: "off"}
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

// Whether a connection to 127.0.0.1:port is refused (nothing listens there).
bool refuses_connections(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

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
    ASSERT_TRUE(wait_until([&] { return all_active(); }, 30s))
        << get({"get", "members", "-o", "json"}).dump(2) << agents_[0]->err() << agents_[1]->err() << agents_[2]->err()
        << controller_->process().err();
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

TEST_F(Fleet, AutohealingOffOnOneClusterDelaysOnlyItsHealing) {
  apply();
  ASSERT_EQ(controller_->cli({"set", "autohealing", "off", "shop/web"}).exit_code, 0);
  const json web_victim = active("shop/web").front();
  const json db_victim = active("shop/db").front();
  ASSERT_EQ(::kill(static_cast<pid_t>(web_victim["pid"].get<int64_t>()), SIGKILL), 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(db_victim["pid"].get<int64_t>()), SIGKILL), 0);

  // The sibling cluster heals: a new db member becomes Active.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto db = active("shop/db");
        return db.size() == 2 &&
               std::none_of(db.begin(), db.end(), [&](const json& m) { return m["id"] == db_victim["id"]; });
      },
      20s));
  ASSERT_TRUE(wait_until([&] { return !events_of_type("HealingDelayed").empty(); }, 10s));
  const json delayed = events_of_type("HealingDelayed").front();
  EXPECT_EQ(delayed["member"], web_victim["id"]);
  // Healing the sibling took several heartbeat intervals; web got nothing meanwhile.
  const auto web = members("shop/web");
  EXPECT_EQ(web.size(), 3u);
  for (const auto& m : web) {
    if (m["id"] == web_victim["id"]) {
      EXPECT_EQ(m["state"], "Failed");
      EXPECT_FALSE(m["healingDelayedSince"].is_null());
    }
  }
  auto listing = controller_->cli({"get", "members", "shop/web"});
  EXPECT_NE(listing.out.find("healing-delayed-since="), std::string::npos) << listing.out;

  ASSERT_EQ(controller_->cli({"set", "autohealing", "on", "shop/web"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return !events_of_type("HealingResumed").empty(); }, 10s));
  EXPECT_NE(events_of_type("HealingResumed").front()["message"].get<std::string>().find("delayed since"),
            std::string::npos);
  ASSERT_TRUE(wait_until([&] { return all_active(); }, 20s));
}

constexpr const char* kScalable = R"(application: shop
clusters:
  - name: api
    members: {min: 1, max: 3, desired: 1}
    artifact: {version: "1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health: {http: {port: http, path: /healthz}}
    stats: {http: {port: http, path: /admin/load}}
    update: {minReadySeconds: 0}
    autoscaling: {windowSeconds: 2, scaleUpAbove: 0.8, scaleDownBelow: 0.2, cooldownSeconds: 2}
    operational: {autoscaling: "off"}
)";

TEST_F(Fleet, AutoscalingFollowsLoadOnlyWhenOn) {
  write_file(dir_.path() / "scalable.yaml", kScalable);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "scalable.yaml").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return active("shop/api").size() == 1; }, 20s));
  auto set_load = [&](double load) {
    for (const auto& m : active("shop/api")) {
      cli::ApiClient member("http://127.0.0.1:" + std::to_string(m["ports"]["http"].get<int>()), "");
      member.send("POST", "/admin/load?value=" + std::to_string(load));
    }
  };
  auto load_states = [&] {
    std::vector<std::string> out;
    for (const auto& e : events_of_type("LoadStateChanged")) {
      out.push_back(e["to"]);
    }
    return out;
  };
  set_load(0.95);
  ASSERT_TRUE(wait_until([&] { return !load_states().empty() && load_states().back() == "overload"; }, 15s));
  // Off: the overload is published and nothing is added, heartbeat after heartbeat.
  EXPECT_FALSE(wait_until([&] { return members("shop/api").size() != 1; }, 3s));

  ASSERT_EQ(controller_->cli({"set", "autoscaling", "on", "shop/api"}).exit_code, 0);
  ASSERT_TRUE(wait_until(
      [&] {
        set_load(0.95);  // new members report their own load
        return active("shop/api").size() == 3;
      },
      40s));
  set_load(0.05);
  ASSERT_TRUE(wait_until(
      [&] {
        set_load(0.05);
        return members("shop/api").size() == 1;
      },
      40s));
  const auto scaled = events_of_type("ClusterScaled");
  ASSERT_EQ(scaled.size(), 4u) << "1 -> 2 -> 3 -> 2 -> 1";
  for (size_t i = 1; i < scaled.size(); ++i) {
    const auto gap = parse_rfc3339(scaled[i]["time"].get<std::string>()).value() -
                     parse_rfc3339(scaled[i - 1]["time"].get<std::string>()).value();
    EXPECT_GE(gap, 2s) << "cooldown respected between decisions " << i - 1 << " and " << i;
  }
}

TEST_F(Fleet, UndeployedAppKeepsAutoscalingOffForItsNewMembers) {
  // Configured but not deployed: apply, undeploy, set, deploy again.
  write_file(dir_.path() / "scalable.yaml", kScalable);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "scalable.yaml").string()}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"delete", "shop"}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"set", "autoscaling", "off", "shop", "--recursive"}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "scalable.yaml").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return active("shop/api").size() == 1; }, 20s));
  const json describe = get({"describe", "shop/api", "-o", "json"});
  EXPECT_EQ(describe["tree"][0]["autoscaling"]["effective"], "off");
  // The member, described on its own, inherits it.
  const std::string member = describe["tree"][0]["members"]["items"][0]["id"];
  EXPECT_EQ(get({"describe", member, "-o", "json"})["operational"]["autoscaling"]["effective"], "off");
}

std::string maintenance_app(const fs::path& markers) {
  return R"(application: shop
operational: {autoscaling: "off"}
groups:
  - name: backend
    clusters:
      - name: api
        members: {desired: 3}
        artifact:
          version: "1"
          command: ["tranche-hello", "--port", "${PORT_HTTP}"]
          env: {MARKERS: ")" +
         markers.string() + R"("}
        ports: [http]
        health: {http: {port: http, path: /healthz}}
        hooks:
          maintenance: ["sh", "-c", "sleep 1; echo $TRANCHE_MEMBER >> $MARKERS/hook-ran"]
        update: {maxUnavailable: 1, minReadySeconds: 0}
)";
}

TEST_F(Fleet, MaintenanceRestartRespectsMaxUnavailableAndSurvivesAnAgentRestart) {
  const fs::path markers = dir_.path() / "markers";
  fs::create_directories(markers);
  write_file(dir_.path() / "maint.yaml", maintenance_app(markers));
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "maint.yaml").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return active("shop/backend/api").size() == 3; }, 20s));
  std::map<std::string, int64_t> pids;
  for (const auto& m : members("shop/backend/api")) {
    pids[m["id"]] = m["pid"];
  }

  auto set = controller_->cli({"set", "maintenance", "restart", "shop/backend", "--recursive"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  // Kill the agent of the first member taken into maintenance, mid-hook.
  std::string first;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : events_of_type("MemberStateChanged")) {
          if (e["to"] == "Maintenance") {
            first = e["member"];
            return true;
          }
        }
        return false;
      },
      10s));
  const std::string host = [&] {
    for (const auto& m : members("shop/backend/api")) {
      if (m["id"] == first) {
        return m["host"].get<std::string>();
      }
    }
    return std::string();
  }();
  for (int i = 0; i < 3; ++i) {
    if (host_of_agent(i) == host) {
      agents_[i]->signal(SIGKILL);
      agents_[i]->wait(5s);
      start_agent(i);
    }
  }

  // Back to off by itself once every member has resumed.
  ASSERT_TRUE(wait_until(
      [&] {
        const json d = get({"describe", "shop/backend", "-o", "json"});
        return d["tree"][0]["maintenance"]["effective"] == "off" && active("shop/backend/api").size() == 3;
      },
      60s));
  const std::string ran = read_file(markers / "hook-ran");
  for (const auto& [id, pid] : pids) {
    EXPECT_NE(ran.find(id), std::string::npos) << id << " ran its hook";
  }
  for (const auto& m : members("shop/backend/api")) {
    ASSERT_TRUE(pids.contains(m["id"])) << "same members, restarted in place";
  }
  // Each was restarted: new processes (reported by the next heartbeat at the latest).
  EXPECT_TRUE(wait_until(
      [&] {
        const auto now = members("shop/backend/api");
        return std::all_of(now.begin(), now.end(), [&](const json& m) { return m["pid"] != pids[m["id"]]; });
      },
      5s));
  // Never more than maxUnavailable (1) out of Active at once.
  std::map<std::string, std::string> state;
  for (const auto& [id, pid] : pids) {
    state[id] = "Active";
  }
  bool started = false;
  for (const auto& e : events_of_type("MemberStateChanged")) {
    if (!state.contains(e["member"])) {
      continue;
    }
    started = started || e["to"] == "Maintenance";
    state[e["member"]] = e["to"];
    if (started) {
      const auto out = std::count_if(state.begin(), state.end(), [](const auto& s) { return s.second != "Active"; });
      EXPECT_LE(out, 1) << "at event " << e.dump();
    }
  }
  EXPECT_TRUE(events_of_type("HealingDelayed").empty());
}

// Two sibling clusters; maintenance replace targets api only.
constexpr const char* kReplaceApp = R"(application: shop
operational: {autoscaling: "off"}
groups:
  - name: backend
    clusters:
      - name: api
        members: {desired: 3}
        artifact: {version: "1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
        ports: [http]
        health:
          http: {port: http, path: /healthz}
          intervalSeconds: 1
        update: {maxUnavailable: 1, maxSurge: 1, minReadySeconds: 1}
      - name: cache
        members: {desired: 2}
        artifact: {version: "7", command: ["tranche-hello", "--port", "${PORT_MAIN}"]}
        ports: [main]
        health: {tcp: {port: main}}
        update: {minReadySeconds: 0}
)";

// The fewest Active and the most existing members of one cluster at any
// instant after `since`, replayed from the event log (exact, where polling
// could miss a short dip).
struct ClusterExtremes {
  long fewest_active = std::numeric_limits<long>::max();
  long most_existing = 0;
  bool saw_start = false;
  int changes = 0;  // member state changes replayed after `since`
};

ClusterExtremes replay_cluster(const std::vector<json>& events, const std::string& cluster,
                               const std::function<bool(const json&)>& since) {
  ClusterExtremes out;
  std::map<std::string, std::string> state;
  for (const auto& e : events) {
    if (!out.saw_start && since(e)) {
      out.saw_start = true;
    }
    if (e["type"] != "MemberStateChanged" || e["path"] != cluster) {
      continue;
    }
    state[e["member"]] = e["to"];
    if (out.saw_start) {
      ++out.changes;
      const long active = std::count_if(state.begin(), state.end(), [](const auto& s) { return s.second == "Active"; });
      const long existing =
          std::count_if(state.begin(), state.end(), [](const auto& s) { return s.second != "Terminated"; });
      out.fewest_active = std::min(out.fewest_active, active);
      out.most_existing = std::max(out.most_existing, existing);
    }
  }
  return out;
}

TEST_F(Fleet, MaintenanceReplaceGivesNewMembersWithinMaxUnavailableAndSurgeAndLeavesTheSiblingAlone) {
  write_file(dir_.path() / "replace.yaml", kReplaceApp);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "replace.yaml").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until(
      [&] { return active("shop/backend/api").size() == 3 && active("shop/backend/cache").size() == 2; }, 30s))
      << get({"get", "members", "-o", "json"}).dump(2) << controller_->process().err();
  std::map<std::string, int64_t> originals;
  for (const auto& m : members("shop/backend/api")) {
    originals[m["id"]] = m["pid"];
  }
  std::map<std::string, int64_t> sibling;
  for (const auto& m : members("shop/backend/cache")) {
    sibling[m["id"]] = m["pid"];
  }
  ASSERT_EQ(originals.size(), 3u);
  ASSERT_EQ(sibling.size(), 2u);

  auto set = controller_->cli({"set", "maintenance", "replace", "shop/backend/api"});
  ASSERT_EQ(set.exit_code, 0) << set.err;

  // Poll every member listing while it runs: never fewer than desired -
  // maxUnavailable (2) Active; done when three Active members are all new
  // and the node is back to off.
  size_t fewest_polled = 3;
  std::vector<json> last;
  const bool done = wait_until(
      [&] {
        last = members("shop/backend/api");
        std::vector<std::string> serving;
        for (const auto& m : last) {
          if (m["state"] == "Active") {
            serving.push_back(m["id"]);
          }
        }
        fewest_polled = std::min(fewest_polled, serving.size());
        if (serving.size() != 3 || std::any_of(serving.begin(), serving.end(),
                                               [&](const std::string& id) { return originals.contains(id); })) {
          return false;
        }
        const json d = get({"describe", "shop/backend/api", "-o", "json"});
        return d["tree"][0]["maintenance"]["effective"] == "off";
      },
      90s);
  ASSERT_TRUE(done) << json(last).dump(2) << get({"describe", "shop/backend/api", "-o", "json"}).dump(2)
                    << controller_->process().err();
  EXPECT_GE(fewest_polled, 2u) << "polled Active members of shop/backend/api";

  // Every original member was stopped, with its process.
  ASSERT_TRUE(wait_until(
      [&] {
        const json gone = get({"get", "members", "shop/backend/api", "--state", "Terminated", "-o", "json"});
        std::set<std::string> ids;
        for (const auto& m : gone["items"]) {
          ids.insert(m["id"]);
        }
        return std::all_of(originals.begin(), originals.end(), [&](const auto& o) { return ids.contains(o.first); });
      },
      20s))
      << get({"get", "members", "shop/backend/api", "--state", "Terminated", "-o", "json"}).dump(2);
  for (const auto& [id, pid] : originals) {
    EXPECT_TRUE(wait_until([&, pid = pid] { return !process_alive(pid); }, 5s)) << id << " (pid " << pid << ")";
  }
  const auto now = members("shop/backend/api");
  ASSERT_EQ(now.size(), 3u) << json(now).dump(2);
  std::set<std::string> new_ids;
  for (const auto& m : now) {
    EXPECT_FALSE(originals.contains(m["id"])) << m["id"] << " is an original: replace gives new ids";
    EXPECT_EQ(m["state"], "Active");
    EXPECT_TRUE(process_alive(m["pid"])) << m.dump();
    new_ids.insert(m["id"]);
  }
  EXPECT_EQ(new_ids.size(), 3u);

  // The sibling cluster was not touched: same members, same processes.
  const auto cache = members("shop/backend/cache");
  ASSERT_EQ(cache.size(), sibling.size()) << json(cache).dump(2);
  for (const auto& m : cache) {
    ASSERT_TRUE(sibling.contains(m["id"])) << m.dump();
    EXPECT_EQ(m["pid"], sibling[m["id"]]) << m["id"];
    EXPECT_EQ(m["state"], "Active") << m["id"];
  }

  // The whole run from the event log: never fewer than 2 Active, never more
  // than desired + maxSurge (4) members in existence, nothing for the sibling.
  const auto events = [&] {
    std::vector<json> out;
    auto r = controller_->cli({"events", "-o", "json"});
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      out.push_back(json::parse(line));
    }
    return out;
  }();
  auto started = [](const json& e) {
    return e["type"] == "OperationalStateChanged" && e["path"] == "shop/backend/api" && e["to"] == "replace";
  };
  const ClusterExtremes api = replay_cluster(events, "shop/backend/api", started);
  ASSERT_TRUE(api.saw_start);
  ASSERT_GT(api.changes, 0);
  EXPECT_GE(api.fewest_active, 2) << "desired 3 - maxUnavailable 1";
  EXPECT_LE(api.most_existing, 4) << "desired 3 + maxSurge 1";
  bool after = false;
  for (const auto& e : events) {
    after = after || started(e);
    if (after && e["type"] == "MemberStateChanged") {
      EXPECT_NE(e["path"], "shop/backend/cache") << e.dump();
    }
  }
  const auto completed = std::count_if(events.begin(), events.end(), [](const json& e) {
    return e["type"] == "OperationalStateChanged" && e["path"] == "shop/backend/api" &&
           e["message"].get<std::string>().find("completed: every member replaced") != std::string::npos;
  });
  EXPECT_EQ(completed, 1) << "one completion event";
  EXPECT_TRUE(events_of_type("HealingDelayed").empty());
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
  // Until the processes are gone, not only no longer Active: the agent is
  // stopped next, and members it had not stopped yet would outlive the test.
  EXPECT_TRUE(wait_until([&] { return std::ranges::none_of(before, process_alive); }, 15s))
      << "delete stops every member";
  ::kill(std::stoi(agent_pid), SIGTERM);
}

// quality.md: a member never inherits the controller's or the agent's
// environment. The --dev controller's environment (its local agent's too)
// holds a token; the member writes what it sees, then serves.
TEST(DevMode, MemberSeesNoSecretOfTheControllerOrAgent) {
  TempDir dir;
  Controller controller(dir.path() / "data");
  const std::string path = std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH");
  ::setenv("PATH", path.c_str(), 1);
  ::setenv("TRANCHE_TOKEN", "tt_secret_of_the_controller", 1);
  ::setenv("TRANCHE_E2E_AGENT_SECRET", "secret-of-whoever-started-it", 1);
  controller.start({"--dev", "--heartbeat-interval", "300ms"});
  ::unsetenv("TRANCHE_TOKEN");
  ::unsetenv("TRANCHE_E2E_AGENT_SECRET");
  std::string agent_pid;
  ASSERT_TRUE(
      wait_until([&] { return !(agent_pid = read_file(dir.path() / "data" / "agent" / "agent.pid")).empty(); }, 10s));
  const std::unique_ptr<const std::string, void (*)(const std::string*)> stop_agent(
      &agent_pid, [](const std::string* pid) { ::kill(std::stoi(*pid), SIGTERM); });
  const fs::path seen = dir.path() / "member.env";
  write_file(dir.path() / "app.yaml", R"(application: envcheck
clusters:
  - name: web
    members: {desired: 1}
    artifact:
      version: "1"
      command: ["sh", "-c", "env > )" + seen.string() + R"(.tmp && mv )" + seen.string() + R"(.tmp )" +
                                           seen.string() + R"( && exec tranche-hello --port ${PORT_HTTP}"]
      env: {LOG_LEVEL: info}
    ports: [http]
    health: {http: {port: http, path: /healthz}}
    update: {minReadySeconds: 0}
)");
  ASSERT_EQ(controller.cli({"apply", "-f", (dir.path() / "app.yaml").string()}).exit_code, 0);
  std::set<int64_t> pids;
  const bool active = wait_until(
      [&] {
        const json listed = json::parse(controller.cli({"get", "members", "envcheck", "-o", "json"}).out);
        for (const auto& m : listed["items"]) {
          if (m["pid"].is_number()) {
            pids.insert(m["pid"].get<int64_t>());
          }
          if (m["state"] == "Active") {
            return true;
          }
        }
        return false;
      },
      30s);
  const std::string env = "\n" + read_file(seen);
  EXPECT_TRUE(active) << "the member serves with its explicit environment";
  EXPECT_NE(env.find("\nTRANCHE_MEMBER=envcheck/web/"), std::string::npos) << env;
  EXPECT_NE(env.find("\nLOG_LEVEL=info\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PORT_HTTP="), std::string::npos) << env;
  EXPECT_EQ(env.find("TRANCHE_TOKEN"), std::string::npos) << env;
  EXPECT_EQ(env.find("TRANCHE_E2E_AGENT_SECRET"), std::string::npos) << env;
  EXPECT_EQ(env.find("secret"), std::string::npos) << env;

  ASSERT_EQ(controller.cli({"delete", "envcheck"}).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return std::ranges::none_of(pids, process_alive); }, 15s))
      << "delete stops the member";
}

// The local agent inherits no descriptor of the controller: once the
// controller is gone (SIGKILL or SIGTERM), nothing listens on its port, a new
// controller binds the same port and the agent reconnects to it before its
// host is declared Unreachable. (The agent used to inherit the listening
// socket: the restart failed with "Address already in use", and clients and
// the agent's reconnects hung on a socket nobody accepted on.)
TEST(DevMode, RestartOnTheSamePortServesAndTheLocalAgentReconnects) {
  TempDir dir;
  Controller controller(dir.path() / "data");
  const unsigned short port = free_port();
  controller.listen_on("127.0.0.1:" + std::to_string(port));
  const std::vector<std::string> args = {"--dev", "--heartbeat-interval", "300ms", "--heartbeat-timeout", "10s"};
  controller.start(args);
  std::string agent_pid;
  ASSERT_TRUE(
      wait_until([&] { return !(agent_pid = read_file(dir.path() / "data" / "agent" / "agent.pid")).empty(); }, 10s));
  // The agent outlives the controller by design: stopped however the test ends.
  const std::unique_ptr<const std::string, void (*)(const std::string*)> stop_agent(
      &agent_pid, [](const std::string* pid) { ::kill(std::stoi(*pid), SIGTERM); });
  auto host_ready = [&] {
    const auto r = controller.cli({"get", "hosts", "-o", "json"});
    if (r.exit_code != 0) {
      return false;
    }
    const json hosts = json::parse(r.out)["items"];
    return hosts.size() == 1 && hosts[0]["connected"] == true && hosts[0]["state"] == "Ready";
  };
  ASSERT_TRUE(wait_until(host_ready, 15s)) << controller.process().err();

  for (const int signal : {SIGKILL, SIGTERM}) {
    SCOPED_TRACE(signal == SIGKILL ? "after SIGKILL" : "after SIGTERM");
    controller.process().signal(signal);
    ASSERT_TRUE(controller.process().wait(30s).has_value());
    EXPECT_TRUE(refuses_connections(port)) << "nothing may listen on a dead controller's port";
    ASSERT_NO_THROW(controller.start(args));
    EXPECT_EQ(controller.url(), "http://127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(read_file(dir.path() / "data" / "agent" / "agent.pid"), agent_pid) << "the same local agent";
    EXPECT_TRUE(wait_until(host_ready, 15s)) << "the local agent reconnects";
  }
  const auto events = controller.cli({"events", "-o", "json"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  std::istringstream lines(events.out);
  for (std::string line; std::getline(lines, line);) {
    const json e = json::parse(line);
    EXPECT_FALSE(e["type"] == "HostStateChanged" && e["to"] == "Unreachable") << e.dump();
  }
}

}  // namespace
}  // namespace tranche::e2e
