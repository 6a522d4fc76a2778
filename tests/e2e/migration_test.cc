// End-to-end: migration mode (updates.md) on a --dev controller, its local
// agent and tranche-hello members. One story, to keep the run short: the
// lock refuses applies, settings and rollout controls with 409 naming it;
// perform moves one member back to revision 1 and forward again, then the
// whole application; cancel is refused while a perform runs; the lock
// survives a SIGKILL of the controller (restarted in place, same port, same
// data dir); a killed member is not healed while locked and says so; after
// complete the change that was refused proceeds and the member is healed.

#include <signal.h>

#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

std::string manifest(const std::string& version) {
  return R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: ")" +
         version + R"(", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health: {http: {port: http, path: /healthz}, intervalSeconds: 1}
    update: {minReadySeconds: 0}
    operational: {autoscaling: "off"}
)";
}

class Migration : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH");
    ::setenv("PATH", path.c_str(), 1);  // the local agent inherits it, and its members
    controller_.listen_on("127.0.0.1:" + std::to_string(free_port()));
    controller_.start({"--dev", "--heartbeat-interval", "300ms"});
  }

  void TearDown() override {
    controller_.cli({"migration", "cancel", "shop"});
    controller_.cli({"delete", "shop"});
    wait_until([&] { return members().empty(); }, 15s);
    const std::string agent_pid = read_file(controller_.data_dir() / "agent" / "agent.pid");
    controller_.stop();
    if (!agent_pid.empty()) {
      ::kill(std::stoi(agent_pid), SIGTERM);
    }
  }

  CliResult apply(const std::string& version) {
    write_file(dir_.path() / "shop.yaml", manifest(version));
    return controller_.cli({"apply", "-f", (dir_.path() / "shop.yaml").string()});
  }

  // Members that are not Terminated, by id.
  std::map<std::string, json> members() {
    std::map<std::string, json> out;
    const json listed = json::parse(controller_.cli({"get", "members", "shop", "-o", "json"}).out, nullptr, false);
    for (const auto& m : listed.is_object() ? listed["items"] : json::array()) {
      if (m["state"] != "Terminated") {
        out[m["id"]] = m;
      }
    }
    return out;
  }

  // Exactly these versions, each member Active: {"v1": 1, "v2": 1}.
  bool active_versions(const std::map<std::string, int>& wanted) {
    std::map<std::string, int> seen;
    for (const auto& [id, m] : members()) {
      if (m["state"] != "Active") {
        return false;
      }
      ++seen[m["version"].get<std::string>()];
    }
    return seen == wanted;
  }

  json lock() { return json::parse(controller_.cli({"describe", "shop", "-o", "json"}).out)["migration"]; }

  bool perform_finished() {
    const json l = lock();
    return l.is_object() && l["perform"].is_object() && l["perform"]["finished"] == true;
  }

  std::vector<json> events(const std::string& type) {
    std::vector<json> out;
    std::istringstream lines(controller_.cli({"events", "--since", "0", "-o", "json"}).out);
    for (std::string line; std::getline(lines, line);) {
      json e = json::parse(line, nullptr, false);
      if (e.is_object() && e["type"] == type) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }

  // Refused with 409 (exit 1) naming the lock and who took it.
  void expect_refused(const CliResult& r, const std::string& what) {
    EXPECT_EQ(r.exit_code, 1) << what << ": " << r.out;
    EXPECT_NE(r.err.find("the migration lock of shop, taken by bootstrap-admin at 20"), std::string::npos)
        << what << ": " << r.err;
  }

  TempDir dir_;
  Controller controller_{dir_.path() / "data"};
};

TEST_F(Migration, LockPerformCancelRestartAndComplete) {
  ASSERT_EQ(apply("v1").exit_code, 0);
  ASSERT_EQ(apply("v2").exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return active_versions({{"v2", 2}}); }, 40s));

  const CliResult begun = controller_.cli({"migration", "begin", "shop"});
  ASSERT_EQ(begun.exit_code, 0) << begun.err;
  EXPECT_NE(begun.out.find("shop is locked for migration by bootstrap-admin"), std::string::npos) << begun.out;
  expect_refused(apply("v3"), "apply");
  expect_refused(controller_.cli({"set", "autohealing", "off", "shop/web"}), "set");
  expect_refused(controller_.cli({"rollout", "pause", "shop"}), "rollout pause");
  expect_refused(controller_.cli({"rollout", "undo", "shop"}), "rollout undo");
  expect_refused(controller_.cli({"restart", "shop/web"}), "restart");
  const CliResult listed = controller_.cli({"get", "apps"});
  EXPECT_NE(listed.out.find("locked by bootstrap-admin"), std::string::npos) << listed.out;

  // One member back to revision 1 (a successor on it, the cluster updates by
  // replacement), then forward to revision 2. Without a terminal, --yes.
  const std::string member = members().begin()->first;
  const CliResult unconfirmed = controller_.cli({"migration", "perform", "shop", "--member", member, "--to-revision", "1"});
  EXPECT_EQ(unconfirmed.exit_code, 1);
  EXPECT_NE(unconfirmed.err.find("pass --yes"), std::string::npos) << unconfirmed.err;
  ASSERT_EQ(controller_.cli({"migration", "perform", "shop", "--member", member, "--to-revision", "1", "--yes"})
                .exit_code,
            0);
  ASSERT_TRUE(wait_until([&] { return perform_finished() && active_versions({{"v1", 1}, {"v2", 1}}); }, 30s))
      << lock().dump();
  EXPECT_EQ(lock()["perform"]["succeeded"], true);
  EXPECT_FALSE(members().contains(member)) << "replaced";
  std::string moved;
  for (const auto& [id, m] : members()) {
    moved = m["version"] == "v1" ? id : moved;
  }
  ASSERT_EQ(controller_.cli({"migration", "perform", "shop", "--member", moved, "--to-revision", "2", "--yes"})
                .exit_code,
            0);
  ASSERT_TRUE(wait_until([&] { return perform_finished() && active_versions({{"v2", 2}}); }, 30s)) << lock().dump();

  // The whole application back to revision 1: a rollout, in rollout status;
  // cancel and complete wait for it.
  const CliResult back = controller_.cli({"migration", "perform", "shop", "--to-revision", "1", "--yes", "-o", "json"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  const json performed = json::parse(back.out);
  ASSERT_TRUE(performed["rollout"].is_number_integer()) << back.out;
  const CliResult cancel = controller_.cli({"migration", "cancel", "shop"});
  EXPECT_EQ(cancel.exit_code, 1);
  EXPECT_NE(cancel.err.find("cancel is refused while a perform is in progress"), std::string::npos) << cancel.err;
  const json status = json::parse(controller_.cli({"rollout", "status", "shop", "-o", "json"}).out);
  EXPECT_EQ(status["id"], performed["rollout"]);
  ASSERT_TRUE(wait_until([&] { return perform_finished() && active_versions({{"v1", 2}}); }, 40s)) << lock().dump();
  ASSERT_EQ(controller_.cli({"migration", "perform", "shop", "--to-revision", "2", "--yes"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return perform_finished() && active_versions({{"v2", 2}}); }, 40s)) << lock().dump();
  EXPECT_EQ(events("MigrationPerformFinished").size(), 4u);

  // SIGKILL: the lock is read back from the store.
  controller_.kill_hard();
  controller_.start({"--dev", "--heartbeat-interval", "300ms"});
  EXPECT_EQ(lock()["lockedBy"], "bootstrap-admin");
  expect_refused(apply("v3"), "apply after the restart");

  // A killed member is not healed while locked, and the log says why.
  ASSERT_TRUE(wait_until([&] { return active_versions({{"v2", 2}}); }, 20s));
  const auto [victim, record] = *members().begin();
  ::kill(static_cast<pid_t>(record["pid"].get<int64_t>()), SIGKILL);
  ASSERT_TRUE(wait_until([&] { return !events("HealingDelayed").empty(); }, 20s));
  EXPECT_NE(events("HealingDelayed")[0]["message"].get<std::string>().find(
                "autohealing is suspended by the migration lock of shop"),
            std::string::npos);
  EXPECT_EQ(members().at(victim)["state"], "Failed");

  // complete: the refused change goes through, and the member is healed.
  const CliResult completed = controller_.cli({"migration", "complete", "shop"});
  ASSERT_EQ(completed.exit_code, 0) << completed.err;
  EXPECT_EQ(lock(), nullptr);
  ASSERT_EQ(apply("v3").exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return active_versions({{"v3", 2}}); }, 40s));
  EXPECT_EQ(events("MigrationLocked").size(), 1u);
  EXPECT_EQ(events("MigrationUnlocked").size(), 1u);
}

}  // namespace
}  // namespace tranche::e2e
