#include "cli/rollout_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace tranche::cli {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A rollout as GET /applications/shop/rollout describes it.
json sample() {
  return json::parse(R"({
    "id": 3, "application": "shop", "phase": "Progressing",
    "fromRevision": 1, "toRevision": 2, "targetRevision": 2,
    "reason": "apply", "promoted": false, "author": "admin",
    "startedAt": "2026-01-01T10:00:00.000Z", "updatedAt": "2026-01-01T10:00:12.500Z", "finishedAt": null,
    "elapsedSeconds": 12.5, "message": "",
    "clusters": [
      {"path": "backend/db", "status": "Done", "method": "in-place", "strategy": "all-at-once",
       "updated": 1, "total": 1, "available": 1, "failures": 0, "maxFailures": 0, "waitingFor": []},
      {"path": "web", "status": "Progressing", "method": "replace", "strategy": "rolling",
       "updated": 3, "total": 6, "available": 5, "failures": 0, "maxFailures": 0, "waitingFor": []},
      {"path": "worker", "status": "Waiting", "method": "replace", "strategy": "rolling",
       "updated": 0, "total": 12, "available": 12, "failures": 0, "maxFailures": 0, "waitingFor": ["web"]}
    ]})");
}

TEST(RolloutViewTest, FinalPhasesEndAWatch) {
  for (const char* phase : {"Succeeded", "Failed", "Aborted"}) {
    EXPECT_TRUE(is_final_phase(phase)) << phase;
  }
  // Superseded is followed into the newer rollout.
  for (const char* phase : {"Progressing", "Paused", "CanaryPaused", "RollingBack", "Superseded", ""}) {
    EXPECT_FALSE(is_final_phase(phase)) << phase;
  }
}

TEST(RolloutViewTest, ExitCodeIsOneOnlyForFailedAndAborted) {
  EXPECT_EQ(exit_code_for_phase("Failed"), 1);
  EXPECT_EQ(exit_code_for_phase("Aborted"), 1);
  for (const char* phase : {"Succeeded", "Progressing", "Paused", "CanaryPaused", "RollingBack", "Superseded"}) {
    EXPECT_EQ(exit_code_for_phase(phase), 0) << phase;
  }
}

TEST(RolloutViewTest, ProgressBar) {
  EXPECT_EQ(progress_bar(3, 6, false, 20), "[##########----------]");
  EXPECT_EQ(progress_bar(0, 6, false, 10), "[----------]");
  EXPECT_EQ(progress_bar(6, 6, true, 10), "[##########]");
  EXPECT_EQ(progress_bar(1, 3, false, 10), "[###-------]");
  EXPECT_EQ(progress_bar(9, 6, false, 4), "[####]");   // more than total: full, not past the bracket
  EXPECT_EQ(progress_bar(-1, 6, false, 4), "[----]");  // nonsense stays in the bar
  EXPECT_EQ(progress_bar(0, 0, true, 4), "[####]");    // no members: done is full
  EXPECT_EQ(progress_bar(0, 0, false, 4), "[----]");
}

TEST(RolloutViewTest, ElapsedInWholeSeconds) {
  EXPECT_EQ(format_elapsed(12.5), "12s");
  EXPECT_EQ(format_elapsed(125), "2m5s");
  EXPECT_EQ(format_elapsed(0.4), "0s");
  EXPECT_EQ(format_elapsed(-3), "0s");
}

TEST(RolloutViewTest, PhaseLine) {
  EXPECT_EQ(phase_line(sample()), "rollout 3 of shop: revision 1 -> 2  Progressing  12s  (apply)");

  json r = sample();
  r["phase"] = "RollingBack";
  r["targetRevision"] = 1;
  r["elapsedSeconds"] = 75.2;
  r["message"] = "2 failures exceed maxFailures 1 on shop/web";
  EXPECT_EQ(phase_line(r),
            "rollout 3 of shop: revision 1 -> 2, back to 1  RollingBack  1m15s  (apply)  2 failures exceed "
            "maxFailures 1 on shop/web");
}

TEST(RolloutViewTest, MissingOrNullFieldsDoNotThrow) {
  const json r = json::parse(R"({"id": null, "phase": "Paused", "clusters": [{"path": "web", "updated": null}]})");
  EXPECT_EQ(phase_line(r), "rollout - of : revision - -> -  Paused");
  EXPECT_THAT(cluster_lines(r, 0), ElementsAre("web  0/0 updated  0 available  0 failed  ?             -"));
  EXPECT_THAT(cluster_lines(json::object(), 0), IsEmpty());
}

TEST(RolloutViewTest, ClusterLinesAreAligned) {
  EXPECT_THAT(cluster_lines(sample(), 0),
              ElementsAre("backend/db  1/1 updated   1 available   0 failed  Done          in-place, all-at-once",
                          "web         3/6 updated   5 available   0 failed  Progressing   replace, rolling",
                          "worker      0/12 updated  12 available  0 failed  Waiting       replace, rolling       "
                          "waiting for web"));
}

TEST(RolloutViewTest, ClusterLinesWithBars) {
  EXPECT_THAT(
      cluster_lines(sample(), 4),
      ElementsAre("backend/db  [####]  1/1 updated   1 available   0 failed  Done          in-place, all-at-once",
                  "web         [##--]  3/6 updated   5 available   0 failed  Progressing   replace, rolling",
                  "worker      [----]  0/12 updated  12 available  0 failed  Waiting       replace, rolling       "
                  "waiting for web"));
}

TEST(RolloutViewTest, FailuresShowTheirLimit) {
  json r = sample();
  r["clusters"] = json::array({json::parse(R"({"path": "web", "status": "Progressing", "updated": 2, "total": 4,
      "available": 3, "failures": 1, "maxFailures": 2, "waitingFor": ["backend/db", "cache"]})")});
  EXPECT_THAT(
      cluster_lines(r, 0),
      ElementsAre("web  2/4 updated  3 available  1 failed (max 2)  Progressing   -  waiting for backend/db, cache"));
}

// A watch into a log keeps its columns when every cluster is Done.
TEST(RolloutViewTest, TheStatusColumnIsAsWideAsTheWidestStatus) {
  json r = sample();
  for (auto& c : r["clusters"]) {
    c["status"] = "Done";
  }
  EXPECT_EQ(cluster_lines(r, 0)[1], "web         3/6 updated   5 available   0 failed  Done          replace, rolling");
  r["clusters"][1]["status"] = "CanaryPaused";
  EXPECT_EQ(cluster_lines(r, 0)[1], "web         3/6 updated   5 available   0 failed  CanaryPaused  replace, rolling");
}

TEST(RolloutViewTest, StatusLinesArePhaseThenIndentedClusters) {
  const auto lines = status_lines(sample(), 0);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], phase_line(sample()));
  EXPECT_EQ(lines[2], "  web         3/6 updated   5 available   0 failed  Progressing   replace, rolling");
}

TEST(RolloutViewTest, FirstAnswerShowsEverything) {
  EXPECT_EQ(changed_lines(nullptr, sample()), status_lines(sample(), 0));
}

TEST(RolloutViewTest, TimePassingAloneIsNoChange) {
  json later = sample();
  later["elapsedSeconds"] = 13.0;
  later["updatedAt"] = "2026-01-01T10:00:13.000Z";
  const json before = sample();
  EXPECT_THAT(changed_lines(&before, later), IsEmpty());
  EXPECT_FALSE(differs(before, later));
}

TEST(RolloutViewTest, OnlyTheChangedClusterIsPrinted) {
  const json before = sample();
  json after = sample();
  after["clusters"][1]["updated"] = 4;
  after["elapsedSeconds"] = 14.0;
  EXPECT_TRUE(differs(before, after));
  EXPECT_THAT(changed_lines(&before, after),
              ElementsAre("  web         4/6 updated   5 available   0 failed  Progressing   replace, rolling"));
}

TEST(RolloutViewTest, APhaseChangePrintsThePhaseLine) {
  const json before = sample();
  json after = sample();
  after["phase"] = "Paused";
  after["message"] = "paused by admin";
  EXPECT_THAT(changed_lines(&before, after),
              ElementsAre("rollout 3 of shop: revision 1 -> 2  Paused  12s  (apply)  paused by admin"));
}

TEST(RolloutViewTest, ANewClusterCountsAsChanged) {
  json before = sample();
  before["clusters"].erase(2);
  const auto lines = changed_lines(&before, sample());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::StartsWith("  worker "));
}

TEST(RolloutViewTest, SupersedeNotes) {
  const json watched = sample();
  EXPECT_EQ(supersede_note(watched, sample()), std::nullopt);

  json superseded = sample();
  superseded["phase"] = "Superseded";
  EXPECT_EQ(supersede_note(watched, superseded), "rollout 3 was superseded; waiting for the newer rollout");
  EXPECT_EQ(supersede_note(superseded, superseded), std::nullopt);  // said once

  json newer = sample();
  newer["id"] = 4;
  newer["fromRevision"] = 2;
  newer["toRevision"] = 3;
  EXPECT_EQ(supersede_note(watched, newer), "rollout 3 was superseded by rollout 4 (revision 2 -> 3); following it");
}

TEST(RolloutViewTest, ControlLine) {
  EXPECT_EQ(
      control_line(json::parse(R"({"id": 3, "phase": "Paused", "message": "rollout 3 of shop paused by admin"})")),
      "rollout 3 of shop paused by admin (phase Paused)");
  EXPECT_EQ(control_line(json::parse(R"({"id": 3, "phase": "Progressing"})")), "rollout 3 Progressing");
}

TEST(RolloutViewTest, FitToWidthCountsCharactersNotBytes) {
  EXPECT_EQ(fit_to_width("abcdef", 4), "abcd");
  EXPECT_EQ(fit_to_width("abc", 4), "abc");
  EXPECT_EQ(fit_to_width("a→b→c", 3), "a→b");
  EXPECT_EQ(fit_to_width("abc", 0), "");
}

}  // namespace
}  // namespace tranche::cli
