#include "engine/fleet/host_deadlines.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const TimePoint kStart{seconds{1'800'000'000}};

std::vector<std::string> hosts_of(const std::vector<HostDeadlines::Silent>& silent) {
  std::vector<std::string> hosts;
  for (const auto& s : silent) {
    hosts.push_back(s.host);
  }
  return hosts;
}

TEST(HostDeadlines, AHostIsSilentOnlyAfterMoreThanTheTimeout) {
  HostDeadlines deadlines(seconds(6));
  deadlines.arrived("a", kStart);
  EXPECT_THAT(deadlines.expired(kStart + seconds(6)), IsEmpty());
  auto silent = deadlines.expired(kStart + seconds(6) + milliseconds(1));
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_EQ(silent[0].host, "a");
  EXPECT_EQ(silent[0].last_heard, kStart);
}

TEST(HostDeadlines, AHostHeardFromBeforeItsDeadlineIsNotSilent) {
  HostDeadlines deadlines(seconds(6));
  deadlines.arrived("a", kStart);
  deadlines.arrived("a", kStart + seconds(4));
  EXPECT_THAT(deadlines.expired(kStart + seconds(7)), IsEmpty());  // its first deadline passed: re-queued
  EXPECT_THAT(hosts_of(deadlines.expired(kStart + seconds(10) + milliseconds(1))), ElementsAre("a"));
}

TEST(HostDeadlines, ASilentHostIsReportedOnceUntilItArrivesAgain) {
  HostDeadlines deadlines(seconds(6));
  deadlines.arrived("a", kStart);
  EXPECT_THAT(hosts_of(deadlines.expired(kStart + seconds(7))), ElementsAre("a"));
  EXPECT_THAT(deadlines.expired(kStart + seconds(20)), IsEmpty());
  EXPECT_EQ(deadlines.last_heard("a"), std::nullopt);
  deadlines.arrived("a", kStart + seconds(21));
  EXPECT_THAT(hosts_of(deadlines.expired(kStart + seconds(28))), ElementsAre("a"));
}

TEST(HostDeadlines, AHostAwaitingReconnectionIsSilentOnlyAfterAFewTimeouts) {
  HostDeadlines deadlines(seconds(6));
  deadlines.await_reconnection("a", kStart);
  EXPECT_THAT(deadlines.expired(kStart + seconds(7)), IsEmpty());
  EXPECT_THAT(deadlines.expired(kStart + seconds(6 * HostDeadlines::kReconnectTimeouts)), IsEmpty());
  auto silent = deadlines.expired(kStart + seconds(6 * HostDeadlines::kReconnectTimeouts) + milliseconds(1));
  EXPECT_THAT(hosts_of(silent), ElementsAre("a"));
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_EQ(silent[0].last_heard, kStart);
}

// Most hosts silent together: held for up to kMassSilenceTimeouts timeouts;
// a late one that speaks meanwhile is never reported.
TEST(HostDeadlines, MostHostsSilentTogetherAreHeldForAFewTimeouts) {
  HostDeadlines deadlines(seconds(6));
  for (int i = 0; i < 20; ++i) {
    deadlines.arrived("h" + std::to_string(i), kStart);
  }
  for (int i = 15; i < 20; ++i) {  // 5 of 20 keep talking
    deadlines.arrived("h" + std::to_string(i), kStart + seconds(5));
  }
  EXPECT_THAT(deadlines.expired(kStart + seconds(7)), IsEmpty());
  EXPECT_EQ(deadlines.held(), 15u);
  deadlines.arrived("h0", kStart + seconds(9));  // it was only late
  for (int i = 15; i < 20; ++i) {
    deadlines.arrived("h" + std::to_string(i), kStart + seconds(10));
  }
  EXPECT_THAT(deadlines.expired(kStart + seconds(14)), IsEmpty());  // held again, 7 s into the episode
  EXPECT_EQ(deadlines.held(), 14u);
  for (int i = 15; i < 20; ++i) {
    deadlines.arrived("h" + std::to_string(i), kStart + seconds(20));
  }
  deadlines.arrived("h0", kStart + seconds(20));
  auto silent = deadlines.expired(kStart + seconds(25) + milliseconds(1));  // 18 s: 3 timeouts
  EXPECT_EQ(silent.size(), 14u);
  EXPECT_EQ(deadlines.held(), 0u);
  for (const auto& s : silent) {
    EXPECT_NE(s.host, "h0");
    EXPECT_EQ(s.last_heard, kStart) << "the message says how long each was really silent";
  }
}

TEST(HostDeadlines, AFewSilentHostsOrAMinorityAreReportedAtOnce) {
  HostDeadlines deadlines(seconds(6));
  for (int i = 0; i < 30; ++i) {
    deadlines.arrived("h" + std::to_string(i), i < 12 ? kStart : kStart + seconds(5));
  }
  EXPECT_EQ(deadlines.expired(kStart + seconds(7)).size(), 12u) << "12 of 30 is not most";
  EXPECT_EQ(deadlines.held(), 0u);
  HostDeadlines small(seconds(6));
  for (int i = 0; i < 9; ++i) {
    small.arrived("h" + std::to_string(i), kStart);
  }
  EXPECT_EQ(small.expired(kStart + seconds(7)).size(), 9u) << "a small fleet: every host silent is reported";
}

TEST(HostDeadlines, OnlyTheExpiredAreVisitedAndEachHostIsQueuedOnce) {
  HostDeadlines deadlines(seconds(6));
  for (int i = 0; i < 1000; ++i) {
    deadlines.arrived("h" + std::to_string(i), kStart + milliseconds(i));
  }
  for (int beat = 0; beat < 100; ++beat) {  // arrivals of a queued host queue nothing more
    deadlines.arrived("h0", kStart + milliseconds(beat));
  }
  // Deadlines at kStart + 6 s + i ms: those of h0 to h9 have passed, and h0
  // was heard from later.
  auto silent = deadlines.expired(kStart + seconds(6) + milliseconds(10));
  EXPECT_EQ(silent.size(), 9u);
  EXPECT_EQ(silent.front().host, "h1");
}

TEST(HostDeadlines, AForgottenHostIsNeverReported) {
  HostDeadlines deadlines(seconds(6));
  deadlines.arrived("a", kStart);
  deadlines.forget("a");
  EXPECT_THAT(deadlines.expired(kStart + seconds(60)), IsEmpty());
}

}  // namespace
}  // namespace tranche
