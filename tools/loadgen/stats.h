#pragma once
// What tranche-loadgen counts: the outcome of every request, latency
// histograms, per time bucket the share of responses by the `version` the
// sample workload reports, and per phase (named by --phase-file) the counts
// and latencies of the requests that began in it. Pure accounting, no I/O: the networking in
// loadgen.cc feeds it, report.cc prints it, the unit tests drive it directly.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tranche::loadgen {

// How a request was sent: on one of the long-lived keep-alive connections,
// alone on a connection opened for it, or to --slow-path on a connection
// opened for it. Slow requests have latencies of their own (a fixed delay
// of the server's), so they are kept out of the other requests' histogram.
enum class Mode { kKeepAlive, kNewConnection, kSlow };

enum class Kind {
  kOk,         // a 2xx answer
  kHttpError,  // any other answer; Outcome::status says which
  kRefused,    // the connect was refused
  kReset,      // the connection was reset or closed before a whole answer
  kTimeout,    // no whole answer within --timeout
  kOther,      // anything else (unparsable answer, ...)
};

struct Outcome {
  Mode mode = Mode::kKeepAlive;
  Kind kind = Kind::kOk;
  int status = 0;                        // the HTTP status when there was an answer
  std::chrono::microseconds at{0};       // when the request ended, since the start
  std::chrono::microseconds latency{0};  // from the first byte sent (or connect) to the answer
  std::string version;                   // `version` of a 2xx JSON body, empty when absent
  size_t phase = 0;                      // Tally::current_phase() when the request began
};

// Latencies in microseconds with bounded memory and a relative error under
// 1/32: values below 64 are kept exactly, larger ones in 32 sub-buckets per
// power of two.
class LatencyHistogram {
 public:
  void record(std::chrono::microseconds latency);
  uint64_t count() const { return count_; }
  std::chrono::microseconds max() const { return std::chrono::microseconds(max_); }
  // The nearest-rank q-quantile (0 < q <= 1): the smallest recorded bucket
  // holding at least ceil(q * count) values, as its upper bound capped by the
  // maximum. Zero when nothing was recorded.
  std::chrono::microseconds quantile(double q) const;

 private:
  static size_t index_of(uint64_t us);
  static uint64_t upper_bound_of(size_t index);

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

struct ModeCounts {
  uint64_t sent = 0;
  uint64_t failed = 0;
};

inline constexpr size_t kMaxPhases = 16;

// The requests that began while one phase was current (a phase that comes
// back, such as a steady stretch before and after a change, adds up).
struct Phase {
  std::string name;
  std::chrono::microseconds duration{0};  // time it was current, up to the last switch away from it
  uint64_t ok = 0;
  uint64_t failed = 0;
  ModeCounts slow;
  LatencyHistogram latency;       // ok answers to keep-alive and new-connection requests
  LatencyHistogram slow_latency;  // ok answers to slow requests
};

struct Bucket {
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> versions;  // of the ok answers
};

// Every outcome of a run. A request counts as sent once it has an outcome, so
// sent == ok + failed at any time.
class Tally {
 public:
  // `first_phase`: the phase current from the start.
  explicit Tally(std::chrono::milliseconds interval, std::string first_phase = "run");

  void record(const Outcome& outcome);

  // Makes `name` the current phase from `at` (since the start) on, a new
  // one or one seen before. False, and nothing changes, when it would be
  // phase number kMaxPhases + 1.
  bool enter_phase(std::string_view name, std::chrono::microseconds at);
  size_t current_phase() const { return current_phase_; }
  // In the order first entered.
  const std::vector<Phase>& phases() const { return phases_; }
  // Phase i's time as the current phase, the running stretch up to `now`
  // included.
  std::chrono::microseconds phase_duration(size_t i, std::chrono::microseconds now) const;

  uint64_t sent() const { return ok_ + failed(); }
  uint64_t ok() const { return ok_; }
  uint64_t failed() const;
  uint64_t count(Kind kind) const;  // kOk and kHttpError included
  const std::map<int, uint64_t>& http_errors() const { return http_errors_; }
  const ModeCounts& by_mode(Mode mode) const { return by_mode_[static_cast<size_t>(mode)]; }
  // Of the ok answers to keep-alive and new-connection requests.
  const LatencyHistogram& latency() const { return latency_; }
  const LatencyHistogram& slow_latency() const { return slow_latency_; }  // of the ok slow answers
  std::chrono::milliseconds interval() const { return interval_; }
  // Bucket i covers [i * interval, (i + 1) * interval) after the start; the
  // last one is the bucket of the last outcome.
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // Every version seen, in the order first seen (the order of the columns).
  const std::vector<std::string>& versions() const { return versions_; }

 private:
  std::chrono::milliseconds interval_;
  uint64_t ok_ = 0;
  uint64_t refused_ = 0;
  uint64_t reset_ = 0;
  uint64_t timeout_ = 0;
  uint64_t other_ = 0;
  std::map<int, uint64_t> http_errors_;
  std::array<ModeCounts, 3> by_mode_;  // indexed by Mode
  LatencyHistogram latency_;
  LatencyHistogram slow_latency_;
  std::vector<Phase> phases_;
  size_t current_phase_ = 0;
  std::chrono::microseconds current_since_{0};
  std::vector<Bucket> buckets_;
  std::vector<std::string> versions_;
};

}  // namespace tranche::loadgen
