// End-to-end: the operator verbs of interfaces.md beside the resource
// commands: `tranche scale` (a new revision changing only desired, refused
// outside min..max with the bounds in the message), `tranche restart` (a
// maintenance restart), `tranche ui` and `tranche completion`, against a
// `--dev` controller and its local agent.

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kManifest = R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "v1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health: {http: {port: http, path: /healthz}, intervalSeconds: 1}
    update: {minReadySeconds: 0}
    operational: {autoscaling: "off"}
)";

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

class OperatorVerbs : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH");
    ::setenv("PATH", path.c_str(), 1);  // the local agent inherits it, and its members
    controller_.start({"--dev", "--heartbeat-interval", "300ms"});
    write_file(dir_.path() / "shop.yaml", kManifest);
    const CliResult applied = controller_.cli({"apply", "-f", (dir_.path() / "shop.yaml").string()});
    ASSERT_EQ(applied.exit_code, 0) << applied.err;
    ASSERT_TRUE(wait_until([&] { return active_pids().size() == 2; }, 30s));
  }

  void TearDown() override {
    active_pids();  // every member's process, those started since the last look too
    controller_.cli({"delete", "shop"});
    wait_until([&] { return std::ranges::none_of(pids_seen_, process_alive); }, 15s);
    const std::string agent_pid = read_file(controller_.data_dir() / "agent" / "agent.pid");
    controller_.stop();
    if (!agent_pid.empty()) {
      ::kill(std::stoi(agent_pid), SIGTERM);
    }
  }

  // Active members' processes by member id.
  std::map<std::string, int64_t> active_pids() {
    std::map<std::string, int64_t> out;
    const json listed = json::parse(controller_.cli({"get", "members", "shop", "-o", "json"}).out, nullptr, false);
    for (const auto& m : listed.is_object() ? listed["items"] : json::array()) {
      if (m["pid"].is_number()) {
        pids_seen_.insert(m["pid"].get<int64_t>());
        if (m["state"] == "Active") {
          out[m["id"]] = m["pid"].get<int64_t>();
        }
      }
    }
    return out;
  }

  json revisions() { return json::parse(controller_.cli({"rollout", "history", "shop", "-o", "json"}).out)["items"]; }

  json manifest_of(int revision) {
    cli::ApiClient client(controller_.url(), controller_.admin_token());
    auto reply = client.send("GET", "/api/v1/applications/shop/revisions/" + std::to_string(revision));
    return reply ? json::parse(reply->body, nullptr, false)["manifest"] : json();
  }

  TempDir dir_;
  Controller controller_{dir_.path() / "data"};
  std::set<int64_t> pids_seen_;
};

TEST_F(OperatorVerbs, ScaleMakesARevisionChangingOnlyDesired) {
  const CliResult scaled = controller_.cli({"scale", "shop/web", "--members", "3"});
  ASSERT_EQ(scaled.exit_code, 0) << scaled.err;
  EXPECT_NE(scaled.out.find("revision 2"), std::string::npos) << scaled.out;
  ASSERT_TRUE(wait_until([&] { return active_pids().size() == 3; }, 30s));
  ASSERT_EQ(revisions().size(), 2u);
  json expected = manifest_of(1);
  expected["clusters"][0]["members"]["desired"] = 3;
  EXPECT_EQ(manifest_of(2), expected) << "nothing but desired changed";

  const CliResult same = controller_.cli({"scale", "shop/web", "--members", "3"});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(revisions().size(), 2u) << "the same count is no new revision: " << same.out;
}

TEST_F(OperatorVerbs, ScaleOutsideMinMaxIsRefusedWithTheBounds) {
  for (const char* count : {"5", "0"}) {
    const CliResult refused = controller_.cli({"scale", "shop/web", "--members", count});
    EXPECT_EQ(refused.exit_code, 1) << count;
    EXPECT_NE(refused.err.find("min 1, max 4"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("shop/web"), std::string::npos) << refused.err;
  }
  EXPECT_EQ(revisions().size(), 1u) << "no revision was made";
  EXPECT_EQ(active_pids().size(), 2u);

  const CliResult unknown = controller_.cli({"scale", "shop/api", "--members", "2"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("has no cluster shop/api (its clusters: web)"), std::string::npos) << unknown.err;
  EXPECT_EQ(controller_.cli({"scale", "shop", "--members", "2"}).exit_code, 2) << "an application is not a cluster";
  EXPECT_EQ(controller_.cli({"scale", "shop/web"}).exit_code, 2) << "--members is required";
}

TEST_F(OperatorVerbs, RestartRestartsEveryMemberBelowTheNode) {
  const auto before = active_pids();
  ASSERT_EQ(before.size(), 2u);
  const CliResult restarted = controller_.cli({"restart", "shop/web"});
  ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
  EXPECT_NE(restarted.out.find("restart of shop/web"), std::string::npos) << restarted.out;
  // Same members, new processes, and the node's value back to off by itself.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto now = active_pids();
        if (now.size() != before.size()) {
          return false;
        }
        for (const auto& [id, pid] : before) {
          if (!now.contains(id) || now.at(id) == pid) {
            return false;
          }
        }
        return true;
      },
      30s))
      << controller_.cli({"describe", "shop"}).out;
  ASSERT_TRUE(wait_until(
      [&] {
        const json d = json::parse(controller_.cli({"describe", "shop/web", "-o", "json"}).out, nullptr, false);
        return d.is_object() && d["tree"][0]["maintenance"]["effective"] == "off";
      },
      15s));
  const std::string log = controller_.cli({"events", "--app", "shop"}).out;
  EXPECT_NE(log.find("Maintenance"), std::string::npos) << log;

  const CliResult unknown = controller_.cli({"restart", "nosuch/web"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("nosuch"), std::string::npos) << unknown.err;
}

TEST_F(OperatorVerbs, UiPrintsTheConsoleUrlAndCompletionCompletes) {
  const CliResult ui = controller_.cli({"ui"});
  ASSERT_EQ(ui.exit_code, 0) << ui.err;
  EXPECT_EQ(ui.out, controller_.url() + "/ui/\n");
  cli::ApiClient anonymous(controller_.url(), "");
  auto page = anonymous.send("GET", "/ui/");
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/ui/console.js"), std::string::npos);

  const CliResult bash = controller_.cli({"completion", "bash"});
  ASSERT_EQ(bash.exit_code, 0) << bash.err;
  write_file(dir_.path() / "tranche.bash", bash.out);
  // What bash offers after `tranche rollout pr` and `tranche sc`.
  const CliResult offered = run(
      {"/bin/bash", "-c",
       "source " + (dir_.path() / "tranche.bash").string() +
           " && COMP_WORDS=(tranche rollout pr) COMP_CWORD=2 && _tranche_complete && echo \"${COMPREPLY[*]}\""
           " && COMP_WORDS=(tranche sc) COMP_CWORD=1 && _tranche_complete && echo \"${COMPREPLY[*]}\""
           " && COMP_WORDS=(tranche scale shop/web --me) COMP_CWORD=3 && _tranche_complete && echo \"${COMPREPLY[*]}\""});
  ASSERT_EQ(offered.exit_code, 0) << offered.err;
  EXPECT_EQ(offered.out, "promote\nscale\n--members\n");
  const CliResult zsh = controller_.cli({"completion", "zsh"});
  EXPECT_EQ(zsh.exit_code, 0);
  EXPECT_TRUE(zsh.out.starts_with("#compdef tranche\n")) << zsh.out.substr(0, 200);
  EXPECT_EQ(controller_.cli({"completion", "fish"}).exit_code, 2);
}

}  // namespace
}  // namespace tranche::e2e
