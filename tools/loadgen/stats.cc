#include "stats.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace tranche::loadgen {

namespace {

constexpr uint64_t kExact = 64;   // values below are their own bucket
constexpr unsigned kSubBits = 5;  // 32 sub-buckets per power of two above
constexpr size_t kMaxVersionLength = 64;

}  // namespace

size_t LatencyHistogram::index_of(uint64_t us) {
  if (us < kExact) {
    return static_cast<size_t>(us);
  }
  const unsigned exponent = static_cast<unsigned>(std::bit_width(us)) - 1;  // >= 6
  const uint64_t sub = (us >> (exponent - kSubBits)) & ((uint64_t{1} << kSubBits) - 1);
  return static_cast<size_t>(kExact + (exponent - 6) * (uint64_t{1} << kSubBits) + sub);
}

uint64_t LatencyHistogram::upper_bound_of(size_t index) {
  if (index < kExact) {
    return index;
  }
  const uint64_t rest = index - kExact;
  const unsigned exponent = static_cast<unsigned>(rest >> kSubBits) + 6;
  const uint64_t sub = rest & ((uint64_t{1} << kSubBits) - 1);
  const uint64_t width = uint64_t{1} << (exponent - kSubBits);
  return (uint64_t{1} << exponent) + (sub + 1) * width - 1;
}

void LatencyHistogram::record(std::chrono::microseconds latency) {
  const uint64_t us = static_cast<uint64_t>(std::max<int64_t>(latency.count(), 0));
  const size_t index = index_of(us);
  if (index >= buckets_.size()) {
    buckets_.resize(index + 1);
  }
  ++buckets_[index];
  ++count_;
  max_ = std::max(max_, us);
}

std::chrono::microseconds LatencyHistogram::quantile(double q) const {
  if (count_ == 0) {
    return std::chrono::microseconds(0);
  }
  const auto rank = std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))), 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      return std::chrono::microseconds(std::min(upper_bound_of(i), max_));
    }
  }
  return std::chrono::microseconds(max_);
}

Tally::Tally(std::chrono::milliseconds interval, std::string first_phase)
    : interval_(std::max(interval, std::chrono::milliseconds(1))) {
  phases_.push_back(Phase{.name = std::move(first_phase)});
}

bool Tally::enter_phase(std::string_view name, std::chrono::microseconds at) {
  const auto it = std::find_if(phases_.begin(), phases_.end(), [&](const Phase& p) { return p.name == name; });
  const auto index = static_cast<size_t>(it - phases_.begin());
  if (index == current_phase_) {
    return true;
  }
  if (it == phases_.end()) {
    if (phases_.size() >= kMaxPhases) {
      return false;
    }
    phases_.push_back(Phase{.name = std::string(name)});
  }
  phases_[current_phase_].duration += std::max(at - current_since_, std::chrono::microseconds(0));
  current_phase_ = index;
  current_since_ = at;
  return true;
}

std::chrono::microseconds Tally::phase_duration(size_t i, std::chrono::microseconds now) const {
  const auto& phase = phases_.at(i);
  if (i != current_phase_) {
    return phase.duration;
  }
  return phase.duration + std::max(now - current_since_, std::chrono::microseconds(0));
}

uint64_t Tally::failed() const {
  uint64_t http = 0;
  for (const auto& [status, n] : http_errors_) {
    http += n;
  }
  return http + refused_ + reset_ + timeout_ + other_;
}

uint64_t Tally::count(Kind kind) const {
  switch (kind) {
    case Kind::kOk:
      return ok_;
    case Kind::kHttpError:
      return failed() - refused_ - reset_ - timeout_ - other_;
    case Kind::kRefused:
      return refused_;
    case Kind::kReset:
      return reset_;
    case Kind::kTimeout:
      return timeout_;
    case Kind::kOther:
      return other_;
  }
  return 0;
}

void Tally::record(const Outcome& outcome) {
  const bool slow = outcome.mode == Mode::kSlow;
  ModeCounts& mode = by_mode_[static_cast<size_t>(outcome.mode)];
  ++mode.sent;
  Phase& phase = phases_[std::min(outcome.phase, phases_.size() - 1)];
  if (slow) {
    ++phase.slow.sent;
  }

  const auto at = std::max<int64_t>(outcome.at.count(), 0);
  const auto index = static_cast<size_t>(at / std::chrono::microseconds(interval_).count());
  if (index >= buckets_.size()) {
    buckets_.resize(index + 1);
  }
  Bucket& bucket = buckets_[index];

  switch (outcome.kind) {
    case Kind::kOk: {
      ++ok_;
      ++bucket.ok;
      ++phase.ok;
      (slow ? slow_latency_ : latency_).record(outcome.latency);
      (slow ? phase.slow_latency : phase.latency).record(outcome.latency);
      // The version comes from the server: keep a bounded copy.
      std::string version = outcome.version.substr(0, kMaxVersionLength);
      if (std::find(versions_.begin(), versions_.end(), version) == versions_.end()) {
        versions_.push_back(version);
      }
      ++bucket.versions[version];
      return;
    }
    case Kind::kHttpError:
      ++http_errors_[outcome.status];
      break;
    case Kind::kRefused:
      ++refused_;
      break;
    case Kind::kReset:
      ++reset_;
      break;
    case Kind::kTimeout:
      ++timeout_;
      break;
    case Kind::kOther:
      ++other_;
      break;
  }
  ++mode.failed;
  ++bucket.failed;
  ++phase.failed;
  if (slow) {
    ++phase.slow.failed;
  }
}

}  // namespace tranche::loadgen
