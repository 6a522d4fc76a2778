// End-to-end partitions (quality.md "Partitions"): hosts in their own network
// namespaces, a link cut and restored under a running application.
//
// Topology, all of it in namespaces this test creates (nothing listens in the
// root namespace):
//
//   c: the controller (0.0.0.0:PORT), the CLI, and agent "c" on 127.0.0.1
//   a: agent "a", reaching the controller over veth c<->a (10.231.K.0/30)
//   b: agent "b", reaching the controller over veth c<->b (10.231.K.4/30)

#include <signal.h>
#include <unistd.h>

#include <array>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "netns.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = R"(application: part
clusters:
  - name: web
    members: {min: 1, max: 6, desired: 3}
    artifact: {version: "1.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
      intervalSeconds: 1
    update: {minReadySeconds: 0}
    operational: {autoscaling: "off", autohealing: "on"}  # host load must not change the count
)";

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

class NetworkNamespaces : public ::testing::Test {
 protected:
  static constexpr size_t kA = 0, kB = 1, kC = 2;  // agents, by namespace

  void SetUp() override {
    const std::string tag = "tr" + std::to_string(::getpid());
    std::string why;
    for (const char* suffix : {"c", "a", "b"}) {
      auto ns = NetNamespace::create(tag + suffix, why);
      if (!ns) {
        GTEST_SKIP() << "this machine cannot create network namespaces (needs root and `ip netns`): " << why;
      }
      (suffix[0] == 'c' ? ns_c_ : suffix[0] == 'a' ? ns_a_ : ns_b_) = std::move(ns);
    }
    // The subnets only exist inside the test's namespaces; the third octet
    // from the pid just keeps concurrent runs' addresses apart in logs.
    const std::string net = "10.231." + std::to_string(1 + ::getpid() % 250) + ".";
    c_side_of_a_ = net + "1";
    c_side_of_b_ = net + "5";
    for (auto [ns, c_addr, host_addr] :
         {std::tuple{ns_a_.get(), net + "1/30", net + "2/30"}, std::tuple{ns_b_.get(), net + "5/30", net + "6/30"}}) {
      const std::string c_if = "to-" + ns->name().substr(ns->name().size() - 1);
      if (auto error = connect_veth({ns_c_.get(), c_if, c_addr}, {ns, "to-c", host_addr})) {
        GTEST_SKIP() << "this machine cannot link network namespaces with veth pairs: " << *error;
      }
    }

    start_controller();
    if (HasFatalFailure()) {
      return;
    }
    start_agent(kA, *ns_a_, "http://" + c_side_of_a_ + ":" + port_);
    start_agent(kB, *ns_b_, "http://" + c_side_of_b_ + ":" + port_);
    start_agent(kC, *ns_c_, "http://127.0.0.1:" + port_);
    ASSERT_TRUE(wait_until([&] { return ready_hosts() == 3; }, 20s))
        << hosts().dump(2) << "\nagent a: " << agents_[kA]->err() << "\nagent b: " << agents_[kB]->err();
    for (size_t i = 0; i < agents_.size(); ++i) {
      host_ids_[i] = host_of_agent(i);
      ASSERT_FALSE(host_ids_[i].empty());
    }
    ready_ = true;
  }

  void TearDown() override {
    if (ready_ && controller_ && controller_->running()) {
      cli({"delete", "part"});
      wait_until([&] { return members().empty(); }, 10s);
    }
    // Whatever is left: members seen (they run in their own sessions), then
    // everything still inside the namespaces, then the namespaces themselves.
    for (int64_t pid : pids_seen_) {
      if (process_alive(pid)) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
    for (auto& agent : agents_) {
      agent.reset();
    }
    controller_.reset();
    ns_a_.reset();
    ns_b_.reset();
    ns_c_.reset();
  }

  void start_controller() {
    const fs::path data = dir_.path() / "data";
    fs::create_directories(data);
    controller_ = std::make_unique<Process>(
        ns_c_->exec({tranche_binary(), "controller", "--listen", "0.0.0.0:0", "--data-dir", data.string(),
                     "--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"}),
        dir_.path(), "controller");
    // controller.url names the host it was given (0.0.0.0): only its port is
    // of use; each namespace reaches the controller at its own address.
    const bool up = wait_until(
        [&] {
          if (!controller_->running()) {
            return true;
          }
          const std::string url = read_file(data / "controller.url");
          if (url.empty()) {
            return false;
          }
          const std::string first = url.substr(0, url.find('\n'));
          port_ = first.substr(first.rfind(':') + 1);
          const std::string token = read_file(data / "admin.token");
          admin_token_ = token.substr(0, token.find('\n'));
          return cli({"version"}).exit_code == 0;
        },
        20s);
    ASSERT_TRUE(up && controller_->running()) << "controller did not start: " << controller_->err();
  }

  void start_agent(size_t i, const NetNamespace& ns, const std::string& server) {
    const std::string name = "agent-" + ns.name();
    agents_[i] =
        std::make_unique<Process>(ns.exec({tranche_binary(), "agent", "--server", server, "--join-token-file",
                                           (dir_.path() / "data" / "join.token").string(), "--state-dir",
                                           (dir_.path() / name).string(), "--labels", "netns=" + ns.name()}),
                                  dir_.path(), name, std::map<std::string, std::string>{{"PATH", path_with_hello()}});
    agent_dirs_[i] = dir_.path() / name;
  }

  static std::string path_with_hello() { return std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH"); }

  // `tranche ARGS...` inside the controller's namespace, as admin.
  CliResult cli(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {tranche_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(ns_c_->exec(argv), {{"TRANCHE_SERVER", "http://127.0.0.1:" + port_},
                                   {"TRANCHE_TOKEN", admin_token_},
                                   {"TRANCHE_TOKEN_FILE", "/nonexistent"}});
  }

  json get(const std::vector<std::string>& args) {
    auto r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  json hosts() { return get({"get", "hosts", "-o", "json"}); }

  json host(const std::string& id) {
    const json listed = hosts();
    for (const auto& h : listed["items"]) {
      if (h["id"] == id) {
        return h;
      }
    }
    return json::object();
  }

  int ready_hosts() {
    int n = 0;
    const json listed = hosts();
    for (const auto& h : listed["items"]) {
      n += h["connected"].get<bool>() && h["state"] == "Ready" ? 1 : 0;
    }
    return n;
  }

  std::vector<json> members() {
    std::vector<json> out;
    const json listed = get({"get", "members", "part", "-o", "json"});
    for (const auto& m : listed["items"]) {
      out.push_back(m);
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::vector<json> active() {
    std::vector<json> out;
    for (const auto& m : members()) {
      if (m["state"] == "Active") {
        out.push_back(m);
      }
    }
    return out;
  }

  std::string host_of_agent(size_t i) {
    const std::string journal = read_file(agent_dirs_[i] / "journal.json");
    return journal.empty() ? "" : json::parse(journal).value("hostId", "");
  }

  std::string diagnostics() {
    return "\nhosts: " + hosts().dump(2) + "\nmembers: " + get({"get", "members", "-o", "json"}).dump(2) +
           "\nevents:\n" + cli({"events", "-o", "json"}).out + "\nagent a: " + agents_[kA]->out() + agents_[kA]->err() +
           "\ncontroller: " + controller_->out() + controller_->err();
  }

  TempDir dir_;
  std::unique_ptr<NetNamespace> ns_a_, ns_b_, ns_c_;
  std::string c_side_of_a_, c_side_of_b_;
  std::unique_ptr<Process> controller_;
  std::string port_;
  std::string admin_token_;
  std::array<std::unique_ptr<Process>, 3> agents_;
  std::array<fs::path, 3> agent_dirs_;
  std::array<std::string, 3> host_ids_;
  std::set<int64_t> pids_seen_;
  bool ready_ = false;
};

TEST_F(NetworkNamespaces, PartitionedHostIsReplacedAndReconciledOnReconnect) {
  write_file(dir_.path() / "part.yaml", kApp);
  auto applied = cli({"apply", "-f", (dir_.path() / "part.yaml").string()});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  ASSERT_TRUE(wait_until(
      [&] {
        std::set<std::string> spread;
        for (const auto& m : active()) {
          spread.insert(m["host"]);
        }
        return spread.size() == 3 && members().size() == 3;
      },
      30s))
      << "three Active members, one per host" << diagnostics();

  const std::string host_a = host_ids_[kA];
  json stale;
  for (const auto& m : members()) {
    if (m["host"] == host_a) {
      stale = m;
    }
  }
  ASSERT_TRUE(stale.is_object() && stale["pid"].is_number()) << diagnostics();
  const int64_t stale_pid = stale["pid"].get<int64_t>();
  ASSERT_TRUE(process_alive(stale_pid));

  // Cut host a's link on the controller's side.
  auto cut = ns_c_->ip({"link", "set", "to-a", "down"});
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  const auto cut_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return host(host_a)["state"] == "Unreachable"; }, 10s))
      << "host a stays reachable behind a cut link" << diagnostics();
  // Heartbeat timeout 1.5 s + one 0.3 s interval, with slack for a loaded machine.
  EXPECT_LT(std::chrono::steady_clock::now() - cut_at, 4s);
  EXPECT_FALSE(host(host_a)["connected"].get<bool>());
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& m : members()) {
          if (m["id"] == stale["id"]) {
            return m["state"] == "Unreachable";
          }
        }
        return false;
      },
      5s))
      << "its member is Unreachable" << diagnostics();

  // Healed: three Active members again, on the hosts that are left.
  ASSERT_TRUE(wait_until(
      [&] {
        int on_others = 0;
        for (const auto& m : active()) {
          on_others += m["host"] != host_a ? 1 : 0;
        }
        return on_others == 3;
      },
      30s))
      << "the cluster was not healed onto b and c" << diagnostics();
  EXPECT_TRUE(process_alive(stale_pid)) << "a partition does not kill the member; it keeps running, stale";

  // Reconnect: the agent comes back, its stale member is stopped, no duplicates.
  auto heal = ns_c_->ip({"link", "set", "to-a", "up"});
  ASSERT_EQ(heal.exit_code, 0) << heal.err;
  ASSERT_TRUE(wait_until(
      [&] {
        const json h = host(host_a);
        return h["state"] == "Ready" && h["connected"] == true;
      },
      30s))
      << "host a did not come back after its link was restored" << diagnostics();
  ASSERT_TRUE(wait_until([&] { return !process_alive(stale_pid); }, 20s))
      << "the stale member (pid " << stale_pid << ") was not stopped" << diagnostics();
  ASSERT_TRUE(wait_until(
      [&] {
        const auto listed = members();
        const auto live = active();
        return listed.size() == 3 && live.size() == 3;
      },
      15s))
      << "exactly three members, all Active" << diagnostics();

  std::set<std::string> ids;
  for (const auto& m : members()) {
    ids.insert(m["id"]);
    EXPECT_NE(m["id"], stale["id"]) << "the stale member was stopped, not kept";
    EXPECT_NE(m["host"], host_a) << m.dump();
    EXPECT_TRUE(process_alive(m["pid"].get<int64_t>())) << m.dump();
  }
  EXPECT_EQ(ids.size(), 3u) << "no duplicate members";
  EXPECT_EQ(host(host_a)["members"], 0) << diagnostics();
  const json history = get({"get", "members", "part", "--state", "Terminated", "-o", "json"});
  bool stale_terminated = false;
  for (const auto& m : history["items"]) {
    stale_terminated = stale_terminated || m["id"] == stale["id"];
  }
  EXPECT_TRUE(stale_terminated) << history.dump(2);
}

}  // namespace
}  // namespace tranche::e2e
