#include "report.h"

#include <cmath>

#include <fmt/format.h>

namespace tranche::loadgen {

namespace {

double ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

// Two decimals are plenty, and the table and the JSON line then agree.
double rounded(double v) { return std::round(v * 100.0) / 100.0; }

std::string url_of(const Options& opts) { return "http://" + opts.target.host_header + opts.target.path; }

std::string label(const std::string& version) { return version.empty() ? "(none)" : version; }

}  // namespace

std::string format_table(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed) {
  std::string out;
  auto line = [&out](std::string_view name, const std::string& value) {
    out += fmt::format("  {:<22}{:>12}\n", name, value);
  };
  out += fmt::format(
      "tranche-loadgen: {} for {:.1f}s ({} keep-alive connections at {:g}/s each, {:g}/s on new "
      "connections)\n",
      url_of(opts), static_cast<double>(elapsed.count()) / 1000.0, opts.connections, opts.keep_alive_rate,
      opts.new_connection_rate);
  line("requests sent", std::to_string(tally.sent()));
  line("ok (2xx)", std::to_string(tally.ok()));
  line("failed", std::to_string(tally.failed()));
  for (const auto& [status, n] : tally.http_errors()) {
    line(fmt::format("  HTTP {}", status), std::to_string(n));
  }
  line("  connect refused", std::to_string(tally.count(Kind::kRefused)));
  line("  reset / closed", std::to_string(tally.count(Kind::kReset)));
  line("  timeout", std::to_string(tally.count(Kind::kTimeout)));
  line("  other", std::to_string(tally.count(Kind::kOther)));
  const auto& ka = tally.by_mode(Mode::kKeepAlive);
  const auto& fresh = tally.by_mode(Mode::kNewConnection);
  line("keep-alive sent/failed", fmt::format("{}/{}", ka.sent, ka.failed));
  line("new-conn sent/failed", fmt::format("{}/{}", fresh.sent, fresh.failed));
  line("latency p50", fmt::format("{:.2f} ms", rounded(ms(tally.latency().quantile(0.50)))));
  line("latency p99", fmt::format("{:.2f} ms", rounded(ms(tally.latency().quantile(0.99)))));
  line("latency max", fmt::format("{:.2f} ms", rounded(ms(tally.latency().max()))));

  out += fmt::format("\n  {:>7}  {:>6}  {:>6}  share of ok responses by version\n", "time", "ok", "failed");
  const double width_s = static_cast<double>(tally.interval().count()) / 1000.0;
  for (size_t i = 0; i < tally.buckets().size(); ++i) {
    const Bucket& b = tally.buckets()[i];
    std::string shares;
    for (const auto& version : tally.versions()) {
      auto it = b.versions.find(version);
      if (it == b.versions.end() || b.ok == 0) {
        continue;
      }
      shares += fmt::format("  {} {:.0f}%", label(version),
                            100.0 * static_cast<double>(it->second) / static_cast<double>(b.ok));
    }
    out += fmt::format("  {:>6.1f}s  {:>6}  {:>6}{}\n", static_cast<double>(i) * width_s, b.ok, b.failed, shares);
  }
  return out;
}

nlohmann::ordered_json to_json(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed) {
  using Json = nlohmann::ordered_json;
  Json http = Json::object();
  for (const auto& [status, n] : tally.http_errors()) {
    http[std::to_string(status)] = n;
  }
  auto mode = [&](Mode m) {
    const auto& c = tally.by_mode(m);
    return Json{{"sent", c.sent}, {"failed", c.failed}};
  };
  Json versions = Json::object();
  for (const auto& version : tally.versions()) {
    uint64_t n = 0;
    for (const auto& b : tally.buckets()) {
      if (auto it = b.versions.find(version); it != b.versions.end()) {
        n += it->second;
      }
    }
    versions[version] = n;
  }
  Json buckets = Json::array();
  const double width_s = static_cast<double>(tally.interval().count()) / 1000.0;
  for (size_t i = 0; i < tally.buckets().size(); ++i) {
    const Bucket& b = tally.buckets()[i];
    Json v = Json::object();
    for (const auto& [version, n] : b.versions) {
      v[version] = n;
    }
    buckets.push_back({{"t_s", rounded(static_cast<double>(i) * width_s)},
                       {"ok", b.ok},
                       {"failed", b.failed},
                       {"versions", std::move(v)}});
  }
  return Json{
      {"bench", "loadgen"},
      {"url", url_of(opts)},
      {"connections", opts.connections},
      {"keep_alive_rate", opts.keep_alive_rate},
      {"new_connection_rate", opts.new_connection_rate},
      {"elapsed_s", rounded(static_cast<double>(elapsed.count()) / 1000.0)},
      {"sent", tally.sent()},
      {"ok", tally.ok()},
      {"failed", tally.failed()},
      {"failures",
       {{"http", std::move(http)},
        {"refused", tally.count(Kind::kRefused)},
        {"reset", tally.count(Kind::kReset)},
        {"timeout", tally.count(Kind::kTimeout)},
        {"other", tally.count(Kind::kOther)}}},
      {"latency_ms",
       {{"p50", rounded(ms(tally.latency().quantile(0.50)))},
        {"p99", rounded(ms(tally.latency().quantile(0.99)))},
        {"max", rounded(ms(tally.latency().max()))}}},
      {"keep_alive", mode(Mode::kKeepAlive)},
      {"new_connection", mode(Mode::kNewConnection)},
      {"versions", std::move(versions)},
      {"buckets", std::move(buckets)},
  };
}

}  // namespace tranche::loadgen
