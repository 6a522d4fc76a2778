#pragma once
// Prometheus text exposition of the controller's own figures: requests by
// route and code with latency histograms, store commit latency, the
// fleet's reconcile passes, events published, and counters and histograms
// kept elsewhere (the fleet's rejected agent messages, its heartbeats'
// handling time), read when rendering. Thread-safe; cheap enough for every
// request.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include "common/histogram.h"

namespace tranche::api {

// Appends `name_bucket{labels,le=...}`, `_sum`, `_count` lines.
void render_histogram(std::string& out, const Histogram& histogram, const std::string& name,
                      const std::string& labels);

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
  // One reconcile pass of the fleet (Fleet::tick), its writes included.
  void record_pass(std::chrono::nanoseconds took);
  void record_events_published(uint64_t count);
  // A counter kept by someone else, rendered as `name` with its HELP line;
  // `read` is called under the metrics' lock and must not block. A second
  // one of the same name replaces the first.
  void add_counter(std::string name, std::string help, std::function<uint64_t()> read);
  // The same for a histogram: `read` returns a copy of it as it is now.
  void add_histogram(std::string name, std::string help, std::function<Histogram()> read);
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Histogram> request_latency_;
  Histogram commit_latency_;
  Histogram pass_duration_;
  uint64_t commit_failures_ = 0;
  uint64_t events_published_ = 0;
  struct ExternalCounter {
    std::string help;
    std::function<uint64_t()> read;
  };
  std::map<std::string, ExternalCounter> counters_;  // by name
  struct ExternalHistogram {
    std::string help;
    std::function<Histogram()> read;
  };
  std::map<std::string, ExternalHistogram> histograms_;  // by name
};

}  // namespace tranche::api
