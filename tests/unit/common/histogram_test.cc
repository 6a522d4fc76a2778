#include "common/histogram.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tranche {
namespace {

TEST(Histogram, BucketsAreCumulative) {
  Histogram h;
  h.observe(0.0001);
  h.observe(0.2);
  h.observe(10);
  EXPECT_EQ(h.at_most(0), 1u);  // <= 0.0005
  EXPECT_EQ(h.at_most(8), 2u);  // <= 0.25
  EXPECT_EQ(h.at_most(Histogram::kBounds.size() - 1), 2u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_DOUBLE_EQ(h.sum(), 10.2001);
}

TEST(Histogram, AnObservationOnABoundIsInThatBucket) {
  Histogram h;
  h.observe(0.005);
  EXPECT_EQ(h.at_most(2), 0u);  // <= 0.0025
  EXPECT_EQ(h.at_most(3), 1u);  // <= 0.005
}

TEST(Histogram, TheQuantileIsTheBoundOfTheBucketItFallsIn) {
  Histogram h;
  EXPECT_EQ(h.quantile_bound(0.99), 0) << "nothing observed";
  for (int i = 0; i < 99; ++i) {
    h.observe(0.002);
  }
  h.observe(0.3);
  EXPECT_EQ(h.quantile_bound(0.5), 0.0025);
  EXPECT_EQ(h.quantile_bound(0.99), 0.0025) << "99 of 100 are in the 2.5 ms bucket";
  EXPECT_EQ(h.quantile_bound(1.0), 0.5);
  h.observe(0.3);
  EXPECT_EQ(h.quantile_bound(0.99), 0.5) << "99 of 101 are less than 99 %";
  h.observe(100);
  EXPECT_TRUE(std::isinf(h.quantile_bound(1.0))) << "beyond the last bound";
}

TEST(Histogram, MergingAddsCountsAndSums) {
  Histogram a;
  Histogram b;
  a.observe(0.001);
  b.observe(0.001);
  b.observe(1.0);
  a.merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.at_most(1), 2u);  // <= 0.001
  EXPECT_DOUBLE_EQ(a.sum(), 1.002);
  EXPECT_EQ(a.quantile_bound(0.5), 0.001);
}

}  // namespace
}  // namespace tranche
