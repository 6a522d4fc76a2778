// The fault campaign (quality.md "Reliability", "Fault campaign"; issue 14):
// a seeded schedule of operations (scaling, in-place and replace rolling
// updates, maintenance restart and replace, autohealing off and on) and of
// faults (SIGKILL of the controller or of an agent, SIGSTOP/SIGCONT of an
// agent, a host's link cut and restored), on the real controller, real
// agents and real tranche-hello members, while InvariantObserver checks the
// budgets on the event log at every committed instant (fault_campaign.h says
// exactly what). At the end, with every fault healed and the cluster back at
// rest: the log read again is gap-free and says what it said during the run,
// the members the log gives are the members the API lists, no member was
// updated twice for one revision (its hook's own record), every workload
// process belongs to a live member, and none is left once the application
// is deleted.
//
// TRANCHE_FAULT_SEED replays a run (the seed is printed), TRANCHE_FAULT_COUNT
// sets the number of faults (18 here; bench/fault-campaign/run.sh runs 120).
//
// Topology, all in namespaces the test creates (as netns_test.cc):
//   c: the controller (0.0.0.0:PORT, the same port after every restart),
//      agent 2 on 127.0.0.1, and this test's own API calls (its threads
//      enter c)
//   a, b: agents 0 and 1, reaching the controller over veths c<->a, c<->b

#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "fault_campaign.h"
#include "harness.h"
#include "netns.h"

namespace tranche::e2e {
namespace {

using campaign::Fault;
using campaign::FaultKind;
using campaign::Operation;
using campaign::OperationKind;
using campaign::WebSpec;
using nlohmann::json;

constexpr const char* kApp = "shop";
constexpr const char* kCluster = "shop/web";
constexpr int kDefaultFaults = 18;

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

// The in-place update hook leaves one line per run in a file per member:
// "MEMBER TARGET_REVISION VERSION"; it takes a moment so that faults land
// while hooks run.
std::vector<std::string> marker_hook(const fs::path& dir) {
  return {"sh", "-c",
          "sleep 0.3; echo \"$TRANCHE_MEMBER $TRANCHE_TARGET_REVISION $VERSION\" >> " + dir.string() +
              "/$(echo $TRANCHE_MEMBER | tr / _)"};
}

json manifest_of(const WebSpec& s, const fs::path& markers) {
  json update = {{"method", s.in_place ? "in-place" : "replace"},
                 {"strategy", "rolling"},
                 {"maxUnavailable", s.max_unavailable},
                 {"maxSurge", s.max_surge},
                 {"minReadySeconds", 1},
                 // Faults are not the rollout's failures: count them, never act on them.
                 {"maxFailures", 1000},
                 {"onFailure", "pause"}};
  json cluster = {
      {"name", "web"},
      {"members", {{"min", 1}, {"max", 10}, {"desired", s.desired}}},
      {"artifact", {{"version", s.version}, {"command", {"tranche-hello", "--port", "${PORT_HTTP}"}}}},
      {"ports", {"http"}},
      {"health", {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}}},
      {"update", update},
      {"hooks", {{"update", marker_hook(markers)}, {"maintenance", {"sh", "-c", "sleep 0.3"}}}},
      // Host load on a busy test machine must not change the count.
      {"operational", {{"autoscaling", "off"}}},
  };
  return json{{"application", kApp}, {"clusters", json::array({cluster})}};
}

// The workload processes (tranche-hello) running in a namespace.
std::set<int64_t> workloads_in(const NetNamespace& ns) {
  std::set<int64_t> out;
  for (pid_t pid : ns.pids()) {
    std::string comm = read_file("/proc/" + std::to_string(pid) + "/comm");
    if (comm.starts_with("tranche-hello")) {
      out.insert(pid);
    }
  }
  return out;
}

class FaultCampaign : public ::testing::Test {
 protected:
  static constexpr int kHosts = 3;        // agents 0 (ns a), 1 (ns b), 2 (ns c)
  static constexpr int kLinkedHosts = 2;  // agents 0 and 1 sit behind a veth

  void SetUp() override {
    const std::string tag = "tf" + std::to_string(::getpid());
    std::string why;
    for (const char* suffix : {"c", "a", "b"}) {
      auto ns = NetNamespace::create(tag + suffix, why);
      if (!ns) {
        GTEST_SKIP() << "this machine cannot create network namespaces (needs root and `ip netns`): " << why;
      }
      namespaces_.push_back(std::move(ns));
    }
    // The subnets exist only inside the test's namespaces (10.232/16 keeps
    // them apart from netns_test's 10.231/16 in logs).
    const std::string net = "10.232." + std::to_string(1 + ::getpid() % 250) + ".";
    for (int i = 0; i < kLinkedHosts; ++i) {
      const std::string c_addr = net + std::to_string(4 * i + 1);
      if (auto error = connect_veth({&ns_c(), link_of(i), c_addr + "/30"},
                                    {namespaces_[1 + i].get(), "to-c", net + std::to_string(4 * i + 2) + "/30"})) {
        GTEST_SKIP() << "this machine cannot link network namespaces with veth pairs: " << *error;
      }
      agent_servers_[i] = c_addr;
    }
    agent_servers_[2] = "127.0.0.1";
    in_c_ = ThreadInNamespace::enter(ns_c(), why);
    ASSERT_TRUE(in_c_) << why;

    fs::create_directories(data_dir());
    fs::create_directories(markers());
    ASSERT_TRUE(start_controller()) << controller_->err();
    for (int i = 0; i < kHosts; ++i) {
      start_agent(i);
    }
    ASSERT_TRUE(wait_until([&] { return ready_hosts() == kHosts; }, 30s)) << hosts().dump(1);
    for (int i = 0; i < kHosts; ++i) {
      const std::string journal = read_file(agent_dir(i) / "journal.json");
      host_ids_[i] = journal.empty() ? "" : json::parse(journal).value("hostId", "");
      ASSERT_FALSE(host_ids_[i].empty()) << "agent " << i << " has no host id";
    }
  }

  void TearDown() override {
    if (observer_) {
      observer_->stop();
    }
    for (int64_t pid : pids_seen_) {
      if (process_alive(pid)) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
    for (auto& agent : agents_) {
      if (agent) {
        agent->signal(SIGCONT);  // a stopped process would not die until continued
      }
      agent.reset();
    }
    controller_.reset();
    in_c_.reset();
    namespaces_.clear();  // SIGKILLs whatever is still inside, then deletes them
  }

  NetNamespace& ns_c() const { return *namespaces_[0]; }
  static std::string link_of(int host) { return host == 0 ? "to-a" : "to-b"; }
  fs::path data_dir() const { return dir_.path() / "data"; }
  fs::path markers() const { return dir_.path() / "markers"; }
  fs::path agent_dir(int i) const { return dir_.path() / ("agent" + std::to_string(i)); }
  std::string server() const { return "http://127.0.0.1:" + port_; }

  // Started (and restarted) on the port of its first start, so that agents
  // given --server find it again.
  bool start_controller() {
    fs::remove(data_dir() / "controller.url");
    controller_ = std::make_unique<Process>(
        ns_c().exec({tranche_binary(), "controller", "--listen", "0.0.0.0:" + (port_.empty() ? "0" : port_),
                     "--data-dir", data_dir().string(), "--heartbeat-interval", "300ms", "--heartbeat-timeout",
                     "3000ms"}),
        dir_.path(), "controller");
    return wait_until(
               [&] {
                 if (!controller_->running()) {
                   return true;
                 }
                 const std::string url = read_file(data_dir() / "controller.url");
                 if (url.empty()) {
                   return false;
                 }
                 const std::string first = url.substr(0, url.find('\n'));
                 port_ = first.substr(first.rfind(':') + 1);
                 const std::string token = read_file(data_dir() / "admin.token");
                 token_ = token.substr(0, token.find('\n'));
                 auto ready = cli::ApiClient(server(), "").send("GET", "/readyz");
                 return ready && ready->status == 200;
               },
               20s) &&
           controller_->running();
  }

  void start_agent(int i) {
    const NetNamespace& ns = *namespaces_[i == 2 ? 0 : 1 + i];
    agents_[i] = std::make_unique<Process>(
        ns.exec({tranche_binary(), "agent", "--server", "http://" + agent_servers_[i] + ":" + port_,
                 "--join-token-file", (data_dir() / "join.token").string(), "--state-dir", agent_dir(i).string()}),
        dir_.path(), "agent" + std::to_string(i),
        std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}});
  }

  struct Answer {
    int status = 0;
    json body;
  };

  Answer api(const std::string& method, const std::string& target, const json& body = nullptr) const {
    auto reply = cli::ApiClient(server(), token_).send(method, target, body.is_null() ? "" : body.dump());
    if (!reply) {
      return Answer{0, json{{"transport error", reply.error().describe()}}};
    }
    return Answer{reply->status, json::parse(reply->body, nullptr, false)};
  }

  json get(const std::string& target) const {
    const Answer a = api("GET", target);
    return a.status == 200 ? a.body : json::object();
  }

  json hosts() const { return get("/api/v1/hosts"); }

  int ready_hosts() const {
    int n = 0;
    for (const auto& h : hosts().value("items", json::array())) {
      n += h.value("connected", false) && h.value("state", "") == "Ready" ? 1 : 0;
    }
    return n;
  }

  bool host_ready(int i) const {
    for (const auto& h : hosts().value("items", json::array())) {
      if (h.value("id", "") == host_ids_[i]) {
        return h.value("connected", false) && h.value("state", "") == "Ready";
      }
    }
    return false;
  }

  std::vector<json> members(const std::string& state = "") {
    std::vector<json> out;
    const std::string filter = state.empty() ? "" : "&state=" + state;
    for (const auto& m : get("/api/v1/members?app=" + std::string(kApp) + filter).value("items", json::array())) {
      out.push_back(m);
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::set<int64_t> workloads() const {
    std::set<int64_t> out;
    for (const auto& ns : namespaces_) {
      out.merge(workloads_in(*ns));
    }
    return out;
  }

  std::vector<json> whole_log() const {
    std::vector<json> out;
    for (uint64_t since = 0;;) {
      const json page = get("/api/v1/events?limit=10000&since=" + std::to_string(since));
      const json items = page.value("items", json::array());
      out.insert(out.end(), items.begin(), items.end());
      if (items.size() < 10000) {
        return out;
      }
      since = items.back()["seq"];
    }
  }

  void note(const std::string& line) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0_);
    std::ostringstream s;
    s << "[" << elapsed.count() / 1000 << "." << (elapsed.count() % 1000) / 100 << "s] " << line << '\n';
    notes_ += s.str();
    std::cout << s.str() << std::flush;
  }

  void perform(const Operation& op);
  void inject(const Fault& fault);
  bool converge(std::string& why);
  void check_at_rest();
  void check_nothing_left_after_delete();

  TempDir dir_;
  std::vector<std::unique_ptr<NetNamespace>> namespaces_;  // c, a, b
  std::unique_ptr<ThreadInNamespace> in_c_;
  std::array<std::string, kHosts> agent_servers_;
  std::array<std::string, kHosts> host_ids_;
  std::unique_ptr<Process> controller_;
  std::array<std::unique_ptr<Process>, kHosts> agents_;
  std::string port_;
  std::string token_;
  std::unique_ptr<campaign::InvariantObserver> observer_;
  std::set<int64_t> pids_seen_;
  std::map<std::string, int> faults_by_kind_;
  int kills_survived_ = 0;
  int operations_ = 0;
  std::string notes_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

void FaultCampaign::perform(const Operation& op) {
  ++operations_;
  note("operation: " + describe(op));
  Answer a;
  switch (op.kind) {
    case OperationKind::kScale:
    case OperationKind::kUpdateInPlace:
    case OperationKind::kUpdateReplace:
      a = api("POST", "/api/v1/applications", manifest_of(op.spec, markers()));
      break;
    case OperationKind::kMaintenanceRestart:
    case OperationKind::kMaintenanceRestartAllAtOnce:
    case OperationKind::kMaintenanceReplace: {
      json body = {{"path", "web"},
                   {"maintenance", op.kind == OperationKind::kMaintenanceReplace ? "replace" : "restart"}};
      if (op.kind == OperationKind::kMaintenanceRestartAllAtOnce) {
        body["allAtOnce"] = true;
      }
      a = api("PUT", "/api/v1/applications/" + std::string(kApp) + "/operational-state", body);
      break;
    }
    case OperationKind::kAutohealingOff:
    case OperationKind::kAutohealingOn:
      a = api("PUT", "/api/v1/applications/" + std::string(kApp) + "/operational-state",
              {{"path", "web"}, {"autohealing", op.kind == OperationKind::kAutohealingOff ? "off" : "on"}});
      break;
  }
  ASSERT_TRUE(a.status == 200 || a.status == 201) << describe(op) << ": " << a.status << " " << a.body.dump();
}

void FaultCampaign::inject(const Fault& fault) {
  ++faults_by_kind_[campaign::name_of(fault.kind)];
  note("fault: " + describe(fault));
  switch (fault.kind) {
    case FaultKind::kKillController:
      controller_->signal(SIGKILL);
      ASSERT_TRUE(controller_->wait(10s)) << "the controller outlived SIGKILL";
      ASSERT_TRUE(start_controller()) << "the controller did not come back: " << controller_->err();
      ++kills_survived_;
      break;
    case FaultKind::kKillAgent:
      agents_[fault.host]->signal(SIGKILL);
      ASSERT_TRUE(agents_[fault.host]->wait(10s)) << "agent " << fault.host << " outlived SIGKILL";
      std::this_thread::sleep_for(fault.hold);  // the fault's length: how long the host has no agent
      start_agent(fault.host);
      ASSERT_TRUE(wait_until([&] { return host_ready(fault.host); }, 30s))
          << "agent " << fault.host << " did not come back: " << agents_[fault.host]->err();
      ++kills_survived_;
      break;
    case FaultKind::kPauseAgent:
      agents_[fault.host]->signal(SIGSTOP);
      std::this_thread::sleep_for(fault.hold);  // the fault's length
      agents_[fault.host]->signal(SIGCONT);
      break;
    case FaultKind::kCutLink: {
      auto down = ns_c().ip({"link", "set", link_of(fault.host), "down"});
      ASSERT_EQ(down.exit_code, 0) << down.err;
      std::this_thread::sleep_for(fault.hold);  // the fault's length
      auto up = ns_c().ip({"link", "set", link_of(fault.host), "up"});
      ASSERT_EQ(up.exit_code, 0) << up.err;
      break;
    }
  }
}

// At rest: every host back, no rollout moving, no maintenance pending, and
// `desired` members all Active on the application's current revision.
bool FaultCampaign::converge(std::string& why) {
  return wait_until(
      [&] {
        if (ready_hosts() != kHosts) {
          why = "hosts: " + hosts().dump();
          return false;
        }
        const json rollout = get("/api/v1/applications/" + std::string(kApp) + "/rollout");
        const std::string phase = rollout.value("phase", "");
        if (phase == "Paused") {
          note("the rollout is Paused (" + rollout.value("reason", "") + "): resume");
          api("POST", "/api/v1/applications/" + std::string(kApp) + "/rollout/resume");
        }
        if (phase == "Progressing" || phase == "Paused" || phase == "RollingBack" || phase == "CanaryPaused") {
          why = "rollout " + rollout.dump();
          return false;
        }
        const json state = get("/api/v1/applications/" + std::string(kApp) + "/operational-state");
        for (const auto& node : state.value("nodes", json::array())) {
          if (node.contains("maintenance") && node["maintenance"].value("effective", "off") != "off") {
            why = "maintenance pending: " + node.dump();
            return false;
          }
        }
        const json app = get("/api/v1/applications/" + std::string(kApp));
        const int64_t revision = app.value("revision", int64_t{0});
        const json manifest =
            get("/api/v1/applications/" + std::string(kApp) + "/revisions/" + std::to_string(revision));
        int desired = -1;
        for (const auto& c : manifest.value("manifest", json::object()).value("clusters", json::array())) {
          desired = c["members"].value("desired", -1);
        }
        const auto live = members();
        int settled = 0;
        for (const auto& m : live) {
          settled += m["state"] == "Active" && m.value("revision", int64_t{-1}) == revision ? 1 : 0;
        }
        why = std::to_string(settled) + " of " + std::to_string(live.size()) + " members Active on revision " +
              std::to_string(revision) + ", desired " + std::to_string(desired) + ": " + json(live).dump();
        return static_cast<int>(live.size()) == desired && settled == desired;
      },
      180s);
}

void FaultCampaign::check_at_rest() {
  // The log read again: gap-free from 1, and what it said during the run.
  // At rest nothing moves, but a heartbeat-driven change may still land:
  // read the log and the members until both say the same.
  std::vector<json> log;
  std::map<std::string, json> listed;
  ASSERT_TRUE(wait_until(
      [&] {
        log = whole_log();
        listed.clear();
        for (const auto& m : members()) {
          listed[m["id"]] = m;
        }
        for (const auto& m : members("Terminated")) {
          listed[m["id"]] = m;
        }
        const uint64_t last = log.empty() ? 0 : log.back()["seq"].get<uint64_t>();
        return whole_log().size() == log.size() && observer_->seen() >= last;
      },
      30s))
      << "the observer did not catch up with the log";
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i]["seq"] != i + 1) {
      observer_->add_violation("the log read at the end has seq " + log[i]["seq"].dump() + " at position " +
                               std::to_string(i + 1));
      break;
    }
  }
  observer_->count_check("log re-read: gap-free", log.size());
  const auto seen = observer_->digests();
  for (const auto& e : log) {
    const uint64_t seq = e["seq"];
    auto it = seen.find(seq);
    if (it != seen.end() && it->second != campaign::InvariantObserver::digest(e)) {
      observer_->add_violation("seq " + std::to_string(seq) + " was " + it->second + " during the run, is " +
                               campaign::InvariantObserver::digest(e) + " now");
    }
  }
  observer_->count_check("log re-read: unchanged", seen.size());

  // No member id lost: the log's members are the API's, in the same state.
  const auto states = observer_->member_states();
  for (const auto& [id, state] : states) {
    auto it = listed.find(id);
    if (it == listed.end() || (*it).second["state"] != state) {
      observer_->add_violation("the log leaves " + id + " " + state + ", the API lists it as " +
                               (it == listed.end() ? std::string("nothing") : (*it).second["state"].dump()));
    }
  }
  for (const auto& [id, m] : listed) {
    if (!states.contains(id)) {
      observer_->add_violation("the API lists " + id + ", which no event ever created");
    }
  }
  observer_->count_check("members: log = API", states.size() + listed.size());

  // No member updated twice for one revision: its hook's own record.
  int hook_runs = 0;
  for (const auto& entry : fs::directory_iterator(markers())) {
    std::map<std::string, int> runs;
    std::istringstream lines(read_file(entry.path()));
    for (std::string line; std::getline(lines, line);) {
      ++hook_runs;
      std::istringstream words(line);
      std::string member, revision;
      words >> member >> revision;
      if (++runs[revision] == 2) {
        observer_->add_violation(member + "'s update hook ran twice for revision " + revision);
      }
    }
  }
  observer_->count_check("update hook once per revision", hook_runs);

  // Every workload process belongs to a live member (stale ones of a cut
  // host are stopped once it is back).
  std::set<int64_t> expected;
  std::string last;
  const bool matched = wait_until(
      [&] {
        expected.clear();
        for (const auto& m : members()) {
          if (m["pid"].is_number()) {
            expected.insert(m["pid"].get<int64_t>());
          }
        }
        const auto running = workloads();
        last = "workload processes " + json(running).dump() + ", members' pids " + json(expected).dump();
        return running == expected;
      },
      30s);
  observer_->count_check("processes: workloads = live members", expected.size());
  if (!matched) {
    observer_->add_violation("at rest, " + last);
  }
}

void FaultCampaign::check_nothing_left_after_delete() {
  const Answer deleted = api("DELETE", "/api/v1/applications/" + std::string(kApp));
  ASSERT_EQ(deleted.status, 200) << deleted.body.dump();
  std::set<int64_t> left;
  const bool none = wait_until(
      [&] {
        left = workloads();
        return left.empty() && members().empty();
      },
      30s);
  observer_->count_check("processes: none after delete");
  if (!none) {
    observer_->add_violation("after the application was deleted, workload processes " + json(left).dump() +
                             " and members " + json(members()).dump() + " remain");
  }
}

TEST_F(FaultCampaign, BudgetsHoldUnderSeededFaults) {
  const uint64_t seed = std::stoull(env_or("TRANCHE_FAULT_SEED", std::to_string(std::random_device{}())));
  const int count = std::stoi(env_or("TRANCHE_FAULT_COUNT", std::to_string(kDefaultFaults)));
  const std::string replay = "TRANCHE_FAULT_SEED=" + std::to_string(seed) + " TRANCHE_FAULT_COUNT=" +
                             std::to_string(count) + " " + fs::read_symlink("/proc/self/exe").string() +
                             " --gtest_filter=FaultCampaign.*";
  SCOPED_TRACE("replay: " + replay);
  note("fault campaign: seed " + std::to_string(seed) + ", " + std::to_string(count) + " faults; replay: " + replay);

  const WebSpec first{.desired = 4, .version = "v1", .in_place = true, .max_unavailable = 1, .max_surge = 1};
  const auto schedule = campaign::make_schedule(seed, count, first, kHosts, kLinkedHosts);
  observer_ = std::make_unique<campaign::InvariantObserver>(server(), token_, kApp, kCluster);
  const Answer deployed = api("POST", "/api/v1/applications", manifest_of(first, markers()));
  ASSERT_EQ(deployed.status, 201) << deployed.body.dump();
  ASSERT_TRUE(wait_until(
      [&] {
        const auto all = members();
        return static_cast<int>(all.size()) == first.desired &&
               std::all_of(all.begin(), all.end(), [](const json& m) { return m["state"] == "Active"; });
      },
      60s))
      << json(members()).dump(1);

  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < schedule.size(); ++i) {
    const campaign::Step& step = schedule[i];
    note("step " + std::to_string(i + 1) + "/" + std::to_string(schedule.size()));
    if (step.operation) {
      perform(*step.operation);
      ASSERT_FALSE(HasFatalFailure()) << notes_;
    }
    std::this_thread::sleep_for(step.lead);  // the schedule's lead time: where in the operation the fault lands
    inject(step.fault);
    ASSERT_FALSE(HasFatalFailure()) << notes_;
  }
  const auto faults_done = std::chrono::steady_clock::now();
  // Autohealing back on, so that every loss is healed and the cluster can rest.
  const Answer healing = api("PUT", "/api/v1/applications/" + std::string(kApp) + "/operational-state",
                             {{"path", "web"}, {"autohealing", "on"}});
  ASSERT_EQ(healing.status, 200) << healing.body.dump();
  std::string why;
  ASSERT_TRUE(converge(why)) << "the cluster did not come to rest after the faults: " << why << "\n" << notes_;
  note("at rest " +
       std::to_string(
           std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - faults_done)
               .count()) +
       " ms after the last fault");
  check_at_rest();
  check_nothing_left_after_delete();
  observer_->stop();

  const campaign::Figures f = observer_->figures();
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  json by_kind = faults_by_kind_;
  std::ostringstream table;
  table << "== fault campaign: seed " << seed << ", " << count << " faults in " << seconds << " s\n";
  for (const auto& [kind, n] : faults_by_kind_) {
    table << "  " << kind << ": " << n << '\n';
  }
  table << "  kills survived: " << kills_survived_ << "\n  operations: " << operations_ << "\n  events read: " << f.events
        << "\n  member take-downs checked against maxUnavailable: " << f.take_downs
        << "\n  members created (checked against maxSurge): " << f.members_created
        << "\n  hosts Unreachable: " << f.hosts_unreachable << ", members Unreachable: " << f.members_unreachable
        << ", members Failed: " << f.members_failed << "\n  invariant checks: " << f.total_checks() << '\n';
  for (const auto& [name, n] : f.checks) {
    table << "    " << name << ": " << n << '\n';
  }
  table << "  violations: " << f.violations.size() << '\n';
  std::cout << table.str();
  const json line = {{"bench", "fault-campaign"},
                     {"seed", seed},
                     {"faults", count},
                     {"faults_by_kind", by_kind},
                     {"kills", kills_survived_},
                     {"operations", operations_},
                     {"events", f.events},
                     {"checks", f.total_checks()},
                     {"violations", f.violations.size()},
                     {"seconds", seconds}};
  std::cout << line.dump() << std::endl;

  for (const auto& v : f.violations) {
    ADD_FAILURE() << v;
  }
  EXPECT_EQ(f.violations.size(), 0u) << notes_;
  EXPECT_GT(f.checks.count("availability") ? f.checks.at("availability") : 0, 0u)
      << "the campaign never took a member out: it checked nothing";
  EXPECT_GT(f.checks.count("surge") ? f.checks.at("surge") : 0, 0u) << "the campaign never created a member";
}

}  // namespace
}  // namespace tranche::e2e
