// The simulator's figures: Totals, the sum of every shard's Counters (for
// the progress line, the stats file and the end), the stats file a driver
// script reads while the simulator runs, and the final report, a table and
// one JSON line {"bench":"agent_simulator", ...} on stdout.

#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tranche::sim {

struct Options;
struct Shard;

struct Totals {
  int64_t connected = 0;
  uint64_t welcomes = 0, reconnects = 0, connect_failures = 0, disconnects = 0, refused = 0;
  uint64_t heartbeats = 0, member_reports = 0, commands = 0, redeliveries = 0, starts = 0, stops = 0, logs = 0,
           unknown = 0, results_sent = 0, results_acked = 0, messages_in = 0, bytes_in = 0, bytes_out = 0;
  uint64_t updates = 0, updates_done = 0, update_duplicates = 0, updates_refused = 0, healthy_events = 0;
  uint64_t maintenances = 0, maintenances_done = 0, maintenance_duplicates = 0, maintenances_refused = 0, killed = 0;
  int64_t members = 0, max_lag_ms = 0, max_update_lag_ms = 0;
};

// Every shard's counters added up, the maxima the largest of them.
Totals sum(const std::vector<std::unique_ptr<Shard>>& shards);

// The running totals for a driver script that wants rates over its own
// window: written to a temporary file and renamed, so readers never see half.
// With maintenance commands, also when each host got its first and last one
// (Unix ms): `maintenance_hosts` is [[first, last, count], ...] of the hosts
// that got any.
void write_stats(const std::string& path, const std::vector<std::unique_ptr<Shard>>& shards, const Totals& t,
                 double seconds);

// --update-trace: one line "ARRIVED_MS RESULT_MS" per in-place update, in
// the order they ended, once the shards' threads have stopped.
void write_update_trace(const std::string& path, const std::vector<std::unique_ptr<Shard>>& shards);

// The end of a run: the counters' table and the JSON line, on stdout.
// all_connected_after: seconds until every host was connected, if they were;
// clean: every connection closed before the deadline.
void print_report(const Options& options, const std::vector<std::unique_ptr<Shard>>& shards, const Totals& at_end,
                  double ran_seconds, std::optional<double> all_connected_after, bool clean);

}  // namespace tranche::sim
