#pragma once
// Part of the fleet (fleet.h); read by reconcile/autoscaler.cc.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "common/clock.h"

namespace tranche {

// The autoscaler's view of one cluster (model.md, "Autoscaling"). Every
// member report is a sample (50,000 a second at 100,000 members): they are
// summed into buckets of kLoadBucket, so a window costs O(its length) in
// memory and expiry, and the average is a running sum over a running count.
// A bucket leaves the window once its newest sample has: no sample leaves
// early, none stays more than kLoadBucket late.
inline constexpr std::chrono::milliseconds kLoadBucket{100};
struct ClusterLoad {
  struct Bucket {
    TimePoint first;
    TimePoint last;
    double sum = 0;
    int64_t count = 0;
  };
  std::deque<Bucket> buckets;
  double sum = 0;     // of the samples in the window
  int64_t count = 0;  // samples in the window
  bool empty() const { return count == 0; }
  void add(TimePoint at, double value) {
    if (buckets.empty() || at - buckets.back().first >= kLoadBucket) {
      buckets.push_back(Bucket{at, at});
    }
    Bucket& b = buckets.back();
    b.last = std::max(b.last, at);
    b.sum += value;
    ++b.count;
    sum += value;
    ++count;
  }
  void expire_before(TimePoint cutoff) {
    while (!buckets.empty() && buckets.front().last < cutoff) {
      sum -= buckets.front().sum;
      count -= buckets.front().count;
      buckets.pop_front();
    }
    if (buckets.empty()) {
      sum = 0;  // no drift survives an empty window
    }
  }
  std::optional<TimePoint> observed_since;           // no verdict before a whole window
  std::string state = "normal";                      // normal | overload | underload
  std::optional<double> average;
  std::optional<TimePoint> last_decision;
  // The count a decision wanted while a migration lock suspended it: each
  // suspended decision is said once, not once per pass.
  std::optional<int> suspended;
};

}  // namespace tranche
