#pragma once
// What tranche-loadgen counts: the outcome of every request, a latency
// histogram, and per time bucket the share of responses by the `version` the
// sample workload reports. Pure accounting, no I/O: the networking in
// loadgen.cc feeds it, report.cc prints it, the unit tests drive it directly.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tranche::loadgen {

// How a request was sent: on one of the long-lived keep-alive connections,
// or alone on a connection opened for it.
enum class Mode { kKeepAlive, kNewConnection };

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

struct Bucket {
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> versions;  // of the ok answers
};

// Every outcome of a run. A request counts as sent once it has an outcome, so
// sent == ok + failed at any time.
class Tally {
 public:
  explicit Tally(std::chrono::milliseconds interval);

  void record(const Outcome& outcome);

  uint64_t sent() const { return ok_ + failed(); }
  uint64_t ok() const { return ok_; }
  uint64_t failed() const;
  uint64_t count(Kind kind) const;  // kOk and kHttpError included
  const std::map<int, uint64_t>& http_errors() const { return http_errors_; }
  const ModeCounts& by_mode(Mode mode) const { return mode == Mode::kKeepAlive ? keep_alive_ : new_connection_; }
  const LatencyHistogram& latency() const { return latency_; }  // of the ok answers
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
  ModeCounts keep_alive_;
  ModeCounts new_connection_;
  LatencyHistogram latency_;
  std::vector<Bucket> buckets_;
  std::vector<std::string> versions_;
};

}  // namespace tranche::loadgen
