#pragma once
// Counts of observed durations in fixed buckets (Prometheus' cumulative
// `le` buckets), for latencies that /metrics exposes and that benchmarks
// read back: the quantile of a histogram is known only to its bucket, so
// quantile_bound() answers with the bucket's upper bound. Not thread-safe:
// its owner guards it, or keeps one per thread and merges.

#include <array>
#include <cstddef>
#include <cstdint>

namespace tranche {

class Histogram {
 public:
  // Upper bounds in seconds, ascending; a last bucket (+Inf) holds the rest.
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

  void observe(double seconds);
  void merge(const Histogram& other);

  // Observations <= kBounds[i] (cumulative, as Prometheus' `le` buckets).
  uint64_t at_most(std::size_t bound_index) const { return buckets_[bound_index]; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

  // The upper bound of the first bucket holding at least `q` (0 < q <= 1)
  // of the observations: q of them took at most this long. +Inf when they
  // fall beyond the last bound, 0 with no observations.
  double quantile_bound(double q) const;

 private:
  std::array<uint64_t, kBounds.size()> buckets_{};  // cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace tranche
