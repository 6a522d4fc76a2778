// The real `tranche agent` upgrading itself against a fake controller that
// serves the artifact: a digest mismatch stages nothing; the next build
// (tranche-next) runs in the same pid; a binary that exits at once, or one
// that never connects, falls back by itself; an agent SIGKILLed mid-switch
// comes back on one of the two builds. The member's pid never changes.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "agent/binary_record.h"
#include "agent/journal.h"
#include "agent_process.h"
#include "agent_test_util.h"
#include "common/secrets.h"
#include "fake_controller.h"

namespace tranche::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::AgentProcess;
using test::FakeController;
using test::is_alive;
using test::read_file;
using test::TempDir;
using test::wait_until;
using namespace std::chrono_literals;

pid_t read_pid(const fs::path& file) {
  const std::string text = read_file(file);
  return text.empty() ? -1 : static_cast<pid_t>(std::stol(text));
}

fs::path exe_of(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
}

// The pid of the watchdog watching the agent of `state_dir`; -1 when none runs.
pid_t watchdog_of(const fs::path& state_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const std::string cmdline = read_file(entry.path() / "cmdline");
    if (cmdline.find(std::string("agent-watchdog\0--state-dir\0", 27) + state_dir.string() + '\0') !=
            std::string::npos &&
        is_alive(std::stoi(name))) {
      return std::stoi(name);
    }
  }
  return -1;
}

class AgentSelfUpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_.start();
    ASSERT_TRUE(wait_until([&] { return controller_.connected(); })) << log();
    old_version_ = controller_.of_type("hello").front().value("agentVersion", "");
    const json started = run("start:web/0", "start", "web/0",
                             json{{"app", "shop"},
                                  {"cluster", "web"},
                                  {"revision", 1},
                                  {"version", "1.0"},
                                  {"command", {HELLO_BINARY, "--port", "${PORT_HTTP}"}},
                                  {"ports", {"http"}}});
    ASSERT_TRUE(started.value("ok", false)) << started.dump();
    member_pid_ = started["data"].value("pid", pid_t{-1});
  }

  void TearDown() override {
    agent_.kill();
    // A fallen-back agent is the watchdog's exec, not our child.
    if (const pid_t pid = read_pid(dir_ / "agent" / "agent.pid"); pid > 0 && exe_of(pid).filename() == "tranche") {
      ::kill(pid, SIGKILL);
    }
    test::kill_and_reap(member_pid_);
  }

  std::string log() const { return "agent log:\n" + read_file(dir_ / "agent.log"); }

  json run(const std::string& id, const std::string& type, const std::string& member, const json& spec) {
    controller_.command(id, type, member, spec);
    return await_result(id);
  }

  json await_result(const std::string& id, std::chrono::milliseconds timeout = 30s) {
    const bool arrived = wait_until([&] { return !controller_.results(id).empty(); }, timeout);
    EXPECT_TRUE(arrived) << "no result for " << id << "\n" << log();
    return arrived ? controller_.results(id).front() : json::object();
  }

  // Serves `bytes` and sends upgradeAgent to `version` (`digest` defaults to theirs).
  void upgrade(const std::string& id, const std::string& version, const std::string& bytes,
               int fallback_seconds = 60, std::string digest = "") {
    const std::string sha = sha256_hex(bytes);
    controller_.serve_artifact("/artifacts/sha256/" + sha, bytes);
    controller_.command(id, "upgradeAgent", "",
                        json{{"version", version},
                             {"sha256", digest.empty() ? sha : digest},
                             {"size", bytes.size()},
                             {"path", "/artifacts/sha256/" + sha},
                             {"fallbackSeconds", fallback_seconds}});
  }

  // The hellos since the first, newest last.
  std::vector<json> later_hellos() const {
    auto hellos = controller_.of_type("hello");
    hellos.erase(hellos.begin());
    return hellos;
  }

  // The running agent, by its pid file; -1 when none runs.
  pid_t running_agent() const {
    const pid_t pid = read_pid(dir_ / "agent" / "agent.pid");
    return pid > 0 && is_alive(pid) ? pid : -1;
  }

  // The member kept its process: same pid, alive, and so reported.
  void expect_member_untouched() {
    EXPECT_TRUE(is_alive(member_pid_)) << log();
    EXPECT_TRUE(wait_until([&] {
      const auto report = controller_.report("web/0");
      return report && report->value("pid", pid_t{-1}) == member_pid_;
    })) << log();
  }

  TempDir dir_;
  FakeController controller_;
  AgentProcess agent_{dir_ / "agent", controller_.url(), dir_ / "agent.log"};
  std::string old_version_;
  pid_t member_pid_ = -1;
};

// A sanitized build's tranche-next is half a gigabyte (ASan, Debug): held in
// memory and hashed under ASan, its download outlasts these tests' waits.
// The switch to it is tested in the unsanitized build, here and in
// tests/e2e (agent_upgrade_switch_test.cc, agent_upgrade_test.cc).
#ifdef TRANCHE_SANITIZED
#define SKIP_WITH_A_SANITIZED_NEXT_BUILD() GTEST_SKIP() << "tranche-next of a sanitized build is too large to switch to here"
#else
#define SKIP_WITH_A_SANITIZED_NEXT_BUILD() static_cast<void>(0)
#endif

TEST_F(AgentSelfUpgradeTest, ADigestMismatchStagesNothingAndFailsNamingTheDigest) {
  const std::string bytes = "#!/bin/sh\nexit 0\n";
  const std::string wrong(64, 'a');
  upgrade("upgradeAgent:h:bad", "9.9.9", bytes, 60, wrong);
  const json result = await_result("upgradeAgent:h:bad");
  EXPECT_FALSE(result.value("ok", true));
  const std::string message = result.value("message", "");
  EXPECT_NE(message.find(sha256_hex(bytes)), std::string::npos) << message;
  EXPECT_NE(message.find(wrong), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "agent" / "versions" / "9.9.9")) << message;
  EXPECT_EQ(running_agent(), agent_.pid());
  EXPECT_EQ(exe_of(agent_.pid()), fs::path(TRANCHE_BINARY));
  // An artifact the controller does not have: the status, and nothing staged.
  controller_.command("upgradeAgent:h:missing", "upgradeAgent", "",
                      json{{"version", "9.9.8"}, {"sha256", wrong}, {"size", 10}, {"path", "/artifacts/sha256/nope"}});
  const json missing = await_result("upgradeAgent:h:missing");
  EXPECT_FALSE(missing.value("ok", true));
  EXPECT_NE(missing.value("message", "").find("404"), std::string::npos) << missing.dump();
  EXPECT_FALSE(fs::exists(dir_ / "agent" / "versions" / "9.9.8"));
  expect_member_untouched();
}

TEST_F(AgentSelfUpgradeTest, TheVersionItRunsIsAnsweredAtOnceWithoutASwitch) {
  // Exactly, and without build metadata (0.1.0 is any build of 0.1.0).
  const std::string bare = old_version_.substr(0, old_version_.find('+'));
  for (const std::string& version : {old_version_, bare}) {
    upgrade("upgradeAgent:h:same:" + version, version, "#!/bin/sh\nexit 1\n");
    const json result = await_result("upgradeAgent:h:same:" + version);
    EXPECT_TRUE(result.value("ok", false)) << result.dump();
    EXPECT_EQ(result.value("message", ""), "already on tranche " + version);
  }
  EXPECT_FALSE(fs::exists(dir_ / "agent" / "versions"));
  EXPECT_FALSE(fs::exists(dir_ / "agent" / kBinaryRecordFile));
  EXPECT_EQ(running_agent(), agent_.pid());
}

TEST_F(AgentSelfUpgradeTest, TheNextBuildRunsInTheSamePidAndAnswersOnceConnected) {
  SKIP_WITH_A_SANITIZED_NEXT_BUILD();
  const std::string next = read_file(NEXT_BINARY);
  ASSERT_FALSE(next.empty());
  const pid_t pid = agent_.pid();
  upgrade("upgradeAgent:h:next", "0.2.0", next);
  const json result = await_result("upgradeAgent:h:next");
  EXPECT_TRUE(result.value("ok", false)) << result.dump() << log();
  EXPECT_NE(result.value("message", "").find("tranche 0.2.0 connected; was " + old_version_), std::string::npos)
      << result.dump();
  EXPECT_EQ(exe_of(pid), dir_ / "agent" / "versions" / "0.2.0" / "tranche");
  EXPECT_EQ(running_agent(), pid);
  const auto hellos = later_hellos();
  ASSERT_FALSE(hellos.empty());
  EXPECT_NE(hellos.back().value("agentVersion", ""), old_version_);
  auto record = load_binary_record(dir_ / "agent");
  ASSERT_TRUE(record.has_value() && record->has_value());
  EXPECT_EQ((*record)->current.version, "0.2.0");
  ASSERT_TRUE((*record)->previous.has_value());
  EXPECT_EQ((*record)->previous->path, fs::path(TRANCHE_BINARY));
  EXPECT_FALSE((*record)->trial.has_value());
  // The result was acknowledged: the report leaves the record.
  EXPECT_TRUE(wait_until([&] {
    auto r = load_binary_record(dir_ / "agent");
    return r && *r && !(*r)->report;
  }));
  expect_member_untouched();
  // Started again through its original path, the agent runs the current build.
  agent_.kill();
  agent_.start();
  EXPECT_TRUE(wait_until([&] { return exe_of(agent_.pid()) == dir_ / "agent" / "versions" / "0.2.0" / "tranche"; }))
      << log();
  EXPECT_TRUE(wait_until([&] { return controller_.connected() && later_hellos().size() >= 2; })) << log();
  expect_member_untouched();
}

TEST_F(AgentSelfUpgradeTest, ABinaryThatExitsAtOnceFallsBackByItself) {
  upgrade("upgradeAgent:h:exit", "9.9.9", "#!/bin/sh\nexit 1\n");
  const json result = await_result("upgradeAgent:h:exit");
  EXPECT_FALSE(result.value("ok", true)) << result.dump();
  const std::string message = result.value("message", "");
  // This test is the agent's parent and has not reaped it: its status is known.
  EXPECT_NE(message.find("tranche 9.9.9 exited with status 1"), std::string::npos) << message << log();
  EXPECT_NE(message.find("back on " + old_version_), std::string::npos) << message;
  const pid_t back = running_agent();
  ASSERT_GT(back, 0) << log();
  EXPECT_NE(back, agent_.pid()) << "the fallback is the watchdog's exec";
  EXPECT_EQ(exe_of(back), fs::path(TRANCHE_BINARY));
  const auto hellos = later_hellos();
  ASSERT_FALSE(hellos.empty());
  ASSERT_TRUE(hellos.back().contains("upgrade")) << hellos.back().dump();
  EXPECT_EQ(hellos.back()["upgrade"].value("commandId", ""), "upgradeAgent:h:exit");
  EXPECT_FALSE(hellos.back()["upgrade"].value("ok", true));
  expect_member_untouched();
}

TEST_F(AgentSelfUpgradeTest, ABinaryThatNeverConnectsIsKilledAtTheDeadline) {
  SKIP_WITH_A_SANITIZED_NEXT_BUILD();
  controller_.hold_welcomes(true);  // the session that takes the command stays
  upgrade("upgradeAgent:h:silent", "0.2.0", read_file(NEXT_BINARY), 5);
  const pid_t pid = agent_.pid();
  ASSERT_TRUE(wait_until([&] { return exe_of(pid).filename() == "tranche" && exe_of(pid) != TRANCHE_BINARY; }, 20s))
      << log();
  // Killed at the deadline, then back on the old build, which is welcomed.
  ASSERT_TRUE(wait_until([&] { return running_agent() > 0 && running_agent() != pid; }, 20s)) << log();
  controller_.hold_welcomes(false);
  const json result = await_result("upgradeAgent:h:silent");
  EXPECT_FALSE(result.value("ok", true));
  EXPECT_NE(result.value("message", "").find("did not connect within 5 s"), std::string::npos) << result.dump();
  EXPECT_EQ(exe_of(running_agent()), fs::path(TRANCHE_BINARY));
  expect_member_untouched();
}

TEST_F(AgentSelfUpgradeTest, AnAgentKilledMidSwitchComesBackOnOneOfTheTwoBuilds) {
  SKIP_WITH_A_SANITIZED_NEXT_BUILD();
  controller_.hold_welcomes(true);
  upgrade("upgradeAgent:h:kill", "0.2.0", read_file(NEXT_BINARY));
  const pid_t pid = agent_.pid();
  const fs::path staged = dir_ / "agent" / "versions" / "0.2.0" / "tranche";
  ASSERT_TRUE(wait_until([&] { return exe_of(pid) == staged; }, 20s)) << log();
  agent_.kill();  // mid-switch: the trial has not been welcomed
  agent_.start();  // its supervisor starts it again, through the original path
  controller_.hold_welcomes(false);
  const json result = await_result("upgradeAgent:h:kill");
  EXPECT_FALSE(result.value("ok", true)) << result.dump();
  // One agent runs (the watchdog's fallback or the restarted one), on the old build.
  ASSERT_TRUE(wait_until([&] { return running_agent() > 0 && controller_.connected(); })) << log();
  EXPECT_EQ(exe_of(running_agent()), fs::path(TRANCHE_BINARY));
  EXPECT_EQ(later_hellos().back().value("agentVersion", ""), old_version_);
  expect_member_untouched();
}

TEST_F(AgentSelfUpgradeTest, AnAgentAndItsWatchdogBothKilledMidSwitchComeBackOnTheOldBuild) {
  SKIP_WITH_A_SANITIZED_NEXT_BUILD();
  controller_.hold_welcomes(true);
  upgrade("upgradeAgent:h:both", "0.2.0", read_file(NEXT_BINARY));
  const pid_t pid = agent_.pid();
  const fs::path staged = dir_ / "agent" / "versions" / "0.2.0" / "tranche";
  ASSERT_TRUE(wait_until([&] { return exe_of(pid) == staged; }, 20s)) << log();
  const pid_t watchdog = watchdog_of(dir_ / "agent");
  ASSERT_GT(watchdog, 0);
  ::kill(watchdog, SIGKILL);  // our grandchild: the agent (the trial now) reaps it, or init once it is gone
  agent_.kill();
  EXPECT_TRUE(wait_until([&] { return !is_alive(watchdog); }));
  agent_.start();
  controller_.hold_welcomes(false);
  const json result = await_result("upgradeAgent:h:both");
  EXPECT_FALSE(result.value("ok", true)) << result.dump();
  EXPECT_NE(result.value("message", "").find("started again during the switch"), std::string::npos) << result.dump();
  EXPECT_EQ(running_agent(), agent_.pid());
  EXPECT_EQ(exe_of(agent_.pid()), fs::path(TRANCHE_BINARY));
  expect_member_untouched();
}

}  // namespace
}  // namespace tranche::agent
