// One simulated host of tranche-agent-simulator and the io thread it lives
// on: SimHost speaks the agent protocol over one WebSocket (connect, hello,
// heartbeats, commands, reconnects, --kill-hosts) and holds the members the
// controller placed on it; a Shard is one io_context, its thread's hosts and
// the Counters they add to, which the report sums over all shards. Its
// methods are in simulated_host.cc (the connection) and
// simulated_host_commands.cc (what it does with commands).

#pragma once

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json_fwd.hpp>

#include "command_reader.h"
#include "due_work.h"
#include "protocol/messages.h"

namespace tranche::sim {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Options;

constexpr size_t kLagBuckets = 10001;  // 1 ms buckets up to 10 s, the last one is "more"

// One set per io thread. Atomics (relaxed) only because the progress line
// reads them from the main thread while the shard runs.
struct Counters {
  std::atomic<int64_t> connected{0};
  std::atomic<uint64_t> welcomes{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> bind_failures{0};  // --source-addresses
  std::atomic<uint64_t> disconnects{0};
  std::atomic<uint64_t> refused{0};  // the controller sent "error" instead of welcome
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> member_reports{0};
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> redeliveries{0};
  std::atomic<uint64_t> starts{0};
  std::atomic<uint64_t> stops{0};
  std::atomic<uint64_t> logs{0};
  std::atomic<uint64_t> updates{0};            // update commands started (new ids)
  std::atomic<uint64_t> updates_done{0};       // ... whose result went out
  std::atomic<uint64_t> update_duplicates{0};  // a known update id again: not started again
  std::atomic<uint64_t> updates_refused{0};    // member unknown or already updating
  std::atomic<uint64_t> healthy_events{0};
  std::atomic<uint64_t> maintenances{0};            // maintenance commands started (new ids)
  std::atomic<uint64_t> maintenances_done{0};       // ... resumed, result and `resumed` sent
  std::atomic<uint64_t> maintenance_duplicates{0};  // a known maintenance id again
  std::atomic<uint64_t> maintenances_refused{0};    // member unknown or not Running
  std::atomic<uint64_t> killed{0};                  // hosts killed by --kill-hosts
  std::atomic<uint64_t> unknown_commands{0};
  std::atomic<uint64_t> results_sent{0};
  std::atomic<uint64_t> results_acked{0};
  std::atomic<uint64_t> messages_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<int64_t> members{0};
  std::atomic<int64_t> max_lag_ms{0};
  std::atomic<int64_t> max_update_lag_ms{0};
  // How late each heartbeat left against its schedule, and how much longer
  // than --update-time each update took: the simulator's own saturation.
  // Written only by the shard's thread, read after it ended.
  std::array<uint64_t, kLagBuckets> lag_ms{};
  std::array<uint64_t, kLagBuckets> update_lag_ms{};
};

struct Shard;

struct Conn;  // simulated_host.cc

struct SimMember {
  int64_t revision = 0;
  std::string state;  // Starting (during --start-delay), Running or Updating
  int64_t pid = 0;
  std::map<std::string, int> ports;
  bool has_health = false;  // the spec declares a check: the agent says "healthy" once it passes
  std::string update_id;    // the update in progress
  // The last update done and its result: a redelivery gets the same answer
  // (the real agent keeps it in its command book).
  std::string done_update_id;
  std::string done_update_result;
  std::string maintenance_id;  // the maintenance restart in progress, or the last one
};

// When this host's maintenance commands arrived (wall clock, Unix ms), for
// quality.md P7: read by the main thread for the stats file while the
// shard's thread writes them.
struct MaintenanceArrivals {
  std::atomic<int64_t> first_ms{0};
  std::atomic<int64_t> last_ms{0};
  std::atomic<int64_t> count{0};
};

// Now, wall clock, Unix ms.
int64_t wall_ms();

class SimHost {
 public:
  SimHost(Shard& shard, int index);
  void start(Clock::time_point first_connect);
  void stop();
  // quality.md P3: dies abruptly and never reconnects (--kill-mode).
  void kill();
  const MaintenanceArrivals& maintenance_arrivals() const { return arrivals_; }

 private:
  asio::awaitable<void> run(Clock::time_point first_connect);
  asio::awaitable<bool> session();
  void bind_source(tcp::socket& socket, boost::system::error_code& ec) const;
  asio::awaitable<void> heartbeat_loop(std::shared_ptr<Conn> conn);
  asio::awaitable<void> drain(std::shared_ptr<Conn> conn);
  // What DueWork runs once --start-delay, --update-time, --maintenance-time passed.
  void finish_start(const std::string& command_id, const std::string& member);
  void finish_update(const std::string& command_id, const std::string& member, const protocol::StartSpec& spec,
                     int64_t arrived_ms, Clock::time_point due);
  void finish_maintenance(const std::string& command_id, const std::string& member);
  void on_maintenance(const protocol::Command& command);
  protocol::Hello hello() const;
  void send(std::string text);
  void on_frame(const std::string& text);
  void on_message(const std::string& type, const nlohmann::json& body);
  void on_command(const protocol::Command& command);
  void on_ack(const std::string& id);
  void on_update(const protocol::Command& command);
  void send_healthy(const std::string& member);
  std::map<std::string, int> fake_ports(const std::vector<std::string>& names);
  std::string complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data);
  void close_connection(const std::shared_ptr<Conn>& conn);
  Clock::time_point next_heartbeat(Clock::time_point after) const;

  Shard& shard_;
  int index_;
  std::string hostname_;
  asio::steady_timer wait_timer_;  // initial pacing and reconnect backoff
  std::shared_ptr<Conn> conn_;
  std::string host_id_;
  std::string host_token_;
  milliseconds heartbeat_interval_{2000};
  bool batching_ = false;  // protocol 3 agreed: several messages to a frame
  uint64_t heartbeat_seq_ = 0;
  uint64_t sessions_ = 0;
  std::map<std::string, SimMember> members_;
  std::map<std::string, std::string> unacked_results_;  // command id -> result text, replayed on reconnect
  bool stopping_ = false;
  bool killed_ = false;  // sends and answers nothing any more
  MaintenanceArrivals arrivals_;
};

struct Shard {
  Shard(const Options& options, tcp::endpoint endpoint, Clock::time_point epoch)
      : options(options), endpoint(endpoint), epoch(epoch) {}
  asio::io_context io{1};
  DueWork due{io};  // the hosts' delayed starts, updates and maintenance restarts
  const Options& options;
  tcp::endpoint endpoint;
  Clock::time_point epoch;  // heartbeat phases are relative to this
  Counters counters;
  CommandReader commands;  // the shard's hosts' commands, each distinct spec decoded once
  // --update-trace: {command arrived, result left} per update, Unix ms.
  // Written only by the shard's thread, read after it ended.
  std::vector<std::pair<int64_t, int64_t>> update_trace;
  int64_t next_pid = 100000;
  int next_port = 0;
  std::mt19937 rng{std::random_device{}()};
  std::vector<std::unique_ptr<SimHost>> hosts;  // destroyed before io
};

}  // namespace tranche::sim
