// The agent's waits between tries to reach its controller
// (agent/reconnect_backoff.h).

#include "agent/reconnect_backoff.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace tranche::agent {
namespace {

using std::chrono::milliseconds;

TEST(ReconnectBackoff, EachFailedTryDoublesTheStepUpToFiveSecondsAndAWaitLiesBetweenTheStepAndTwice) {
  ReconnectBackoff backoff;
  std::mt19937_64 random(1);
  for (const milliseconds step : {milliseconds(200), milliseconds(400), milliseconds(800), milliseconds(1600),
                                  milliseconds(3200), milliseconds(5000), milliseconds(5000)}) {
    const milliseconds wait = backoff.after(false, false, random);
    EXPECT_GE(wait, step);
    EXPECT_LE(wait, 2 * step);
  }
}

TEST(ReconnectBackoff, AWelcomedSessionStartsAgainFromTheFirstStep) {
  ReconnectBackoff backoff;
  std::mt19937_64 random(2);
  for (int i = 0; i < 6; ++i) {
    (void)backoff.after(false, false, random);
  }
  const milliseconds wait = backoff.after(true, false, random);
  EXPECT_GE(wait, ReconnectBackoff::kFirst);
  EXPECT_LE(wait, 2 * ReconnectBackoff::kFirst);
  EXPECT_LE(backoff.after(false, false, random), milliseconds(400)) << "and doubles from there";
}

TEST(ReconnectBackoff, ARefusalWaitsThirtySecondsAndAFailedTryAfterItTheLongestStep) {
  ReconnectBackoff backoff;
  std::mt19937_64 random(3);
  EXPECT_EQ(backoff.after(false, true, random), ReconnectBackoff::kRefused);
  EXPECT_GE(backoff.after(false, false, random), ReconnectBackoff::kMax);
}

TEST(ReconnectBackoff, AgentsThatLostTheirControllerTogetherDoNotComeBackTogether) {
  std::set<milliseconds::rep> first_waits;
  std::mt19937_64 random(4);  // shared, as the simulator's hosts share one per thread
  for (int agent = 0; agent < 100; ++agent) {
    ReconnectBackoff backoff;
    first_waits.insert(backoff.after(true, false, random).count());
  }
  EXPECT_GT(first_waits.size(), 50u) << "100 agents' first tries are spread over 100-200 ms";
}

}  // namespace
}  // namespace tranche::agent
