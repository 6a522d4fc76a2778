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

double seconds(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1e6; }

double per_second(uint64_t n, std::chrono::microseconds over) {
  return over.count() > 0 ? rounded(static_cast<double>(n) / seconds(over)) : 0.0;
}

// A phase's figures, rounded as both the table and the JSON show them.
struct PhaseFigures {
  double duration_s;
  uint64_t sent;
  double rps;
  double p50_ms;
  double p99_ms;
  double max_ms;
  double slow_p99_ms;
};

PhaseFigures figures_of(const Tally& tally, size_t i, std::chrono::milliseconds elapsed) {
  const Phase& p = tally.phases()[i];
  const auto duration = tally.phase_duration(i, elapsed);
  return {
      .duration_s = rounded(seconds(duration)),
      .sent = p.ok + p.failed,
      .rps = per_second(p.ok + p.failed, duration),
      .p50_ms = rounded(ms(p.latency.quantile(0.50))),
      .p99_ms = rounded(ms(p.latency.quantile(0.99))),
      .max_ms = rounded(ms(p.latency.max())),
      .slow_p99_ms = rounded(ms(p.slow_latency.quantile(0.99))),
  };
}

}  // namespace

std::string format_table(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed) {
  std::string out;
  auto line = [&out](std::string_view name, const std::string& value) {
    out += fmt::format("  {:<22}{:>12}\n", name, value);
  };
  out += fmt::format(
      "tranche-loadgen: {} for {:.1f}s ({} keep-alive connections at {:g}/s each, {:g}/s on new "
      "connections",
      url_of(opts), static_cast<double>(elapsed.count()) / 1000.0, opts.connections, opts.keep_alive_rate,
      opts.new_connection_rate);
  if (opts.slow_rate > 0) {
    out += fmt::format(", {:g}/s to {}", opts.slow_rate, opts.slow_path);
  }
  out += ")\n";
  line("requests sent", std::to_string(tally.sent()));
  line("requests/s", fmt::format("{:.1f}", per_second(tally.sent(), elapsed)));
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
  const auto& slow = tally.by_mode(Mode::kSlow);
  if (opts.slow_rate > 0) {
    line("slow sent/failed", fmt::format("{}/{}", slow.sent, slow.failed));
  }
  const char* const latency_of = opts.slow_rate > 0 ? "latency (not slow)" : "latency";
  line(fmt::format("{} p50", latency_of), fmt::format("{:.2f} ms", rounded(ms(tally.latency().quantile(0.50)))));
  line(fmt::format("{} p99", latency_of), fmt::format("{:.2f} ms", rounded(ms(tally.latency().quantile(0.99)))));
  line(fmt::format("{} max", latency_of), fmt::format("{:.2f} ms", rounded(ms(tally.latency().max()))));
  if (opts.slow_rate > 0) {
    line("slow latency p50", fmt::format("{:.2f} ms", rounded(ms(tally.slow_latency().quantile(0.50)))));
    line("slow latency p99", fmt::format("{:.2f} ms", rounded(ms(tally.slow_latency().quantile(0.99)))));
    line("slow latency max", fmt::format("{:.2f} ms", rounded(ms(tally.slow_latency().max()))));
  }

  if (!opts.phase_file.empty()) {
    const bool slow_columns = opts.slow_rate > 0;
    out += fmt::format("\n  {:<20}{:>8}{:>8}{:>9}{:>8}{:>9}{:>9}{:>9}", "phase (begun in)", "time", "sent", "req/s",
                       "failed", "p50 ms", "p99 ms", "max ms");
    out += slow_columns ? fmt::format("{:>12}{:>10}\n", "slow failed", "slow p99") : "\n";
    for (size_t i = 0; i < tally.phases().size(); ++i) {
      const Phase& p = tally.phases()[i];
      const PhaseFigures f = figures_of(tally, i, elapsed);
      out += fmt::format("  {:<20}{:>7.1f}s{:>8}{:>9.1f}{:>8}{:>9.2f}{:>9.2f}{:>9.2f}", p.name, f.duration_s, f.sent,
                         f.rps, p.failed, f.p50_ms, f.p99_ms, f.max_ms);
      out += slow_columns
                 ? fmt::format("{:>12}{:>10.2f}\n", fmt::format("{}/{}", p.slow.failed, p.slow.sent), f.slow_p99_ms)
                 : "\n";
    }
  }

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
  Json phases = Json::object();
  for (size_t i = 0; i < tally.phases().size(); ++i) {
    // Flat, so that a shell script can cut one phase out with grep.
    const Phase& p = tally.phases()[i];
    const PhaseFigures f = figures_of(tally, i, elapsed);
    phases[p.name] = {
        {"duration_s", f.duration_s},
        {"sent", f.sent},
        {"ok", p.ok},
        {"failed", p.failed},
        {"rps", f.rps},
        {"p50_ms", f.p50_ms},
        {"p99_ms", f.p99_ms},
        {"max_ms", f.max_ms},
        {"slow_sent", p.slow.sent},
        {"slow_failed", p.slow.failed},
        {"slow_p99_ms", f.slow_p99_ms},
    };
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
      {"slow_rate", opts.slow_rate},
      {"slow_path", opts.slow_path},
      {"elapsed_s", rounded(static_cast<double>(elapsed.count()) / 1000.0)},
      {"sent", tally.sent()},
      {"rps", per_second(tally.sent(), elapsed)},
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
      {"slow", mode(Mode::kSlow)},
      {"slow_latency_ms",
       {{"p50", rounded(ms(tally.slow_latency().quantile(0.50)))},
        {"p99", rounded(ms(tally.slow_latency().quantile(0.99)))},
        {"max", rounded(ms(tally.slow_latency().max()))}}},
      {"versions", std::move(versions)},
      {"buckets", std::move(buckets)},
      {"phases", std::move(phases)},
  };
}

}  // namespace tranche::loadgen
