// The fault campaign's fixture (fault_campaign_fixture.h): setting up the
// namespaces and processes, carrying out operations and faults, and the
// checks made at rest.

#include "fault_campaign_fixture.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/client.h"

namespace tranche::e2e {

using campaign::Fault;
using campaign::FaultKind;
using campaign::Operation;
using campaign::OperationKind;
using campaign::WebSpec;
using nlohmann::json;

namespace {

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

std::string last_bytes(const std::string& text, size_t n) {
  return text.size() > n ? text.substr(text.size() - n) : text;
}

// The in-place update hook leaves one line per run in a file per member:
// "MEMBER TARGET_REVISION VERSION"; it takes a moment so that faults land
// while hooks run.
std::vector<std::string> marker_hook(const fs::path& dir) {
  return {"sh", "-c",
          "sleep 0.3; echo \"$TRANCHE_MEMBER $TRANCHE_TARGET_REVISION $VERSION\" >> " + dir.string() +
              "/$(echo $TRANCHE_MEMBER | tr / _)"};
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

}  // namespace

json campaign_manifest(const WebSpec& s, const fs::path& markers) {
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
  return json{{"application", FaultCampaign::kApp}, {"clusters", json::array({cluster})}};
}

void FaultCampaign::SetUp() {
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
  // The campaign restarts the controller and agents for minutes: it runs
  // copies of the binaries, which a rebuild of the tree cannot replace
  // under it.
  fs::create_directories(bin_dir());
  fs::copy_file(tranche_binary(), bin_dir() / "tranche");
  fs::copy_file(fs::path(TRANCHE_BIN_DIR) / "tranche-hello", bin_dir() / "tranche-hello");
  ASSERT_TRUE(start_controller()) << controller_->err();
  for (int i = 0; i < kHosts; ++i) {
    start_agent(i);
  }
  ASSERT_TRUE(wait_until([&] { return ready_hosts() == kHosts; }, 30s)) << hosts().dump(1);
  for (int i = 0; i < kHosts; ++i) {
    // The agent journals its host id right after the controller admitted it.
    ASSERT_TRUE(wait_until(
        [&] {
          const json journal = json::parse(read_file(agent_dir(i) / "journal.json"), nullptr, false);
          host_ids_[i] = journal.is_object() ? journal.value("hostId", "") : "";
          return !host_ids_[i].empty();
        },
        10s))
        << "agent " << i << " has no host id";
  }
}

void FaultCampaign::TearDown() {
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

bool FaultCampaign::start_controller() {
  fs::remove(data_dir() / "controller.url");
  controller_ = std::make_unique<Process>(
      ns_c().exec({(bin_dir() / "tranche").string(), "controller", "--listen",
                   "0.0.0.0:" + (port_.empty() ? "0" : port_), "--data-dir", data_dir().string(),
                   "--heartbeat-interval", "300ms", "--heartbeat-timeout", "3000ms"}),
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

void FaultCampaign::start_agent(int i) {
  const NetNamespace& ns = *namespaces_[i == 2 ? 0 : 1 + i];
  agents_[i] = std::make_unique<Process>(
      ns.exec({(bin_dir() / "tranche").string(), "agent", "--server", "http://" + agent_servers_[i] + ":" + port_,
               "--join-token-file", (data_dir() / "join.token").string(), "--state-dir", agent_dir(i).string()}),
      dir_.path(), "agent" + std::to_string(i),
      std::map<std::string, std::string>{{"PATH", bin_dir().string() + ":" + std::getenv("PATH")}});
}

FaultCampaign::Answer FaultCampaign::api(const std::string& method, const std::string& target, const json& body) const {
  auto reply = cli::ApiClient(server(), token_).send(method, target, body.is_null() ? "" : body.dump());
  if (!reply) {
    return Answer{0, json{{"transport error", reply.error().describe()}}};
  }
  return Answer{reply->status, json::parse(reply->body, nullptr, false)};
}

json FaultCampaign::get(const std::string& target) const {
  const Answer a = api("GET", target);
  return a.status == 200 ? a.body : json::object();
}

int FaultCampaign::ready_hosts() const {
  int n = 0;
  for (const auto& h : hosts().value("items", json::array())) {
    n += h.value("connected", false) && h.value("state", "") == "Ready" ? 1 : 0;
  }
  return n;
}

bool FaultCampaign::host_ready(int i) const {
  for (const auto& h : hosts().value("items", json::array())) {
    if (h.value("id", "") == host_ids_[i]) {
      return h.value("connected", false) && h.value("state", "") == "Ready";
    }
  }
  return false;
}

std::vector<json> FaultCampaign::members(const std::string& state) {
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

std::set<int64_t> FaultCampaign::workloads() const {
  std::set<int64_t> out;
  for (const auto& ns : namespaces_) {
    out.merge(workloads_in(*ns));
  }
  return out;
}

std::vector<json> FaultCampaign::whole_log() const {
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

void FaultCampaign::note(const std::string& line) {
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0_);
  std::ostringstream s;
  s << "[" << elapsed.count() / 1000 << "." << (elapsed.count() % 1000) / 100 << "s] " << line << '\n';
  notes_ += s.str();
  std::cout << s.str() << std::flush;
}

void FaultCampaign::perform(const Operation& op) {
  ++operations_;
  note("operation: " + describe(op));
  Answer a;
  switch (op.kind) {
    case OperationKind::kScale:
    case OperationKind::kUpdateInPlace:
    case OperationKind::kUpdateReplace:
      a = api("POST", "/api/v1/applications", campaign_manifest(op.spec, markers()));
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
      ASSERT_TRUE(wait_until([&] { return agents_[fault.host]->running() && host_ready(fault.host); }, 30s))
          << "agent " << fault.host << " did not come back (running: " << agents_[fault.host]->running()
          << "); its host: " << hosts().dump()
          << "\nits output (last 4 KiB): " << last_bytes(agents_[fault.host]->out() + agents_[fault.host]->err(), 4096);
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
    observer_->add_violation("at rest, " + last + describe_strays(expected));
  }
}

// What a reader needs about workload processes no live member owns: the
// member the agent started each for (its TRANCHE_MEMBER), what the log said
// of that member, and what the agents logged about it.
std::string FaultCampaign::describe_strays(const std::set<int64_t>& owned) const {
  std::string out;
  const auto digests = observer_->digests();
  for (int64_t pid : workloads()) {
    if (owned.contains(pid)) {
      continue;
    }
    std::string member = "?";
    const std::string environ = read_file("/proc/" + std::to_string(pid) + "/environ");
    for (size_t at = 0; at < environ.size(); at = environ.find('\0', at) + 1) {
      if (environ.compare(at, 15, "TRANCHE_MEMBER=") == 0) {
        member = environ.substr(at + 15, environ.find('\0', at) - at - 15);
      }
      if (environ.find('\0', at) == std::string::npos) {
        break;
      }
    }
    out += "\n---- stray pid " + std::to_string(pid) + " of member " + member + "; the log of it:";
    for (const auto& [seq, digest] : digests) {
      if (digest.find("|" + member + "|") != std::string::npos) {
        out += "\n  " + std::to_string(seq) + " " + digest;
      }
    }
    out += "\n  the agents' logs of it:";
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
      if (!entry.path().filename().string().starts_with("agent")) {
        continue;
      }
      std::istringstream lines(read_file(entry.path()));
      for (std::string line; std::getline(lines, line);) {
        if (line.find(member + " ") != std::string::npos || line.find(std::to_string(pid)) != std::string::npos) {
          out += "\n  " + entry.path().filename().string() + ": " + line;
        }
      }
    }
  }
  return out;
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

}  // namespace tranche::e2e
