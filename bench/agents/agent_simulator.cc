#include <utility>  // before Asio: coroutine support needs it on g++ 12

// tranche-agent-simulator: simulates many agents and their members against a
// real controller (quality.md P0/P1). It is not an agent: it starts no
// processes and probes nothing. Each simulated host is one real WebSocket to
// /agent/v1/connect speaking the agent protocol through tranche_protocol:
// hello, welcome, a heartbeat every heartbeatIntervalSeconds listing the
// members the controller told it to start, ack at once for every command,
// results for start/stop/logs/update/maintenance (an in-place update takes
// exactly --update-time, a maintenance restart --maintenance-time). Members
// come from the controller's placement; the simulator only serves what it is
// told. --kill-hosts K kills K hosts abruptly (quality.md P3).
//
//   tranche-agent-simulator --server http://127.0.0.1:PORT --join-token T --hosts N
//       [--members-per-host M] [--duration 60s] [--connect-rate 500/s] [--threads 2]
//       [--start-delay 0ms] [--update-time 0ms] [--maintenance-time 0ms] [--slots 10000]
//       [--progress 10s] [--stats-file PATH] [--update-trace PATH] [--source-addresses K]
//       [--kill-hosts K [--kill-after D] [--kill-mode close|silent] [--kill-file PATH]]
//
// At the end it closes every connection and prints its own counters as a
// table and one JSON line {"bench":"agent_simulator", ...}.
//
// This file runs it: the shards' io threads, the pacing of the hosts, the
// kills, the progress line, the signals and the clean close. The command
// line is in simulator_options, a host in simulated_host and
// simulated_host_commands, the figures in simulator_report.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "simulated_host.h"
#include "simulator_options.h"
#include "simulator_report.h"

// The simulator's parts (options, hosts, report) are in tranche::sim.
using namespace tranche::sim;
using namespace std::chrono_literals;

namespace {

std::atomic<bool> g_interrupted{false};

std::atomic<bool> g_kill_now{false};

extern "C" void on_signal(int) {
  // Only the flag here; the main loop checks it a few times a second.
  g_interrupted.store(true);
}

extern "C" void on_kill_signal(int) { g_kill_now.store(true); }

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (!parsed) {
    return 2;
  }
  const Options options = *parsed;

  tcp::endpoint endpoint;
  try {
    asio::io_context resolve_io;
    tcp::resolver resolver(resolve_io);
    auto results = resolver.resolve(options.host, options.port);
    if (results.empty()) {
      throw std::runtime_error("no address");
    }
    endpoint = *results.begin();
    if (options.source_addresses > 0 && !(endpoint.address().is_v4() && endpoint.address().is_loopback())) {
      throw std::runtime_error("--source-addresses needs a server on an IPv4 loopback address");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tranche-agent-simulator: cannot resolve %s: %s\n", options.server.c_str(), e.what());
    return 1;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGUSR1, on_kill_signal);
  if (!options.kill_file.empty()) {
    std::ofstream(options.kill_file, std::ios::trunc);
  }

  const Clock::time_point started = Clock::now();
  std::vector<std::unique_ptr<Shard>> shards;
  for (int t = 0; t < options.threads; ++t) {
    shards.push_back(std::make_unique<Shard>(options, endpoint, started));
  }
  // Host i lives on shard i % threads and first connects at i / rate.
  for (int i = 0; i < options.hosts; ++i) {
    Shard& s = *shards[static_cast<size_t>(i % options.threads)];
    s.hosts.push_back(std::make_unique<SimHost>(s, i));
    const auto at = started + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(static_cast<double>(i) / options.connect_rate));
    s.hosts.back()->start(at);
  }
  // --kill-hosts: round r kills hosts r, r + stride, r + 2 x stride, ...:
  // spread over the index range, so over the heartbeat phases too, and
  // never one killed before.
  const int kill_stride = options.kill_hosts > 0 ? options.hosts / options.kill_hosts : 0;
  int kill_round = 0;
  auto kill_next = [&] {
    if (kill_round >= kill_stride) {
      std::fprintf(stderr, "simulator: no %d hosts left to kill\n", options.kill_hosts);
      return;
    }
    std::fprintf(stderr, "simulator: killing %d host(s) (%s), round %d\n", options.kill_hosts,
                 options.kill_mode.c_str(), kill_round);
    std::vector<std::vector<SimHost*>> victims(shards.size());
    for (int k = 0; k < options.kill_hosts; ++k) {
      const int i = k * kill_stride + kill_round;
      const size_t shard = static_cast<size_t>(i % options.threads);
      victims[shard].push_back(shards[shard]->hosts[static_cast<size_t>(i / options.threads)].get());
    }
    for (size_t t = 0; t < shards.size(); ++t) {
      asio::post(shards[t]->io, [hosts = std::move(victims[t])] {
        for (SimHost* h : hosts) {
          h->kill();
        }
      });
    }
    ++kill_round;
  };
  std::fprintf(stderr, "simulator: %d hosts on %d thread(s), connecting at %.0f/s to %s for %.1f s\n", options.hosts,
               options.threads, options.connect_rate, options.server.c_str(),
               static_cast<double>(options.duration.count()) / 1000.0);

  std::vector<std::thread> threads;
  for (auto& s : shards) {
    threads.emplace_back([&io = s->io] {
      try {
        io.run();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "simulator: io thread: %s\n", e.what());
      }
    });
  }

  // Run for --duration (or until SIGINT/SIGTERM), with a progress line now and then.
  const Clock::time_point end = started + options.duration;
  Clock::time_point next_progress = started + (options.progress.count() > 0 ? options.progress : options.duration);
  std::optional<double> all_connected_after;
  Totals last{};
  Clock::time_point last_at = started;
  Clock::time_point next_stats = started;
  bool killed_after = false;
  while (!g_interrupted.load() && Clock::now() < end) {
    std::this_thread::sleep_for(10ms);
    const auto now = Clock::now();
    if (options.kill_hosts > 0 && g_kill_now.exchange(false)) {
      kill_next();
    }
    if (options.kill_hosts > 0 && options.kill_after && !killed_after && now >= started + *options.kill_after) {
      killed_after = true;
      kill_next();
    }
    if (!all_connected_after) {
      if (sum(shards).connected >= options.hosts) {
        all_connected_after = std::chrono::duration<double>(now - started).count();
        std::fprintf(stderr, "simulator: all %d hosts connected after %.2f s\n", options.hosts, *all_connected_after);
      }
    }
    if (!options.stats_file.empty() && now >= next_stats) {
      next_stats += 1s;
      write_stats(options.stats_file, shards, sum(shards), std::chrono::duration<double>(now - started).count());
    }
    if (options.progress.count() > 0 && now >= next_progress) {
      next_progress += options.progress;
      const Totals t = sum(shards);
      const double dt = std::chrono::duration<double>(now - last_at).count();
      std::fprintf(stderr,
                   "simulator: t=%.0fs connected=%lld heartbeats/s=%.0f commands=%llu members=%lld updates=%llu/%llu "
                   "reconnects=%llu max_lag_ms=%lld\n",
                   std::chrono::duration<double>(now - started).count(), static_cast<long long>(t.connected),
                   static_cast<double>(t.heartbeats - last.heartbeats) / dt,
                   static_cast<unsigned long long>(t.commands), static_cast<long long>(t.members),
                   static_cast<unsigned long long>(t.updates_done), static_cast<unsigned long long>(t.updates),
                   static_cast<unsigned long long>(t.reconnects), static_cast<long long>(t.max_lag_ms));
      last = t;
      last_at = now;
    }
  }
  const double ran_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const Totals at_end = sum(shards);

  // Close every connection cleanly, then let the io threads run out of work;
  // after 10 s whatever is left is cut.
  for (auto& s : shards) {
    asio::post(s->io, [&hosts = s->hosts] {
      for (auto& h : hosts) {
        h->stop();
      }
    });
  }
  const auto close_deadline = Clock::now() + 10s;
  bool clean = false;
  while (Clock::now() < close_deadline) {
    int64_t open = 0;
    for (auto& s : shards) {
      open += s->counters.connected.load(std::memory_order_relaxed);
    }
    if (open == 0 && std::all_of(shards.begin(), shards.end(), [](const auto& s) { return s->io.stopped(); })) {
      clean = true;
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  for (auto& s : shards) {
    s->io.stop();
  }
  for (auto& t : threads) {
    t.join();
  }

  if (!options.update_trace.empty()) {
    write_update_trace(options.update_trace, shards);
  }
  print_report(options, shards, at_end, ran_seconds, all_connected_after, clean);
  return 0;
}
