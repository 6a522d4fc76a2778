// The self-upgrade's durable record: its transitions, its file, and which
// binary an agent runs at start-up for every state the record can be in.

#include "agent/binary_record.h"

#include <set>

#include <gtest/gtest.h>

#include "agent_test_util.h"

namespace tranche::agent {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

const TimePoint kSwitch{std::chrono::seconds{1'800'000'000}};

BinaryRecord on_old() { return BinaryRecord{AgentBinary{"0.1.0", "/opt/tranche"}, std::nullopt, std::nullopt, {}}; }
BinaryTrial trial_of_new() {
  return BinaryTrial{"upgradeAgent:h1:0.2.0", AgentBinary{"0.2.0", "/s/versions/0.2.0/tranche"}, kSwitch,
                     kSwitch + 60s};
}

TEST(BinaryRecord, ATrialConfirmedMakesTheNewBinaryCurrentAndTheOldPrevious) {
  const BinaryRecord trying = begin_trial(on_old(), trial_of_new());
  ASSERT_TRUE(trying.trial.has_value());
  EXPECT_EQ(trying.current.version, "0.1.0");
  const BinaryRecord confirmed = confirm_trial(trying);
  EXPECT_FALSE(confirmed.trial.has_value());
  EXPECT_EQ(confirmed.current, (AgentBinary{"0.2.0", "/s/versions/0.2.0/tranche"}));
  ASSERT_TRUE(confirmed.previous.has_value());
  EXPECT_EQ(confirmed.previous->version, "0.1.0");
  ASSERT_TRUE(confirmed.report.has_value());
  EXPECT_TRUE(confirmed.report->ok);
  EXPECT_EQ(confirmed.report->command_id, "upgradeAgent:h1:0.2.0");
  EXPECT_EQ(confirmed.report->version, "0.2.0");
  EXPECT_EQ(forget_report(confirmed, "other").report, confirmed.report);
  EXPECT_FALSE(forget_report(confirmed, "upgradeAgent:h1:0.2.0").report.has_value());
}

TEST(BinaryRecord, AFallBackKeepsTheOldBinaryAndSaysWhy) {
  const BinaryRecord back = fall_back(begin_trial(on_old(), trial_of_new()), "tranche 0.2.0 exited with status 1");
  EXPECT_FALSE(back.trial.has_value());
  EXPECT_EQ(back.current, on_old().current);
  ASSERT_TRUE(back.report.has_value());
  EXPECT_FALSE(back.report->ok);
  EXPECT_EQ(back.report->message, "tranche 0.2.0 exited with status 1; back on 0.1.0");
  // A new switch supersedes the last one's report.
  EXPECT_FALSE(begin_trial(back, trial_of_new()).report.has_value());
  // Without a trial there is nothing to confirm or undo.
  EXPECT_EQ(confirm_trial(on_old()), on_old());
  EXPECT_EQ(fall_back(on_old(), "x"), on_old());
}

TEST(BinaryRecord, TheFileRoundTripsAndItsAbsenceIsNoRecord) {
  TempDir dir;
  auto none = load_binary_record(dir.path());
  ASSERT_TRUE(none.has_value()) << none.error().describe();
  EXPECT_FALSE(none->has_value());
  BinaryRecord record = fall_back(begin_trial(on_old(), trial_of_new()), "gone");
  record.previous = AgentBinary{"0.0.9", "/s/versions/0.0.9/tranche"};
  for (const BinaryRecord& r : {on_old(), begin_trial(on_old(), trial_of_new()), record}) {
    ASSERT_TRUE(save_binary_record(dir.path(), r).has_value());
    auto back = load_binary_record(dir.path());
    ASSERT_TRUE(back.has_value()) << back.error().describe();
    ASSERT_TRUE(back->has_value());
    EXPECT_EQ(**back, r);
  }
}

TEST(BinaryRecord, AnUnreadableFileIsAnErrorNamingTheField) {
  TempDir dir;
  test::write_file(dir / kBinaryRecordFile, "{\"current\": {\"version\": \"0.1.0\"}}");
  auto bad = load_binary_record(dir.path());
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field, "agent-binary.json.current.path");
  test::write_file(dir / kBinaryRecordFile, "not json");
  EXPECT_FALSE(load_binary_record(dir.path()).has_value());
}

// ---- start-up -----------------------------------------------------------------------

StartupContext context(const std::filesystem::path& self, std::set<std::string> executable) {
  StartupContext c;
  c.self = self;
  c.self_version = "self";
  c.is_executable = [executable](const std::filesystem::path& p) { return executable.contains(p.string()); };
  c.same_file = [](const std::filesystem::path& a, const std::filesystem::path& b) { return a == b; };
  return c;
}

TEST(BinaryRecordStartup, WithoutARecordTheStartedBinaryRuns) {
  const auto choice = choose_startup_binary(std::nullopt, context("/opt/tranche", {"/opt/tranche"}));
  EXPECT_FALSE(choice.exec.has_value());
  EXPECT_FALSE(choice.is_trial);
  EXPECT_FALSE(choice.write.has_value());
}

TEST(BinaryRecordStartup, TheCurrentBinaryRunsOrIsExecd) {
  BinaryRecord record = confirm_trial(begin_trial(on_old(), trial_of_new()));
  const std::set<std::string> both = {"/opt/tranche", "/s/versions/0.2.0/tranche"};
  // Started by its supervisor through the original path: exec the current one.
  auto choice = choose_startup_binary(record, context("/opt/tranche", both));
  EXPECT_EQ(choice.exec, std::filesystem::path("/s/versions/0.2.0/tranche"));
  EXPECT_FALSE(choice.write.has_value());
  // Already it: run.
  choice = choose_startup_binary(record, context("/s/versions/0.2.0/tranche", both));
  EXPECT_FALSE(choice.exec.has_value());
  // Exec'd by an agent or a watchdog: never exec again, whatever the record says.
  auto marked = context("/opt/tranche", both);
  marked.exec_marker = true;
  choice = choose_startup_binary(record, marked);
  EXPECT_FALSE(choice.exec.has_value());
  // The current binary is gone: the started one runs rather than none.
  choice = choose_startup_binary(record, context("/opt/tranche", {"/opt/tranche"}));
  EXPECT_FALSE(choice.exec.has_value());
  EXPECT_NE(choice.note.find("missing"), std::string::npos) << choice.note;
}

TEST(BinaryRecordStartup, TheTrialNamedByItsMarkerRunsOnTrial) {
  const BinaryRecord record = begin_trial(on_old(), trial_of_new());
  auto c = context("/s/versions/0.2.0/tranche", {"/opt/tranche", "/s/versions/0.2.0/tranche"});
  c.trial_marker = "upgradeAgent:h1:0.2.0";
  const auto choice = choose_startup_binary(record, c);
  EXPECT_TRUE(choice.is_trial);
  EXPECT_FALSE(choice.exec.has_value());
  EXPECT_FALSE(choice.write.has_value());
}

TEST(BinaryRecordStartup, AnUnconfirmedTrialAtStartUpFallsBackToTheOldBinary) {
  const BinaryRecord record = begin_trial(on_old(), trial_of_new());
  const std::set<std::string> both = {"/opt/tranche", "/s/versions/0.2.0/tranche"};
  // Restarted through the original path (the old binary): it runs, the record goes back.
  auto choice = choose_startup_binary(record, context("/opt/tranche", both));
  EXPECT_FALSE(choice.exec.has_value());
  EXPECT_FALSE(choice.is_trial);
  ASSERT_TRUE(choice.write.has_value());
  EXPECT_FALSE(choice.write->trial.has_value());
  EXPECT_EQ(choice.write->current, on_old().current);
  ASSERT_TRUE(choice.write->report.has_value());
  EXPECT_FALSE(choice.write->report->ok);
  EXPECT_NE(choice.write->report->message.find("before it had connected; back on 0.1.0"), std::string::npos);
  // Started as the new binary, or with another trial's marker: exec the old one.
  auto stale = context("/s/versions/0.2.0/tranche", both);
  stale.trial_marker = "upgradeAgent:h1:0.1.9";
  choice = choose_startup_binary(record, stale);
  EXPECT_EQ(choice.exec, std::filesystem::path("/opt/tranche"));
  EXPECT_TRUE(choice.write.has_value());
}

}  // namespace
}  // namespace tranche::agent
