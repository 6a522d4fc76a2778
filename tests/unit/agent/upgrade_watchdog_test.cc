// The fallback watchdog's decision (confirmed, the agent's pid ended, the
// deadline passed), the whole watch against a real process, and the staging
// of a downloaded binary.

#include "agent/upgrade_watchdog.h"

#include <sys/stat.h>

#include <thread>

#include <gtest/gtest.h>

#include "agent/agent_binary_stage.h"
#include "common/secrets.h"
#include "agent_test_util.h"

namespace tranche::agent {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

const TimePoint kSwitch{std::chrono::seconds{1'800'000'000}};
const std::string kCommand = "upgradeAgent:h1:0.2.0";

BinaryRecord trying(TimePoint switched_at, std::chrono::milliseconds allowed) {
  return begin_trial(BinaryRecord{AgentBinary{"0.1.0", "/opt/tranche"}, std::nullopt, std::nullopt, {}},
                     BinaryTrial{kCommand, AgentBinary{"0.2.0", "/s/versions/0.2.0/tranche"}, switched_at,
                                 switched_at + allowed});
}

TEST(UpgradeWatchdog, WaitsWhileTheTrialRunsWithinItsDeadline) {
  const auto d = decide_watch(trying(kSwitch, 60s), kCommand, TrialProcess{true, ""}, kSwitch + 59s);
  EXPECT_EQ(d.verdict, WatchVerdict::kWait);
}

TEST(UpgradeWatchdog, LeavesOnceTheTrialIsSettled) {
  const BinaryRecord record = trying(kSwitch, 60s);
  EXPECT_EQ(decide_watch(confirm_trial(record), kCommand, TrialProcess{true, ""}, kSwitch + 1s).verdict,
            WatchVerdict::kDone);
  // Settled by someone else (an agent restarted meanwhile), even with the pid gone.
  EXPECT_EQ(decide_watch(fall_back(record, "x"), kCommand, TrialProcess{false, "ended"}, kSwitch + 1s).verdict,
            WatchVerdict::kDone);
  EXPECT_EQ(decide_watch(std::nullopt, kCommand, TrialProcess{true, ""}, kSwitch).verdict, WatchVerdict::kDone);
  // Another switch's trial is not this watchdog's.
  EXPECT_EQ(decide_watch(record, "upgradeAgent:h1:0.3.0", TrialProcess{false, "ended"}, kSwitch).verdict,
            WatchVerdict::kDone);
}

TEST(UpgradeWatchdog, FallsBackWhenTheAgentEndsUnconfirmed) {
  const auto d = decide_watch(trying(kSwitch, 60s), kCommand, TrialProcess{false, "exited with status 1"},
                              kSwitch + 1200ms);
  EXPECT_EQ(d.verdict, WatchVerdict::kFallBack);
  EXPECT_FALSE(d.kill);
  EXPECT_EQ(d.why, "tranche 0.2.0 exited with status 1 1.2 s after the switch, before it had connected");
}

TEST(UpgradeWatchdog, FallsBackAndKillsWhenTheDeadlinePasses) {
  const auto d = decide_watch(trying(kSwitch, 60s), kCommand, TrialProcess{true, ""}, kSwitch + 60s);
  EXPECT_EQ(d.verdict, WatchVerdict::kFallBack);
  EXPECT_TRUE(d.kill);
  EXPECT_EQ(d.why, "tranche 0.2.0 did not connect within 60 s of the switch");
}

// A process to play the trial agent: our child, so that its end leaves a
// zombie whose exit status the watchdog can read.
pid_t start_sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

TEST(UpgradeWatchdogRun, LeavesWhenTheTrialConfirms) {
  TempDir dir;
  const SystemClock clock;
  ASSERT_TRUE(save_binary_record(dir.path(), trying(clock.now(), 60s)).has_value());
  const pid_t agent = start_sleeper();
  std::thread confirmer([&] {
    test::wait_until([&] { return std::filesystem::exists(dir / "agent-binary.json"); });
    auto lock = lock_binary_record(dir.path());
    ASSERT_TRUE(lock.has_value());
    ASSERT_TRUE(save_binary_record(dir.path(), confirm_trial(trying(clock.now(), 60s))).has_value());
  });
  auto outcome = watch_trial(WatchdogOptions{dir.path(), agent, kCommand, 10ms}, clock);
  confirmer.join();
  ASSERT_TRUE(outcome.has_value()) << outcome.error().describe();
  EXPECT_FALSE(outcome->exec.has_value());
  EXPECT_TRUE(test::is_alive(agent)) << "a confirmed trial is left running";
  test::kill_and_reap(agent);
}

TEST(UpgradeWatchdogRun, FallsBackWhenTheAgentDies) {
  TempDir dir;
  const SystemClock clock;
  ASSERT_TRUE(save_binary_record(dir.path(), trying(clock.now(), 60s)).has_value());
  const pid_t agent = start_sleeper();
  std::thread killer([&] { ::kill(agent, SIGKILL); });  // a zombie until reaped below
  auto outcome = watch_trial(WatchdogOptions{dir.path(), agent, kCommand, 10ms}, clock);
  killer.join();
  test::kill_and_reap(agent);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().describe();
  EXPECT_EQ(outcome->exec, std::filesystem::path("/opt/tranche"));
  auto record = load_binary_record(dir.path());
  ASSERT_TRUE(record.has_value() && record->has_value());
  EXPECT_FALSE((*record)->trial.has_value());
  ASSERT_TRUE((*record)->report.has_value());
  EXPECT_FALSE((*record)->report->ok);
  EXPECT_NE((*record)->report->message.find("tranche 0.2.0 was killed by signal 9"), std::string::npos)
      << (*record)->report->message;
  EXPECT_NE((*record)->report->message.find("back on 0.1.0"), std::string::npos);
}

TEST(UpgradeWatchdogRun, KillsATrialThatDoesNotConfirmInTime) {
  TempDir dir;
  const SystemClock clock;
  ASSERT_TRUE(save_binary_record(dir.path(), trying(clock.now(), 200ms)).has_value());
  const pid_t agent = start_sleeper();
  auto outcome = watch_trial(WatchdogOptions{dir.path(), agent, kCommand, 10ms}, clock);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().describe();
  EXPECT_EQ(outcome->exec, std::filesystem::path("/opt/tranche"));
  EXPECT_FALSE(test::is_alive(agent)) << "the trial was killed";
  int status = 0;
  ASSERT_EQ(::waitpid(agent, &status, 0), agent);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto record = load_binary_record(dir.path());
  ASSERT_TRUE(record.has_value() && record->has_value() && (*record)->report);
  EXPECT_NE((*record)->report->message.find("did not connect within"), std::string::npos);
}

TEST(UpgradeWatchdogRun, AnAgentHoldingTheLockDecidesItself) {
  TempDir dir;
  const SystemClock clock;
  ASSERT_TRUE(save_binary_record(dir.path(), trying(clock.now(), 60s)).has_value());
  auto held = FileLock::acquire(dir / "agent.lock");  // an agent its supervisor started again
  ASSERT_TRUE(held.has_value());
  auto outcome = watch_trial(WatchdogOptions{dir.path(), 999'999'999, kCommand, 10ms}, clock);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().describe();
  EXPECT_FALSE(outcome->exec.has_value());
  auto record = load_binary_record(dir.path());
  ASSERT_TRUE(record.has_value() && record->has_value());
  EXPECT_TRUE((*record)->trial.has_value()) << "left to the agent holding the lock";
}

// ---- staging ------------------------------------------------------------------------

TEST(AgentBinaryStage, AVerifiedBinaryIsStagedExecutable) {
  TempDir dir;
  const std::string bytes = "#!/bin/sh\nexit 1\n";
  auto staged = stage_agent_binary(dir.path(), "0.2.0", bytes, sha256_hex(bytes), static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(staged.has_value()) << staged.error().describe();
  EXPECT_EQ(*staged, dir / "versions/0.2.0/tranche");
  EXPECT_EQ(test::read_file(*staged), bytes);
  struct stat st {};
  ASSERT_EQ(::stat(staged->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_FALSE(std::filesystem::exists(dir / "versions/0.2.0/tranche.tmp"));
}

TEST(AgentBinaryStage, AMismatchStagesNothingAndNamesTheDigests) {
  TempDir dir;
  const std::string bytes = "#!/bin/sh\nexit 1\n";
  const std::string wrong(64, '0');
  auto staged = stage_agent_binary(dir.path(), "0.2.0", bytes, wrong, static_cast<int64_t>(bytes.size()));
  ASSERT_FALSE(staged.has_value());
  EXPECT_EQ(staged.error().field, "spec.sha256");
  EXPECT_NE(staged.error().message.find(sha256_hex(bytes)), std::string::npos) << staged.error().message;
  EXPECT_NE(staged.error().message.find(wrong), std::string::npos);
  auto short_one = stage_agent_binary(dir.path(), "0.2.0", bytes, sha256_hex(bytes), 999);
  ASSERT_FALSE(short_one.has_value());
  EXPECT_EQ(short_one.error().field, "spec.size");
  EXPECT_FALSE(std::filesystem::exists(dir / "versions"));
}

TEST(AgentBinaryStage, AVersionMustNameADirectory) {
  TempDir dir;
  for (const std::string version : {"", ".", "..", "../x", "a/b", "1.0 beta"}) {
    auto staged = stage_agent_binary(dir.path(), version, "x", sha256_hex("x"), 1);
    ASSERT_FALSE(staged.has_value()) << version;
    EXPECT_EQ(staged.error().field, "spec.version");
  }
  EXPECT_TRUE(check_version_name("0.2.0+g1a2b-dirty_1").has_value());
}

}  // namespace
}  // namespace tranche::agent
