// How tranche-agent-simulator reports: it sums the shards' counters into
// Totals, takes the quantiles of their lag histograms, rewrites the stats
// file with the running totals, and prints the final table and JSON line
// with the machine and build they were measured on.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "simulator_report.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "lib/machine.h"
#include "simulated_host.h"
#include "simulator_options.h"

namespace tranche::sim {

namespace {

using LagHistogram = std::array<uint64_t, kLagBuckets> Counters::*;

// The q-quantile of a lag histogram (heartbeats or updates), in ms.
int64_t lag_quantile(const std::vector<std::unique_ptr<Shard>>& shards, LagHistogram histogram, double q) {
  std::vector<uint64_t> all(kLagBuckets, 0);
  uint64_t n = 0;
  for (const auto& s : shards) {
    const auto& h = s->counters.*histogram;
    for (size_t i = 0; i < kLagBuckets; ++i) {
      all[i] += h[i];
      n += h[i];
    }
  }
  if (n == 0) {
    return 0;
  }
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(n - 1));
  uint64_t seen = 0;
  for (size_t i = 0; i < kLagBuckets; ++i) {
    seen += all[i];
    if (seen > rank) {
      return static_cast<int64_t>(i);
    }
  }
  return static_cast<int64_t>(kLagBuckets - 1);
}

}  // namespace

Totals sum(const std::vector<std::unique_ptr<Shard>>& shards) {
  Totals t;
  for (const auto& s : shards) {
    const Counters& c = s->counters;
    auto get = [](const auto& a) { return a.load(std::memory_order_relaxed); };
    t.connected += get(c.connected);
    t.welcomes += get(c.welcomes);
    t.reconnects += get(c.reconnects);
    t.connect_failures += get(c.connect_failures);
    t.disconnects += get(c.disconnects);
    t.refused += get(c.refused);
    t.heartbeats += get(c.heartbeats);
    t.member_reports += get(c.member_reports);
    t.commands += get(c.commands);
    t.redeliveries += get(c.redeliveries);
    t.starts += get(c.starts);
    t.stops += get(c.stops);
    t.logs += get(c.logs);
    t.updates += get(c.updates);
    t.updates_done += get(c.updates_done);
    t.update_duplicates += get(c.update_duplicates);
    t.updates_refused += get(c.updates_refused);
    t.healthy_events += get(c.healthy_events);
    t.maintenances += get(c.maintenances);
    t.maintenances_done += get(c.maintenances_done);
    t.maintenance_duplicates += get(c.maintenance_duplicates);
    t.maintenances_refused += get(c.maintenances_refused);
    t.killed += get(c.killed);
    t.unknown += get(c.unknown_commands);
    t.results_sent += get(c.results_sent);
    t.results_acked += get(c.results_acked);
    t.messages_in += get(c.messages_in);
    t.bytes_in += get(c.bytes_in);
    t.bytes_out += get(c.bytes_out);
    t.members += get(c.members);
    t.max_lag_ms = std::max(t.max_lag_ms, get(c.max_lag_ms));
    t.max_update_lag_ms = std::max(t.max_update_lag_ms, get(c.max_update_lag_ms));
  }
  return t;
}

void write_stats(const std::string& path, const std::vector<std::unique_ptr<Shard>>& shards, const Totals& t,
                 double seconds) {
  nlohmann::ordered_json j = {{"seconds", seconds},
                              {"connected", t.connected},
                              {"welcomes", t.welcomes},
                              {"reconnects", t.reconnects},
                              {"heartbeats", t.heartbeats},
                              {"member_reports", t.member_reports},
                              {"commands", t.commands},
                              {"results_sent", t.results_sent},
                              {"updates", t.updates},
                              {"updates_done", t.updates_done},
                              {"update_duplicates", t.update_duplicates},
                              {"updates_refused", t.updates_refused},
                              {"maintenances", t.maintenances},
                              {"maintenances_done", t.maintenances_done},
                              {"maintenances_refused", t.maintenances_refused},
                              {"killed", t.killed},
                              {"members", t.members},
                              {"max_lag_ms", t.max_lag_ms}};
  if (t.maintenances + t.maintenances_refused + t.maintenance_duplicates > 0) {
    nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
    for (const auto& s : shards) {
      for (const auto& h : s->hosts) {
        const MaintenanceArrivals& a = h->maintenance_arrivals();
        const int64_t count = a.count.load(std::memory_order_relaxed);
        if (count > 0) {
          hosts.push_back(
              {a.first_ms.load(std::memory_order_relaxed), a.last_ms.load(std::memory_order_relaxed), count});
        }
      }
    }
    j["maintenance_hosts"] = std::move(hosts);
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << '\n';
  }
  std::rename(tmp.c_str(), path.c_str());
}

void write_update_trace(const std::string& path, const std::vector<std::unique_ptr<Shard>>& shards) {
  std::vector<std::pair<int64_t, int64_t>> all;
  for (const auto& s : shards) {
    all.insert(all.end(), s->update_trace.begin(), s->update_trace.end());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::ofstream out(path, std::ios::trunc);
  for (const auto& [arrived, left] : all) {
    out << arrived << ' ' << left << '\n';
  }
  if (!out.flush()) {
    std::fprintf(stderr, "simulator: cannot write the update trace to %s\n", path.c_str());
  }
}

void print_report(const Options& options, const std::vector<std::unique_ptr<Shard>>& shards, const Totals& at_end,
                  double ran_seconds, std::optional<double> all_connected_after, bool clean) {
  const double hb_rate = static_cast<double>(at_end.heartbeats) / ran_seconds;
  const int64_t lag_p50 = lag_quantile(shards, &Counters::lag_ms, 0.50);
  const int64_t lag_p99 = lag_quantile(shards, &Counters::lag_ms, 0.99);
  const int64_t update_lag_p50 = lag_quantile(shards, &Counters::update_lag_ms, 0.50);
  const int64_t update_lag_p99 = lag_quantile(shards, &Counters::update_lag_ms, 0.99);
  const std::string mach = bench::machine();
  const std::string build = bench::build_type();
  std::printf("tranche-agent-simulator (simulated agents and members; not a real agent)\n");
  std::printf("machine: %s; build: %s; server %s; %d thread(s)\n\n", mach.c_str(), build.c_str(),
              options.server.c_str(), options.threads);
  std::printf("| counter | value |\n| --- | --- |\n");
  auto row = [](const char* name, const std::string& value) { std::printf("| %s | %s |\n", name, value.c_str()); };
  auto num = [](auto v) { return std::to_string(v); };
  char buf[64];
  row("hosts simulated", num(options.hosts));
  row("members per host asked (informational)", num(options.members_per_host));
  std::snprintf(buf, sizeof buf, "%.1f", ran_seconds);
  row("ran (s)", buf);
  row("connections up at the end", num(at_end.connected));
  std::snprintf(buf, sizeof buf, "%.2f", all_connected_after.value_or(-1));
  row("all hosts connected after (s, -1: never)", buf);
  row("welcomes (sessions)", num(at_end.welcomes));
  row("reconnects", num(at_end.reconnects));
  row("connections lost", num(at_end.disconnects));
  row("connect failures", num(at_end.connect_failures));
  row("refused by the controller", num(at_end.refused));
  row("heartbeats sent", num(at_end.heartbeats));
  std::snprintf(buf, sizeof buf, "%.0f", hb_rate);
  row("heartbeats/s (average over the run)", buf);
  row("member reports in heartbeats", num(at_end.member_reports));
  row("heartbeat send lag p50 / p99 / max (ms)", num(lag_p50) + " / " + num(lag_p99) + " / " + num(at_end.max_lag_ms));
  row("commands handled", num(at_end.commands));
  row("  start / stop / update / maintenance / logs / other",
      num(at_end.starts) + " / " + num(at_end.stops) + " / " +
          num(at_end.updates + at_end.update_duplicates + at_end.updates_refused) + " / " +
          num(at_end.maintenances + at_end.maintenance_duplicates + at_end.maintenances_refused) + " / " +
          num(at_end.logs) + " / " + num(at_end.unknown));
  row("  redelivered (answered again)", num(at_end.redeliveries));
  row("update time asked (ms)", num(options.update_time.count()));
  row("updates started / done / duplicate ids / refused", num(at_end.updates) + " / " + num(at_end.updates_done) +
                                                              " / " + num(at_end.update_duplicates) + " / " +
                                                              num(at_end.updates_refused));
  row("update late against the update time p50 / p99 / max (ms)",
      num(update_lag_p50) + " / " + num(update_lag_p99) + " / " + num(at_end.max_update_lag_ms));
  row("healthy events sent", num(at_end.healthy_events));
  row("maintenance time asked (ms)", num(options.maintenance_time.count()));
  row("maintenances started / resumed / duplicate ids / refused",
      num(at_end.maintenances) + " / " + num(at_end.maintenances_done) + " / " + num(at_end.maintenance_duplicates) +
          " / " + num(at_end.maintenances_refused));
  row(("hosts killed (" + options.kill_mode + ")").c_str(), num(at_end.killed));
  row("results sent / acked", num(at_end.results_sent) + " / " + num(at_end.results_acked));
  row("members held at the end", num(at_end.members));
  row("messages received", num(at_end.messages_in));
  std::snprintf(buf, sizeof buf, "%.1f / %.1f", static_cast<double>(at_end.bytes_in) / 1048576.0,
                static_cast<double>(at_end.bytes_out) / 1048576.0);
  row("MiB received / sent", buf);
  row("closed cleanly", clean ? "yes" : "no (cut after 10 s)");
  std::printf("\n");

  const nlohmann::ordered_json all_connected =
      all_connected_after ? nlohmann::ordered_json(std::round(*all_connected_after * 100) / 100) : nullptr;
  // ordered: "bench" comes first on the line.
  nlohmann::ordered_json line = {{"bench", "agent_simulator"},
                                 {"machine", mach},
                                 {"build", build},
                                 {"hosts", options.hosts},
                                 {"members_per_host", options.members_per_host},
                                 {"threads", options.threads},
                                 {"seconds", std::round(ran_seconds * 10) / 10},
                                 {"all_connected_seconds", all_connected},
                                 {"connections_up", at_end.connected},
                                 {"welcomes", at_end.welcomes},
                                 {"reconnects", at_end.reconnects},
                                 {"disconnects", at_end.disconnects},
                                 {"connect_failures", at_end.connect_failures},
                                 {"refused", at_end.refused},
                                 {"heartbeats_sent", at_end.heartbeats},
                                 {"heartbeats_per_second", std::round(hb_rate)},
                                 {"heartbeat_lag_ms_p50", lag_p50},
                                 {"heartbeat_lag_ms_p99", lag_p99},
                                 {"heartbeat_lag_ms_max", at_end.max_lag_ms},
                                 {"commands_handled", at_end.commands},
                                 {"starts", at_end.starts},
                                 {"stops", at_end.stops},
                                 {"logs", at_end.logs},
                                 {"update_time_ms", options.update_time.count()},
                                 {"updates", at_end.updates},
                                 {"updates_done", at_end.updates_done},
                                 {"update_duplicates", at_end.update_duplicates},
                                 {"updates_refused", at_end.updates_refused},
                                 {"update_lag_ms_p50", update_lag_p50},
                                 {"update_lag_ms_p99", update_lag_p99},
                                 {"update_lag_ms_max", at_end.max_update_lag_ms},
                                 {"healthy_events", at_end.healthy_events},
                                 {"maintenance_time_ms", options.maintenance_time.count()},
                                 {"maintenances", at_end.maintenances},
                                 {"maintenances_done", at_end.maintenances_done},
                                 {"maintenance_duplicates", at_end.maintenance_duplicates},
                                 {"maintenances_refused", at_end.maintenances_refused},
                                 {"hosts_killed", at_end.killed},
                                 {"kill_mode", options.kill_mode},
                                 {"results_sent", at_end.results_sent},
                                 {"results_acked", at_end.results_acked},
                                 {"members_at_end", at_end.members},
                                 {"closed_cleanly", clean}};
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

}  // namespace tranche::sim
