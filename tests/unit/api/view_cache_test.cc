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
  EXPECT_EQ(views.find("a", 7, t0 + 999ms)->body, "seven");
  EXPECT_FALSE(views.find("a", 8, t0 + 1ms).has_value()) << "an event since: rendered again";
  EXPECT_FALSE(views.find("a", 8, t0 + 2ms).has_value()) << "by every caller, none answered from before it";
  EXPECT_FALSE(views.find("b", 7, t0).has_value()) << "another key";
}

TEST(ViewCache, PastItsLifetimeOneCallerRendersItAgainAndTheOthersGetTheKeptOne) {
  ViewCache views(1000ms);
  views.keep("a", 7, t0, "old");
  EXPECT_FALSE(views.find("a", 7, t0 + 1000ms).has_value()) << "this caller renews it";
  EXPECT_EQ(views.find("a", 7, t0 + 1001ms)->body, "old") << "the others meanwhile";
  views.keep("a", 7, t0 + 1002ms, "new");
  EXPECT_EQ(views.find("a", 7, t0 + 1003ms)->body, "new");
  // A renewal that never came back is retried a lifetime later.
  EXPECT_FALSE(views.find("a", 7, t0 + 2002ms).has_value());
  EXPECT_EQ(views.find("a", 7, t0 + 2500ms)->body, "new");
  EXPECT_FALSE(views.find("a", 7, t0 + 3002ms).has_value());
}

TEST(ViewCache, KeepsABoundedNumberOfAnswers) {
  ViewCache views(1000ms);
  for (int i = 0; i < 5000; ++i) {
    views.keep("k" + std::to_string(i), 1, t0, "x");
  }
  EXPECT_EQ(views.find("k4999", 1, t0)->body, "x");
  EXPECT_FALSE(views.find("k0", 1, t0).has_value()) << "dropped when the bound was reached";
}

TEST(ViewCache, ALargeAnswerIsKeptCompressedForCallersThatAcceptGzip) {
  ViewCache views(1000ms);
  const std::string large(ViewCache::kGzipAbove + 1, 'x');
  const KeptAnswer rendered = views.keep("large", 1, t0, large, /*accepts_gzip=*/true);
  EXPECT_TRUE(rendered.gzipped) << "the caller that rendered it gets it compressed too";
  EXPECT_EQ(rendered.body, gzip(large));
  EXPECT_EQ(views.find("large", 1, t0, true), rendered);
  EXPECT_EQ(views.find("large", 1, t0, false), (KeptAnswer{large, false})) << "as it is to the others";
  EXPECT_EQ(views.keep("large", 2, t0, large, false), (KeptAnswer{large, false}));

  const std::string small(ViewCache::kGzipAbove, 'x');
  EXPECT_EQ(views.keep("small", 1, t0, small, true), (KeptAnswer{small, false})) << "too small to gain";
  EXPECT_EQ(views.find("small", 1, t0, true), (KeptAnswer{small, false}));
}

}  // namespace
}  // namespace tranche::api
