#include "common/histogram.h"

#include <cmath>
#include <limits>

namespace tranche {

void Histogram::observe(double seconds) {
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++buckets_[i];
    }
  }
  ++count_;
  sum_ += seconds;
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBounds.size(); ++i) {
    buckets_[i] += other.buckets_[i];
  }
  count_ += other.count_;
  sum_ += other.sum_;
}

double Histogram::quantile_bound(double q) const {
  if (count_ == 0) {
    return 0;
  }
  // The smallest whole number of observations that is at least q of them
  // (0.99 * 100 is not exactly 99 in binary: the slack keeps it from being 100).
  const auto needed = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_) - 1e-9));
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (buckets_[i] >= needed) {
      return kBounds[i];
    }
  }
  return std::numeric_limits<double>::infinity();
}

}  // namespace tranche
