#pragma once
// Prometheus text exposition of the controller's own figures: requests by
// route and code with latency histograms, store commit latency, events
// published, and counters kept elsewhere (the fleet's rejected agent
// messages), read when rendering. Thread-safe; cheap enough for every request.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace tranche::api {

class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  void observe(double seconds);
  // Appends `name_bucket{labels,le=...}`, `_sum`, `_count` lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<uint64_t, kBounds.size()> buckets_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The `method` label of a request: its method when it is one of GET, POST,
// PUT, DELETE, PATCH, HEAD and OPTIONS (case-sensitive, as HTTP methods
// are), else "other". Any token is a method to the HTTP parser, so the raw
// one would let every client add series without bound.
std::string_view method_label(std::string_view method);

class Metrics {
 public:
  // `method` is the request's raw method; it is labelled by method_label().
  void record_request(const std::string& method, const std::string& route, int status,
                      std::chrono::nanoseconds latency);
  void record_commit(std::chrono::nanoseconds latency, bool ok);
  void record_events_published(uint64_t count);
  // A counter kept by someone else, rendered as `name` with its HELP line;
  // `read` is called under the metrics' lock and must not block. A second
  // one of the same name replaces the first.
  void add_counter(std::string name, std::string help, std::function<uint64_t()> read);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Histogram> request_latency_;
  Histogram commit_latency_;
  uint64_t commit_failures_ = 0;
  uint64_t events_published_ = 0;
  struct ExternalCounter {
    std::string help;
    std::function<uint64_t()> read;
  };
  std::map<std::string, ExternalCounter> counters_;  // by name
};

}  // namespace tranche::api
