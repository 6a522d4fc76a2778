// End-to-end (issue 12): a command given while another runs on the same
// cluster has the outcome docs/operational-state.md ("Concurrent commands")
// says: `maintenance replace` given while a `maintenance restart` runs is
// the last accepted command and wins; the member whose hook runs finishes
// its restart and is then replaced like the others. A controller, two real
// agents, real tranche-hello members.

#include <signal.h>

#include <algorithm>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

// A hook that runs long enough for the replace to be given meanwhile.
constexpr const char* kApp = R"(application: shop
operational: {autoscaling: "off"}
clusters:
  - name: web
    members: {min: 1, max: 6, desired: 3}
    artifact: {version: "1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
      intervalSeconds: 1
    hooks:
      maintenance: ["sh", "-c", "sleep 3"]
    update: {maxUnavailable: 1, maxSurge: 1, minReadySeconds: 0}
)";

class Interactions : public ::testing::Test {
 protected:
  void SetUp() override {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"});
    const std::string path = std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH");
    for (int i = 0; i < 2; ++i) {
      agents_[i] = std::make_unique<Process>(
          std::vector<std::string>{tranche_binary(), "agent", "--server", controller_->url(), "--join-token-file",
                                   (controller_->data_dir() / "join.token").string(), "--state-dir",
                                   (dir_.path() / ("agent" + std::to_string(i))).string()},
          dir_.path(), "agent" + std::to_string(i), std::map<std::string, std::string>{{"PATH", path}});
    }
    ASSERT_TRUE(wait_until(
        [&] {
          const json hosts = get({"get", "hosts", "-o", "json"});
          return hosts.contains("items") && hosts["items"].size() == 2;
        },
        15s))
        << agents_[0]->err();
  }

  void TearDown() override {
    controller_->cli({"delete", "shop"});
    wait_until([&] { return members().empty(); }, 15s);
    for (const auto& pid : pids_seen_) {
      if (::kill(static_cast<pid_t>(pid), 0) == 0) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
  }

  json get(const std::vector<std::string>& args) {
    auto r = controller_->cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  std::vector<json> members() {
    std::vector<json> out;
    const json listed = get({"get", "members", "shop", "-o", "json"});
    for (const auto& m : listed["items"]) {
      out.push_back(m);
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::vector<json> events() {
    std::vector<json> out;
    auto r = controller_->cli({"events", "-o", "json"});
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      out.push_back(json::parse(line));
    }
    return out;
  }

  // `tranche set …` prints "operation op-… (#N)".
  std::string set(const std::vector<std::string>& args) {
    auto r = controller_->cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t at = r.out.find("operation ");
    EXPECT_NE(at, std::string::npos) << r.out;
    return at == std::string::npos ? "" : r.out.substr(at + 10, r.out.find(' ', at + 10) - at - 10);
  }

  json operation(const std::string& id) {
    auto reply = cli::ApiClient(controller_->url(), controller_->admin_token()).send("GET", "/api/v1/operations/" + id);
    EXPECT_TRUE(reply.has_value());
    return reply ? json::parse(reply->body, nullptr, false) : json::object();
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Process> agents_[2];
  std::set<int64_t> pids_seen_;
};

TEST_F(Interactions, ReplaceGivenWhileARestartRunsReplacesEveryMember) {
  write_file(dir_.path() / "shop.yaml", kApp);
  ASSERT_EQ(controller_->cli({"apply", "-f", (dir_.path() / "shop.yaml").string()}).exit_code, 0);
  std::set<std::string> originals;
  ASSERT_TRUE(wait_until(
      [&] {
        originals.clear();
        for (const auto& m : members()) {
          if (m["state"] == "Active") {
            originals.insert(m["id"]);
          }
        }
        return originals.size() == 3;
      },
      30s))
      << json(members()).dump(2) << controller_->process().err();

  const std::string restart = set({"set", "maintenance", "restart", "shop/web"});
  // The restart runs: a member is in its hook.
  std::string in_hook;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& m : members()) {
          if (m["state"] == "Maintenance") {
            in_hook = m["id"];
          }
        }
        return !in_hook.empty();
      },
      20s));
  const std::string replace = set({"set", "maintenance", "replace", "shop/web"});

  // Every member ends up replaced: three Active members, none an original,
  // and the node's maintenance back to off.
  std::vector<json> last;
  ASSERT_TRUE(wait_until(
      [&] {
        last = members();
        const bool all_new = std::all_of(last.begin(), last.end(), [&](const json& m) {
          return m["state"] == "Active" && !originals.contains(m["id"]);
        });
        if (last.size() != 3 || !all_new) {
          return false;
        }
        const json d = get({"describe", "shop/web", "-o", "json"});
        return d["tree"][0]["maintenance"]["effective"] == "off";
      },
      90s))
      << json(last).dump(2) << controller_->process().err();
  for (const auto& m : last) {
    EXPECT_EQ(m["maintenance"], "off") << m.dump();
  }

  // The operation records say who won.
  const json first = operation(restart);
  EXPECT_EQ(first["status"], "Superseded") << first.dump(2);
  EXPECT_NE(first["message"].get<std::string>().find(replace), std::string::npos) << first.dump(2);
  const json second = operation(replace);
  EXPECT_EQ(second["status"], "Succeeded") << second.dump(2);

  // The event log tells the story, in order: the restart, the member in its
  // hook, the replace superseding the restart, that member resuming (its
  // step was at the agent), every original replaced, one completion.
  const auto log = events();
  auto index_of = [&](const std::function<bool(const json&)>& match, size_t from = 0) {
    for (size_t i = from; i < log.size(); ++i) {
      if (match(log[i])) {
        return i;
      }
    }
    return log.size();
  };
  const size_t restarted = index_of([](const json& e) {
    return e["type"] == "OperationalStateChanged" && e["path"] == "shop/web" && e["to"] == "restart";
  });
  const size_t hooked = index_of(
      [&](const json& e) { return e["type"] == "MemberStateChanged" && e["member"] == in_hook && e["to"] == "Maintenance"; },
      restarted);
  const size_t superseded = index_of([&](const json& e) { return e["type"] == "CommandSuperseded"; }, hooked);
  const size_t resumed = index_of(
      [&](const json& e) {
        return e["type"] == "MemberStateChanged" && e["member"] == in_hook && e["from"] == "Maintenance" &&
               e["to"] == "Starting";
      },
      superseded);
  const size_t completed = index_of(
      [](const json& e) {
        return e["type"] == "OperationalStateChanged" && e["path"] == "shop/web" &&
               e["message"].get<std::string>().find("maintenance replace of shop/web completed") != std::string::npos;
      },
      resumed);
  ASSERT_LT(completed, log.size()) << "restart " << restarted << ", hook " << hooked << ", superseded " << superseded
                                   << ", resumed " << resumed << " of " << log.size();
  // "Completed" means every marked member was taken out (docs/operational-
  // state.md): the commit that stops it, not its agent's report that it
  // exited, which a loaded machine may deliver after the completion.
  for (const auto& id : originals) {
    const size_t taken_out = index_of(
        [&](const json& e) {
          return e["type"] == "MemberStateChanged" && e["member"] == id &&
                 (e["to"] == "Draining" || e["to"] == "Stopping" || e["to"] == "Terminated");
        },
        superseded);
    EXPECT_LT(taken_out, completed) << id << " is taken out before the completion";
  }
  const auto completions = std::count_if(log.begin(), log.end(), [](const json& e) {
    return e["type"] == "OperationalStateChanged" && e["message"].get<std::string>().find("completed") != std::string::npos;
  });
  EXPECT_EQ(completions, 1) << "the superseded restart never says it completed";
}

}  // namespace
}  // namespace tranche::e2e
