// End-to-end: rolling software updates (updates.md) on a real controller,
// real agents and real tranche-hello members: availability bounds of a
// rolling replace, the in-place update hook, the canary pause, health gating
// with rollback, and rollouts that survive the controller being SIGKILLed
// at random steps of the rollout (after a random number of committed events).

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = "shop";
constexpr const char* kCluster = "shop/web";
// Restarted controllers must not take a reconnecting agent for a lost host:
// the timeout leaves room for the agent's reconnect backoff.
const std::vector<std::string> kControllerFlags = {"--heartbeat-interval", "300ms", "--heartbeat-timeout", "3000ms"};

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

bool is_finished_phase(const std::string& phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "Aborted" || phase == "Superseded";
}

// The one cluster every test rolls; the fields updates.md is about.
struct WebCluster {
  std::string version = "v1";
  int desired = 3;
  json update = json::object();
  std::map<std::string, std::string> env;
  std::vector<std::string> update_hook;
};

json manifest_of(const WebCluster& c) {
  json artifact = {{"version", c.version}, {"command", {"tranche-hello", "--port", "${PORT_HTTP}"}}};
  if (!c.env.empty()) {
    artifact["env"] = c.env;
  }
  json cluster = {
      {"name", "web"},
      {"members", {{"min", 1}, {"max", 10}, {"desired", c.desired}}},
      {"artifact", artifact},
      {"ports", {"http"}},
      {"health", {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}}},
      {"update", c.update},
      // Members without a stats endpoint report the host's load, which on a
      // busy test machine would make the autoscaler add members.
      {"operational", {{"autoscaling", "off"}}},
  };
  if (!c.update_hook.empty()) {
    cluster["hooks"] = {{"update", c.update_hook}};
  }
  return json{{"application", kApp}, {"clusters", json::array({cluster})}};
}

// The hook of updates.md's in-place method, leaving one line per run in a
// file per member: "MEMBER TARGET_REVISION VERSION".
std::vector<std::string> marker_hook(const fs::path& dir, const std::string& before = "") {
  return {"sh", "-c",
          before + "echo \"$TRANCHE_MEMBER $TRANCHE_TARGET_REVISION $VERSION\" >> " + dir.string() +
              "/$(echo $TRANCHE_MEMBER | tr / _)"};
}

fs::path marker_file(const fs::path& dir, std::string member) {
  std::replace(member.begin(), member.end(), '/', '_');
  return dir / member;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

// The last `n` lines of `text`.
std::string tail(const std::string& text, size_t n) {
  const auto lines = lines_of(text);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    out += lines[i] + '\n';
  }
  return out;
}

// `tranche events --follow -o json` as a child process: poll() returns the
// events it printed since the previous call.
class EventFollower {
 public:
  EventFollower(const Controller& controller, uint64_t since, const fs::path& log_dir)
      : process_({tranche_binary(), "events", "--follow", "--since", std::to_string(since), "-o", "json"}, log_dir,
                 "events",
                 {{"TRANCHE_SERVER", controller.url()},
                  {"TRANCHE_TOKEN", controller.admin_token()},
                  {"TRANCHE_TOKEN_FILE", "/nonexistent"}}) {}

  std::vector<json> poll() {
    const std::string out = process_.out();
    std::vector<json> events;
    for (size_t end = out.find('\n', offset_); end != std::string::npos; end = out.find('\n', offset_)) {
      events.push_back(json::parse(out.substr(offset_, end - offset_), nullptr, false));
      offset_ = end + 1;
    }
    return events;
  }

  Process& process() { return process_; }

 private:
  Process process_;
  size_t offset_ = 0;
};

// Follows the event stream on a thread of its own and checks, at every
// MemberStateChanged of the cluster, updates.md's rolling bounds: at least
// `min_active` members Active and at most `max_existing` existing (Created
// up to Stopping; Terminated and Failed members are gone).
class AvailabilityWatch {
 public:
  AvailabilityWatch(const Controller& controller, uint64_t since, const fs::path& log_dir,
                    std::map<std::string, std::string> initial, int min_active, int max_existing)
      : events_(controller, since, log_dir),
        states_(std::move(initial)),
        min_active_(min_active),
        max_existing_(max_existing),
        thread_([this] { run(); }) {}

  ~AvailabilityWatch() { stop(); }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  // True once a RolloutPhaseChanged to a finished phase went by.
  bool saw_finish() const { return finished_; }

  std::vector<std::string> violations() const {
    std::lock_guard lock(mu_);
    return violations_;
  }
  std::vector<std::string> phases() const {
    std::lock_guard lock(mu_);
    return phases_;
  }
  std::pair<int, int> active_range() const {
    std::lock_guard lock(mu_);
    return {lowest_active_, highest_active_};
  }
  int highest_existing() const {
    std::lock_guard lock(mu_);
    return highest_existing_;
  }
  int member_events() const {
    std::lock_guard lock(mu_);
    return member_events_;
  }
  Process& follower() { return events_.process(); }

 private:
  void run() {
    while (!stopping_) {
      for (const json& e : events_.poll()) {
        observe(e);
      }
      std::this_thread::sleep_for(20ms);  // poll interval of the follower's output
    }
  }

  void observe(const json& e) {
    std::lock_guard lock(mu_);
    if (e.is_discarded() || !e.is_object()) {
      violations_.push_back("the event stream printed a line that is not JSON");
      return;
    }
    const std::string type = e.value("type", "");
    if (type == "RolloutPhaseChanged" && e["to"].is_string()) {
      phases_.push_back(e["to"]);
      finished_ = finished_ || is_finished_phase(e["to"]);
      return;
    }
    if (type != "MemberStateChanged" || !e["to"].is_string() ||
        !e.value("member", "").starts_with(std::string(kCluster) + "/")) {
      return;
    }
    ++member_events_;
    states_[e["member"]] = e["to"];
    int active = 0;
    int existing = 0;
    for (const auto& [id, state] : states_) {
      active += state == "Active" ? 1 : 0;
      existing += state != "Terminated" && state != "Failed" ? 1 : 0;
    }
    lowest_active_ = std::min(lowest_active_, active);
    highest_active_ = std::max(highest_active_, active);
    highest_existing_ = std::max(highest_existing_, existing);
    if (e["to"] == "Failed") {
      violations_.push_back("a member failed: " + e.dump());
    }
    if (active < min_active_) {
      violations_.push_back(std::to_string(active) + " Active < " + std::to_string(min_active_) + " at " + e.dump());
    }
    if (existing > max_existing_) {
      violations_.push_back(std::to_string(existing) + " existing > " + std::to_string(max_existing_) + " at " +
                            e.dump());
    }
  }

  EventFollower events_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> states_;
  const int min_active_;
  const int max_existing_;
  std::vector<std::string> violations_;
  std::vector<std::string> phases_;
  int lowest_active_ = 1 << 20;
  int highest_active_ = 0;
  int highest_existing_ = 0;
  int member_events_ = 0;
  std::atomic<bool> finished_ = false;
  std::atomic<bool> stopping_ = false;
  std::thread thread_;  // last: it starts once everything it reads exists
};

class Rollouts : public ::testing::Test {
 protected:
  static constexpr int kAgents = 2;

  void SetUp() override {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->start(kControllerFlags);
    for (int i = 0; i < kAgents; ++i) {
      start_agent(i);
    }
    ASSERT_TRUE(wait_until([&] { return connected_hosts() == kAgents; }, 15s)) << agents_[0]->err();
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cout << diagnostics() << std::flush;
    }
    // Members live in their own sessions: stop them through the controller,
    // then make sure none is left behind.
    api("DELETE", "/api/v1/applications/" + std::string(kApp));
    wait_until([&] { return members().empty(); }, 20s);
    for (const auto& pid : pids_seen_) {
      if (process_alive(pid)) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
  }

  // The agents find the controller through its URL file, re-read on every
  // reconnect: a restarted controller listens on a new port.
  void start_agent(int i) {
    agents_[i] = std::make_unique<Process>(
        std::vector<std::string>{tranche_binary(), "agent", "--server-file",
                                 (controller_->data_dir() / "controller.url").string(), "--join-token-file",
                                 (controller_->data_dir() / "join.token").string(), "--state-dir",
                                 (dir_.path() / ("agent" + std::to_string(i))).string()},
        dir_.path(), "agent" + std::to_string(i),
        std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}});
  }

  struct Answer {
    int status = 0;
    json body;
  };

  Answer api(const std::string& method, const std::string& target, const std::string& body = "") const {
    cli::ApiClient client(controller_->url(), controller_->admin_token());
    auto reply = client.send(method, target, body);
    if (!reply) {
      return Answer{0, json{{"transport error", reply.error().describe()}}};
    }
    return Answer{reply->status, json::parse(reply->body, nullptr, false)};
  }

  json get(const std::string& target) const {
    Answer a = api("GET", target);
    return a.status == 200 ? a.body : json::object();
  }

  json rollout() const { return get("/api/v1/applications/" + std::string(kApp) + "/rollout"); }
  std::string phase() const { return rollout().value("phase", ""); }

  Answer control(const std::string& action) const {
    return api("POST", "/api/v1/applications/" + std::string(kApp) + "/rollout/" + action);
  }

  int connected_hosts() const {
    int n = 0;
    for (const auto& h : get("/api/v1/hosts").value("items", json::array())) {
      n += h.value("connected", false) && h.value("state", "") == "Ready" ? 1 : 0;
    }
    return n;
  }

  // The live members (Terminated ones are history, listed only when asked).
  std::vector<json> members() {
    std::vector<json> out;
    for (const auto& m : get("/api/v1/members?app=" + std::string(kApp)).value("items", json::array())) {
      out.push_back(m);
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::vector<json> terminated() const {
    return get("/api/v1/members?app=" + std::string(kApp) + "&state=Terminated").value("items", json::array());
  }

  bool all_active(int desired) {
    const auto all = members();
    return static_cast<int>(all.size()) == desired &&
           std::all_of(all.begin(), all.end(), [](const json& m) { return m["state"] == "Active"; });
  }

  std::map<std::string, json> members_by_id() {
    std::map<std::string, json> out;
    for (const auto& m : members()) {
      out[m["id"]] = m;
    }
    return out;
  }

  std::vector<json> events_since(uint64_t since) const {
    std::vector<json> out;
    for (;;) {
      const json page = get("/api/v1/events?limit=10000&since=" + std::to_string(since));
      const json items = page.value("items", json::array());
      out.insert(out.end(), items.begin(), items.end());
      if (items.size() < 10000) {
        return out;
      }
      since = page["last"];
    }
  }

  uint64_t last_seq() const {
    const auto all = events_since(0);
    return all.empty() ? 0 : all.back()["seq"].get<uint64_t>();
  }

  // The web cluster's artifact in a stored revision's manifest.
  json artifact_of_revision(int64_t revision) const {
    const json r = get("/api/v1/applications/" + std::string(kApp) + "/revisions/" + std::to_string(revision));
    try {
      return r.at("manifest").at("clusters").at(0).at("artifact");
    } catch (const json::exception&) {
      return json{{"unreadable revision", revision}, {"answer", r}};
    }
  }

  // What the member itself says on GET /.
  json served_by(const json& member) const {
    if (!member.contains("ports") || !member["ports"].contains("http")) {
      return json{{"error", "no http port: " + member.dump()}};
    }
    cli::ApiClient client("http://127.0.0.1:" + std::to_string(member["ports"]["http"].get<int>()), "");
    auto reply = client.send("GET", "/");
    if (!reply || reply->status != 200) {
      return json{{"error", reply ? "status " + std::to_string(reply->status) : reply.error().describe()}};
    }
    return json::parse(reply->body, nullptr, false);
  }

  // The version the member serves, or what went wrong asking it.
  std::string version_served(const json& member) const {
    const json served = served_by(member);
    return served.is_object() && served.contains("version") ? served.value("version", "")
                                                            : "<" + served.dump() + " from " + member.dump() + ">";
  }

  // Applies through the CLI, as an operator would; the JSON answer.
  json apply(const WebCluster& c) {
    const fs::path file = dir_.path() / ("shop-" + std::to_string(++applies_) + ".json");
    write_file(file, manifest_of(c).dump(2));
    auto r = controller_->cli({"apply", "-f", file.string(), "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const json answer = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(answer.is_discarded()) << r.out;
    return r.exit_code == 0 && !answer.is_discarded() ? answer : json();
  }

  // Applies the first revision and waits for every member to be Active.
  testing::AssertionResult deploy(const WebCluster& c) {
    const json answer = apply(c);
    if (answer.is_null()) {
      return testing::AssertionFailure() << "apply failed";
    }
    if (!answer.value("rollout", json()).is_null()) {
      return testing::AssertionFailure() << "the first revision started a rollout: " << answer.dump();
    }
    if (!wait_until([&] { return all_active(c.desired); }, 40s)) {
      return testing::AssertionFailure() << c.desired << " members not Active: " << json(members()).dump(1);
    }
    return testing::AssertionSuccess();
  }

  testing::AssertionResult rollout_ends(const std::string& expected, std::chrono::milliseconds timeout) {
    std::string last;
    if (!wait_until(
            [&] {
              last = phase();
              return is_finished_phase(last);
            },
            timeout)) {
      return testing::AssertionFailure() << "the rollout is still " << last << " after " << timeout.count()
                                         << " ms: " << rollout().dump(1);
    }
    if (last != expected) {
      return testing::AssertionFailure() << "the rollout ended " << last << ", not " << expected << ": "
                                         << rollout().dump(1);
    }
    return testing::AssertionSuccess();
  }

  // What a reader needs when a test failed: the rollout, the members, the
  // recent events and the tail of every process's log.
  std::string diagnostics() {
    std::ostringstream out;
    out << "\n======== diagnostics ========\n" << notes_;
    if (controller_ && controller_->process().running()) {
      out << "---- rollout\n" << rollout().dump(1) << "\n---- members\n" << json(members()).dump(1) << '\n';
      const auto events = events_since(0);
      out << "---- last events (of " << events.size() << ")\n";
      for (size_t i = events.size() > 120 ? events.size() - 120 : 0; i < events.size(); ++i) {
        out << events[i].dump() << '\n';
      }
    } else {
      out << "(the controller is not running)\n";
    }
    std::vector<fs::path> logs;
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
      if (entry.path().extension() == ".err" || entry.path().extension() == ".out") {
        logs.push_back(entry.path());
      }
    }
    std::sort(logs.begin(), logs.end());
    for (const auto& log : logs) {
      const std::string text = read_file(log);
      if (!text.empty() && log.filename().string().rfind("events", 0) != 0) {
        out << "---- " << log.filename().string() << " (tail)\n" << tail(text, 60);
      }
    }
    out << "======== end of diagnostics ========\n";
    return out.str();
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Process> agents_[kAgents];
  std::set<int64_t> pids_seen_;
  std::string notes_;  // printed with the diagnostics
  int applies_ = 0;
};

TEST_F(Rollouts, RollingReplaceKeepsAvailabilityBounds) {
  WebCluster web{.version = "v1",
                 .desired = 6,
                 .update = {{"method", "replace"}, {"maxUnavailable", 1}, {"maxSurge", 1}, {"minReadySeconds", 1}}};
  ASSERT_TRUE(deploy(web));
  const auto before = members_by_id();
  std::map<std::string, std::string> initial;
  for (const auto& [id, m] : before) {
    initial[id] = m["state"];
  }

  AvailabilityWatch watch(*controller_, last_seq(), dir_.path(), initial, web.desired - 1, web.desired + 1);
  web.version = "v2";
  json answer = apply(web);
  ASSERT_TRUE(answer["rollout"].is_number_integer()) << "a new artifact version starts a rollout: " << answer.dump();
  ASSERT_TRUE(rollout_ends("Succeeded", 90s));
  ASSERT_TRUE(wait_until([&] { return watch.saw_finish(); }, 10s))
      << "the event stream never showed the end of the rollout: " << watch.follower().err();
  watch.stop();

  for (const auto& v : watch.violations()) {
    ADD_FAILURE() << v;
  }
  EXPECT_GE(watch.member_events(), 4 * web.desired) << "each member moves through several states";
  const auto [lowest, highest] = watch.active_range();
  std::cout << "Active members during the rollout: " << lowest << ".." << highest << ", at most "
            << watch.highest_existing() << " existing\n";
  const auto phases = watch.phases();
  ASSERT_FALSE(phases.empty());
  EXPECT_EQ(phases.front(), "Progressing");
  EXPECT_EQ(phases.back(), "Succeeded");

  const int64_t target = answer["revision"];
  ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 10s));
  const auto after = members_by_id();
  ASSERT_EQ(after.size(), 6u);
  for (const auto& [id, m] : after) {
    EXPECT_FALSE(before.contains(id)) << id << " is an old member: replace gives new ids";
    EXPECT_EQ(m["revision"], target) << m.dump();
    EXPECT_EQ(m["version"], "v2") << m.dump();
    const json served = served_by(m);
    EXPECT_EQ(served.value("version", ""), "v2") << id << ": " << served.dump();
    EXPECT_EQ(served.value("member", ""), id);
  }
  std::set<std::string> gone;
  for (const auto& m : terminated()) {
    gone.insert(m["id"]);
  }
  for (const auto& [id, m] : before) {
    EXPECT_TRUE(gone.contains(id)) << id << " was stopped and kept in history";
    EXPECT_TRUE(wait_until([&] { return !process_alive(m["pid"]); }, 5s)) << id << "'s process is gone";
  }
}

TEST_F(Rollouts, InPlaceUpdateRunsTheHook) {
  const fs::path markers = dir_.path() / "markers";
  fs::create_directories(markers);
  WebCluster web{.version = "v1",
                 .desired = 4,
                 .update = {{"method", "in-place"}, {"maxUnavailable", 1}, {"minReadySeconds", 0}},
                 .update_hook = marker_hook(markers)};
  ASSERT_TRUE(deploy(web));
  const auto before = members_by_id();
  const uint64_t since = last_seq();

  web.version = "v2";
  json answer = apply(web);
  ASSERT_TRUE(answer["rollout"].is_number_integer()) << answer.dump();
  const int64_t target = answer["revision"];
  ASSERT_TRUE(rollout_ends("Succeeded", 60s));
  ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 10s));

  const auto after = members_by_id();
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [id, m] : before) {
    ASSERT_TRUE(after.contains(id)) << id << ": in-place keeps member ids";
    const json& now = after.at(id);
    EXPECT_EQ(now["revision"], target) << now.dump();
    EXPECT_EQ(now["version"], "v2") << now.dump();
    const auto lines = lines_of(read_file(marker_file(markers, id)));
    ASSERT_EQ(lines.size(), 1u) << id << "'s hook ran once: " << read_file(marker_file(markers, id));
    EXPECT_EQ(lines[0], id + " " + std::to_string(target) + " v2");
    EXPECT_EQ(version_served(now), "v2") << id;
    // Restarted on the new template: a new process, seen by a heartbeat.
    EXPECT_TRUE(wait_until([&] { return members_by_id()[id]["pid"] != m["pid"]; }, 5s)) << id << " was restarted";
  }
  EXPECT_TRUE(terminated().empty()) << "no member was replaced";
  std::map<std::string, int> updating;
  for (const auto& e : events_since(since)) {
    if (e["type"] == "MemberStateChanged" && e["to"] == "Updating") {
      ++updating[e["member"]];
    }
  }
  for (const auto& [id, m] : before) {
    EXPECT_EQ(updating[id], 1) << id << " was Updating once";
  }
}

TEST_F(Rollouts, CanaryPausesUntilPromoted) {
  WebCluster web{
      .version = "v1",
      .desired = 5,
      .update = {{"method", "replace"}, {"maxUnavailable", 1}, {"maxSurge", 1}, {"canary", 2}, {"minReadySeconds", 0}}};
  ASSERT_TRUE(deploy(web));

  web.version = "v2";
  json answer = apply(web);
  ASSERT_TRUE(answer["rollout"].is_number_integer()) << answer.dump();
  const int64_t target = answer["revision"];
  auto on_target = [&] {
    const auto all = members();
    return std::count_if(all.begin(), all.end(), [&](const json& m) { return m["revision"] == target; });
  };
  ASSERT_TRUE(wait_until([&] { return phase() == "CanaryPaused"; }, 60s)) << rollout().dump(1);
  ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 20s)) << "the old members are back to full count";
  EXPECT_EQ(on_target(), 2);
  json paused = rollout();
  EXPECT_EQ(paused["clusters"][0]["status"], "CanaryPaused") << paused.dump(1);
  EXPECT_EQ(paused["clusters"][0]["updated"], 2) << paused.dump(1);
  EXPECT_EQ(paused["promoted"], false);
  // It holds, heartbeat after heartbeat (0.3 s each).
  EXPECT_FALSE(wait_until([&] { return phase() != "CanaryPaused" || on_target() != 2 || !all_active(5); }, 2s))
      << rollout().dump(1) << json(members()).dump(1);
  const Answer promoted = control("promote");
  ASSERT_EQ(promoted.status, 200) << promoted.body.dump();
  const Answer again = control("promote");
  EXPECT_EQ(again.status, 200) << "controls are idempotent: " << again.body.dump();
  ASSERT_TRUE(rollout_ends("Succeeded", 60s));
  EXPECT_EQ(rollout()["promoted"], true);
  ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 10s));
  EXPECT_EQ(on_target(), 5);
  for (const auto& m : members()) {
    EXPECT_EQ(version_served(m), "v2") << m.dump();
  }
}

TEST_F(Rollouts, FailingHealthRollsBack) {
  WebCluster web{.version = "v1",
                 .desired = 3,
                 .update = {{"method", "replace"},
                            {"maxUnavailable", 1},
                            {"maxSurge", 1},
                            {"minReadySeconds", 0},
                            {"progressDeadlineSeconds", 4},
                            {"maxFailures", 0},
                            {"onFailure", "rollback"}}};
  ASSERT_TRUE(deploy(web));
  web.version = "v2";
  json good = apply(web);
  ASSERT_TRUE(good["rollout"].is_number_integer()) << good.dump();
  ASSERT_TRUE(rollout_ends("Succeeded", 60s));
  const int64_t good_revision = good["revision"];

  const uint64_t since = last_seq();
  web.version = "v3";
  web.env = {{"HELLO_HEALTHY", "false"}};
  json bad = apply(web);
  ASSERT_TRUE(bad["rollout"].is_number_integer()) << bad.dump();
  const int64_t bad_revision = bad["revision"];
  ASSERT_TRUE(wait_until([&] { return phase() == "RollingBack" || is_finished_phase(phase()); }, 30s))
      << rollout().dump(1);
  ASSERT_TRUE(rollout_ends("Failed", 60s));

  json failed = rollout();
  EXPECT_EQ(failed["id"], bad["rollout"]);
  EXPECT_EQ(failed["toRevision"], bad_revision);
  const int64_t back = failed["targetRevision"];
  EXPECT_GT(back, bad_revision) << "the rollback is a new revision";
  const json restored = artifact_of_revision(back);
  EXPECT_EQ(restored.value("version", ""), "v2") << "with v2's templates: " << restored.dump();
  EXPECT_FALSE(restored.value("env", json::object()).contains("HELLO_HEALTHY")) << restored.dump();
  const std::string reason = failed.value("reason", "");
  EXPECT_NE(reason.find(kCluster), std::string::npos) << "the reason names the cluster: " << reason;
  EXPECT_NE(reason.find("maxFailures"), std::string::npos) << "and the failure: " << reason;

  std::vector<std::string> phases;
  bool counted = false;
  for (const auto& e : events_since(since)) {
    if (e["type"] == "RolloutPhaseChanged" && e["to"].is_string()) {
      phases.push_back(e["to"]);
    }
    counted = counted || e["type"] == "RolloutFailureCounted";
  }
  const std::vector<std::string> expected = {"Progressing", "RollingBack", "Failed"};
  EXPECT_EQ(phases, expected);
  EXPECT_TRUE(counted) << "a RolloutFailureCounted event";

  ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 30s));
  for (const auto& m : members()) {
    const int64_t revision = m["revision"];
    EXPECT_TRUE(revision == back || revision == good_revision) << m.dump();
    EXPECT_EQ(artifact_of_revision(revision).value("version", ""), "v2") << m.dump();
    EXPECT_EQ(m["version"], "v2") << m.dump();
    EXPECT_EQ(version_served(m), "v2") << m.dump();
  }

  // The CLI says so in its exit status too: 1 for a Failed rollout (README).
  auto status = controller_->cli({"rollout", "status", kApp, "-o", "json"});
  EXPECT_EQ(status.exit_code, 1) << status.err;
  const json shown = json::parse(status.out, nullptr, false);
  EXPECT_EQ(shown.is_object() ? shown.value("phase", "") : "", "Failed") << status.out;
}

// Fault injection (quality.md, "Crash anywhere"): SIGKILL the controller at
// random steps of rollouts (after a random number of committed events), at
// least kMinKills times in all, restarting it each time; `check_round`
// checks each rollout's outcome. The seed comes from TRANCHE_E2E_SEED when
// set, and is printed.
class RolloutsUnderKills : public Rollouts {
 protected:
  static constexpr int kMinKills = 10;
  static constexpr int kMaxKillsPerRound = 14;
  // Rounds until kMinKills: a faster engine leaves fewer steps to kill in
  // each (about 2.5 a round since the group commit).
  static constexpr int kMaxRounds = 8;

  struct Round {
    int number = 0;
    std::string version;
    int64_t target = 0;
    uint64_t since = 0;  // the last event before its apply
    int kills = 0;
  };

  void kill_during_rollouts(WebCluster web, const std::function<void(const Round&)>& check_round) {
    const char* given = std::getenv("TRANCHE_E2E_SEED");
    const unsigned seed = given ? static_cast<unsigned>(std::strtoul(given, nullptr, 10)) : std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with TRANCHE_E2E_SEED=" + std::to_string(seed) + ")");
    std::cout << "fault injection seed " << seed << '\n';
    notes_ += "fault injection seed " + std::to_string(seed) + "\n";
    std::mt19937 random(seed);
    // A random step of the rollout: the kill lands right after the k-th
    // event committed since the last start (each member change is one).
    std::uniform_int_distribution<int> events_before_kill(0, 8);

    int kills = 0;
    for (int number = 1; number <= kMaxRounds && kills < kMinKills; ++number) {
      Round round{number, "v" + std::to_string(number + 1), 0, last_seq(), 0};
      web.version = round.version;
      const auto started = std::chrono::steady_clock::now();
      json answer = apply(web);
      ASSERT_TRUE(answer["rollout"].is_number_integer()) << answer.dump();
      round.target = answer["revision"];
      while (round.kills < kMaxKillsPerRound) {
        const int k = events_before_kill(random);
        const uint64_t base = last_seq();
        wait_until([&] { return last_seq() >= base + static_cast<uint64_t>(k); }, 5s);
        json now = rollout();
        if (is_finished_phase(now.value("phase", ""))) {
          break;
        }
        controller_->kill_hard();
        ++kills;
        ++round.kills;
        const std::string note = "kill " + std::to_string(kills) + ": round " + std::to_string(number) + ", after " +
                                 std::to_string(k) + " events, " + now.value("phase", "?") + ", updated " +
                                 (now["clusters"].empty() ? std::string("?") : now["clusters"][0]["updated"].dump()) +
                                 "/" + std::to_string(web.desired) + "\n";
        notes_ += note;
        std::cout << note;
        controller_->start(kControllerFlags);
      }
      ASSERT_TRUE(rollout_ends("Succeeded", 120s)) << notes_;
      ASSERT_TRUE(wait_until([&] { return all_active(web.desired); }, 30s)) << notes_;
      std::cout
          << "round " << number << " (" << round.version << ", revision " << round.target << "): " << round.kills
          << " kills, "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()
          << " ms\n";
      check_round(round);
      if (HasFatalFailure()) {
        return;
      }
    }
    EXPECT_GE(kills, kMinKills) << "the rollouts ended before enough kills: " << notes_;
  }

  // No member failed, became Unreachable or saw its host lost since `since`.
  void expect_no_losses(uint64_t since) {
    for (const auto& e : events_since(since)) {
      const bool member_lost = e["type"] == "MemberStateChanged" && (e["to"] == "Failed" || e["to"] == "Unreachable");
      const bool host_lost = e["type"] == "HostStateChanged" && e["to"] == "Unreachable";
      EXPECT_FALSE(member_lost || host_lost) << e.dump();
    }
  }
};

TEST_F(RolloutsUnderKills, ControllerKilledDuringRolloutResumes) {
  const fs::path markers = dir_.path() / "markers";
  fs::create_directories(markers);
  // The hook takes a moment, so that kills also land while hooks run.
  WebCluster web{.version = "v1",
                 .desired = 6,
                 .update = {{"method", "in-place"}, {"maxUnavailable", 1}, {"minReadySeconds", 0}},
                 .update_hook = marker_hook(markers, "sleep 0.3; ")};
  ASSERT_TRUE(deploy(web));
  const auto first = members_by_id();

  kill_during_rollouts(web, [&](const Round& round) {
    const auto now = members_by_id();
    EXPECT_EQ(now.size(), first.size()) << "member count = desired";
    for (const auto& [id, m] : first) {
      ASSERT_TRUE(now.contains(id)) << id << " was lost";
      EXPECT_EQ(now.at(id)["revision"], round.target) << now.at(id).dump();
      EXPECT_EQ(now.at(id)["version"], round.version) << now.at(id).dump();
      EXPECT_EQ(version_served(now.at(id)), round.version) << id;
      const std::string text = read_file(marker_file(markers, id));
      const auto lines = lines_of(text);
      ASSERT_EQ(lines.size(), static_cast<size_t>(round.number))
          << id << " was updated exactly once per rollout; its hook ran:\n"
          << text;
      EXPECT_EQ(lines.back(), id + " " + std::to_string(round.target) + " " + round.version);
    }
    std::map<std::string, int> updating;
    for (const auto& e : events_since(round.since)) {
      if (e["type"] == "MemberStateChanged" && e["to"] == "Updating") {
        ++updating[e["member"]];
      }
    }
    for (const auto& [id, m] : first) {
      EXPECT_EQ(updating[id], 1) << id << " entered Updating once in round " << round.number;
    }
    EXPECT_TRUE(terminated().empty()) << "in-place replaced nobody";
    expect_no_losses(round.since);
  });
}

TEST_F(RolloutsUnderKills, ControllerKilledDuringReplaceRolloutResumes) {
  WebCluster web{.version = "v1",
                 .desired = 4,
                 .update = {{"method", "replace"}, {"maxUnavailable", 1}, {"maxSurge", 1}, {"minReadySeconds", 1}}};
  ASSERT_TRUE(deploy(web));
  auto previous = members_by_id();

  kill_during_rollouts(web, [&](const Round& round) {
    const auto now = members_by_id();
    EXPECT_EQ(now.size(), static_cast<size_t>(web.desired)) << "exactly desired members";
    for (const auto& [id, m] : now) {
      EXPECT_FALSE(previous.contains(id)) << id << " is an old member still there";
      EXPECT_EQ(m["revision"], round.target) << m.dump();
      EXPECT_EQ(version_served(m), round.version) << id;
    }
    std::set<std::string> gone;
    for (const auto& m : terminated()) {
      gone.insert(m["id"]);
    }
    for (const auto& [id, m] : previous) {
      EXPECT_TRUE(gone.contains(id)) << id << " was stopped";
      EXPECT_TRUE(wait_until([&] { return !process_alive(m["pid"]); }, 5s)) << id << "'s process is gone";
    }
    // Nothing done twice: one new member per old one.
    std::set<std::string> created;
    for (const auto& e : events_since(round.since)) {
      if (e["type"] == "MemberStateChanged" && e.contains("member") && !previous.contains(e["member"])) {
        created.insert(e["member"]);
      }
    }
    EXPECT_EQ(created.size(), static_cast<size_t>(web.desired))
        << "members created by the rollout: " << json(created).dump();
    expect_no_losses(round.since);
    previous = now;
  });
}

}  // namespace
}  // namespace tranche::e2e
