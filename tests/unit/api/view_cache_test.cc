#include "api/view_cache.h"

#include <gtest/gtest.h>

namespace tranche::api {
namespace {

using namespace std::chrono_literals;

const TimePoint t0{std::chrono::seconds{1'800'000'000}};

TEST(ViewCache, AnAnswerIsGivenAgainUntilANewEvent) {
  ViewCache views(1000ms);
  EXPECT_FALSE(views.find("a", 7, t0).has_value()) << "nothing kept yet";
  views.keep("a", 7, t0, "seven");
  EXPECT_EQ(views.find("a", 7, t0 + 999ms), "seven");
  EXPECT_FALSE(views.find("a", 8, t0 + 1ms).has_value()) << "an event since: rendered again";
  EXPECT_FALSE(views.find("a", 8, t0 + 2ms).has_value()) << "by every caller, none answered from before it";
  EXPECT_FALSE(views.find("b", 7, t0).has_value()) << "another key";
}

TEST(ViewCache, PastItsLifetimeOneCallerRendersItAgainAndTheOthersGetTheKeptOne) {
  ViewCache views(1000ms);
  views.keep("a", 7, t0, "old");
  EXPECT_FALSE(views.find("a", 7, t0 + 1000ms).has_value()) << "this caller renews it";
  EXPECT_EQ(views.find("a", 7, t0 + 1001ms), "old") << "the others meanwhile";
  views.keep("a", 7, t0 + 1002ms, "new");
  EXPECT_EQ(views.find("a", 7, t0 + 1003ms), "new");
  // A renewal that never came back is retried a lifetime later.
  EXPECT_FALSE(views.find("a", 7, t0 + 2002ms).has_value());
  EXPECT_EQ(views.find("a", 7, t0 + 2500ms), "new");
  EXPECT_FALSE(views.find("a", 7, t0 + 3002ms).has_value());
}

TEST(ViewCache, KeepsABoundedNumberOfAnswers) {
  ViewCache views(1000ms);
  for (int i = 0; i < 5000; ++i) {
    views.keep("k" + std::to_string(i), 1, t0, "x");
  }
  EXPECT_EQ(views.find("k4999", 1, t0), "x");
  EXPECT_FALSE(views.find("k0", 1, t0).has_value()) << "dropped when the bound was reached";
}

}  // namespace
}  // namespace tranche::api
