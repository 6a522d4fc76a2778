#include "api/metrics.h"

#include <fmt/format.h>

namespace tranche::api {

void render_histogram(std::string& out, const Histogram& histogram, const std::string& name,
                      const std::string& labels) {
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, Histogram::kBounds[i],
                       histogram.at_most(i));
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, histogram.count());
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, histogram.sum(), name, braces,
                     histogram.count());
}

std::string_view method_label(std::string_view method) {
  static constexpr std::array<std::string_view, 7> kKnown = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
  for (const std::string_view known : kKnown) {
    if (method == known) {
      return known;
    }
  }
  return "other";
}

void Metrics::record_request(const std::string& method, const std::string& route, int status,
                             std::chrono::nanoseconds latency) {
  const std::string label(method_label(method));
  std::lock_guard lock(mutex_);
  ++requests_[{label, route, status}];
  request_latency_[{label, route}].observe(std::chrono::duration<double>(latency).count());
}

void Metrics::record_commit(std::chrono::nanoseconds latency, bool ok) {
  std::lock_guard lock(mutex_);
  commit_latency_.observe(std::chrono::duration<double>(latency).count());
  if (!ok) {
    ++commit_failures_;
  }
}

void Metrics::record_pass(std::chrono::nanoseconds took) {
  std::lock_guard lock(mutex_);
  pass_duration_.observe(std::chrono::duration<double>(took).count());
}

void Metrics::record_events_published(uint64_t count) {
  std::lock_guard lock(mutex_);
  events_published_ += count;
}

void Metrics::add_counter(std::string name, std::string help, std::function<uint64_t()> read) {
  std::lock_guard lock(mutex_);
  counters_[std::move(name)] = ExternalCounter{std::move(help), std::move(read)};
}

void Metrics::add_histogram(std::string name, std::string help, std::function<Histogram()> read) {
  std::lock_guard lock(mutex_);
  histograms_[std::move(name)] = ExternalHistogram{std::move(help), std::move(read)};
}

std::string Metrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP tranche_http_requests_total API requests by route and status code.\n";
  out += "# TYPE tranche_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [method, route, code] = key;
    out += fmt::format("tranche_http_requests_total{{method=\"{}\",route=\"{}\",code=\"{}\"}} {}\n", method, route,
                       code, n);
  }
  out += "# HELP tranche_http_request_duration_seconds API request latency by route.\n";
  out += "# TYPE tranche_http_request_duration_seconds histogram\n";
  for (const auto& [key, h] : request_latency_) {
    render_histogram(out, h, "tranche_http_request_duration_seconds",
                     fmt::format("method=\"{}\",route=\"{}\"", key.first, key.second));
  }
  out += "# HELP tranche_store_commit_duration_seconds Store commit latency (durable on return).\n";
  out += "# TYPE tranche_store_commit_duration_seconds histogram\n";
  render_histogram(out, commit_latency_, "tranche_store_commit_duration_seconds", "");
  out += "# HELP tranche_store_commit_failures_total Store commits that failed.\n";
  out += "# TYPE tranche_store_commit_failures_total counter\n";
  out += fmt::format("tranche_store_commit_failures_total {}\n", commit_failures_);
  out += "# HELP tranche_fleet_pass_duration_seconds Reconcile passes of the fleet, their store writes included.\n";
  out += "# TYPE tranche_fleet_pass_duration_seconds histogram\n";
  render_histogram(out, pass_duration_, "tranche_fleet_pass_duration_seconds", "");
  out += "# HELP tranche_events_published_total Events appended to the event log since start.\n";
  out += "# TYPE tranche_events_published_total counter\n";
  out += fmt::format("tranche_events_published_total {}\n", events_published_);
  for (const auto& [name, counter] : counters_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, counter.help, name, name, counter.read());
  }
  for (const auto& [name, histogram] : histograms_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, histogram.help, name);
    render_histogram(out, histogram.read(), name, "");
  }
  return out;
}

}  // namespace tranche::api
