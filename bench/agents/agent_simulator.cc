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
//       [--progress 10s] [--stats-file PATH] [--source-addresses K]
//       [--kill-hosts K [--kill-after D] [--kill-mode close|silent] [--kill-file PATH]]
//
// At the end it closes every connection and prints its own counters as a
// table and one JSON line {"bench":"agent_simulator", ...}.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "agent/reconnect_backoff.h"
#include "protocol/frames.h"
#include "protocol/messages.h"

#ifndef TRANCHE_BENCH_BUILD_TYPE
#define TRANCHE_BENCH_BUILD_TYPE "unknown"
#endif

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace protocol = tranche::protocol;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr const char* kAgentPath = "/agent/v1/connect";
constexpr size_t kLagBuckets = 10001;  // 1 ms buckets up to 10 s, the last one is "more"

// ---- options ------------------------------------------------------------------

struct Options {
  std::string server;
  std::string host;  // of the server URL
  std::string port;
  std::string join_token;
  int hosts = 0;
  int members_per_host = 0;  // informational: the controller's placement decides
  milliseconds duration = 60s;
  double connect_rate = 500;  // new connections per second
  int threads = 2;
  milliseconds start_delay = 0ms;
  milliseconds update_time = 0ms;       // how long every in-place update takes (quality.md P2's T)
  milliseconds maintenance_time = 0ms;  // how long every maintenance restart takes
  int64_t slots = 10000;
  milliseconds progress = 10s;
  std::string stats_file;  // rewritten every second with the running totals (JSON)
  // Host i connects from 127.0.0.(2 + i % K): one source address has ~28,000
  // ephemeral ports to one destination, fewer than 40,000 hosts need. 0: the
  // kernel picks the source.
  int source_addresses = 0;
  // quality.md P3: K hosts die abruptly, after --kill-after or on each
  // SIGUSR1 (K others each time), and never come back. close: the TCP connection ends without a WebSocket
  // close frame, as when the agent is SIGKILLed; silent: nothing more is sent
  // or answered on a connection left open, as when its network is cut off.
  int kill_hosts = 0;
  std::optional<milliseconds> kill_after;
  std::string kill_mode = "close";
  std::string kill_file;  // one JSON line per killed host: {host, hostId, killedAtMs}
};

// "250ms", "2s", "1.5m", "1h"; a bare number is seconds.
std::optional<milliseconds> parse_duration(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string unit = text.substr(used);
  double factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    return std::nullopt;
  }
  if (value < 0) {
    return std::nullopt;
  }
  return milliseconds(static_cast<int64_t>(value * factor));
}

// "500/s", "500", "30000/m".
std::optional<double> parse_rate(const std::string& text) {
  const size_t slash = text.find('/');
  double value = 0;
  try {
    value = std::stod(text.substr(0, slash));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  double per_second = value;
  if (slash != std::string::npos) {
    const std::string unit = text.substr(slash + 1);
    if (unit == "m") {
      per_second = value / 60;
    } else if (unit != "s") {
      return std::nullopt;
    }
  }
  return per_second > 0 ? std::optional(per_second) : std::nullopt;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

const char* kUsage =
    "usage: tranche-agent-simulator --server http://HOST:PORT (--join-token T | --join-token-file F) --hosts N\n"
    "         [--members-per-host M] [--duration 60s] [--connect-rate 500/s] [--threads 2]\n"
    "         [--start-delay 0ms] [--update-time 0ms] [--maintenance-time 0ms] [--slots 10000] [--progress 10s]\n"
    "         [--stats-file PATH] [--source-addresses K] [--kill-hosts K [--kill-after D] [--kill-mode close|silent] [--kill-file PATH]]\n"
    "Simulates N agents (one WebSocket each) and the members the controller places on them.\n"
    "With --kill-hosts, K of them die abruptly after --kill-after, or on SIGUSR1.\n";

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  auto bad = [](const std::string& message) {
    std::fprintf(stderr, "tranche-agent-simulator: %s\n%s", message.c_str(), kUsage);
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      return bad(flag + " needs a value");
    }
    const std::string value = argv[++i];
    try {
      if (flag == "--server") {
        o.server = value;
      } else if (flag == "--stats-file") {
        o.stats_file = value;
      } else if (flag == "--source-addresses") {
        o.source_addresses = std::stoi(value);
      } else if (flag == "--kill-file") {
        o.kill_file = value;
      } else if (flag == "--kill-hosts") {
        o.kill_hosts = std::stoi(value);
      } else if (flag == "--kill-mode") {
        if (value != "close" && value != "silent") return bad("--kill-mode is close or silent, got '" + value + "'");
        o.kill_mode = value;
      } else if (flag == "--kill-after") {
        auto d = parse_duration(value);
        if (!d) return bad("bad --kill-after '" + value + "' (e.g. 10s)");
        o.kill_after = *d;
      } else if (flag == "--join-token") {
        o.join_token = value;
      } else if (flag == "--join-token-file") {
        o.join_token = read_first_line(value);
      } else if (flag == "--hosts") {
        o.hosts = std::stoi(value);
      } else if (flag == "--members-per-host") {
        o.members_per_host = std::stoi(value);
      } else if (flag == "--threads") {
        o.threads = std::stoi(value);
      } else if (flag == "--slots") {
        o.slots = std::stoll(value);
      } else if (flag == "--connect-rate") {
        auto r = parse_rate(value);
        if (!r) return bad("bad --connect-rate '" + value + "' (e.g. 500/s)");
        o.connect_rate = *r;
      } else if (flag == "--duration" || flag == "--start-delay" || flag == "--update-time" ||
                 flag == "--maintenance-time" || flag == "--progress") {
        auto d = parse_duration(value);
        if (!d) return bad("bad " + flag + " '" + value + "' (e.g. 60s, 250ms)");
        (flag == "--duration"           ? o.duration
         : flag == "--start-delay"      ? o.start_delay
         : flag == "--update-time"      ? o.update_time
         : flag == "--maintenance-time" ? o.maintenance_time
                                        : o.progress) = *d;
      } else {
        return bad("unknown option " + flag);
      }
    } catch (const std::exception&) {
      return bad("bad value for " + flag + ": '" + value + "'");
    }
  }
  if (o.server.empty() || o.join_token.empty() || o.hosts <= 0) {
    return bad("--server, a join token and --hosts N (N >= 1) are required");
  }
  if (o.threads < 1 || o.members_per_host < 0 || o.slots < 1) {
    return bad("--threads and --slots must be at least 1, --members-per-host at least 0");
  }
  if (o.source_addresses < 0 || o.source_addresses > 250) {
    return bad("--source-addresses is between 0 and 250 (127.0.0.2 to 127.0.0.251)");
  }
  if (o.kill_hosts < 0 || o.kill_hosts > o.hosts) {
    return bad("--kill-hosts must be between 0 and --hosts");
  }
  const std::string scheme = "http://";
  if (!o.server.starts_with(scheme)) {
    return bad("--server must be http://HOST:PORT, got '" + o.server + "'");
  }
  std::string hostport = o.server.substr(scheme.size());
  while (!hostport.empty() && hostport.back() == '/') hostport.pop_back();
  const size_t colon = hostport.rfind(':');
  o.host = hostport.substr(0, colon);
  o.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  return o;
}

// ---- counters -----------------------------------------------------------------

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

// ---- one simulated host -------------------------------------------------------

struct Shard;

// One connection's state: its socket, what waits to be written, its timer.
struct Conn {
  explicit Conn(asio::io_context& io) : ws(io), heartbeat_timer(io) {}
  websocket::stream<beast::tcp_stream> ws;
  asio::steady_timer heartbeat_timer;
  std::deque<std::string> outbox;
  bool writing = false;
  bool closed = false;
  bool close_requested = false;
};

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

int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

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
  void bind_source(tcp::socket& socket, error_code& ec) const;
  asio::awaitable<void> heartbeat_loop(std::shared_ptr<Conn> conn);
  asio::awaitable<void> drain(std::shared_ptr<Conn> conn);
  asio::awaitable<void> delayed_start(std::string command_id, std::string member);
  asio::awaitable<void> finish_update(std::string command_id, std::string member, protocol::StartSpec spec);
  asio::awaitable<void> finish_maintenance(std::string command_id, std::string member);
  void on_maintenance(const protocol::Command& command);
  protocol::Hello hello() const;
  void send(std::string text);
  void on_frame(const std::string& text);
  void on_message(const std::string& type, const nlohmann::json& body);
  void on_command(const protocol::Command& command);
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
  const Options& options;
  tcp::endpoint endpoint;
  Clock::time_point epoch;  // heartbeat phases are relative to this
  Counters counters;
  int64_t next_pid = 100000;
  int next_port = 0;
  std::mt19937 rng{std::random_device{}()};
  std::vector<std::unique_ptr<SimHost>> hosts;  // destroyed before io
};

// The kill file is written by every shard's thread.
std::mutex g_kill_file_mu;

SimHost::SimHost(Shard& shard, int index)
    : shard_(shard), index_(index), hostname_("sim-" + std::to_string(index)), wait_timer_(shard.io) {}

void SimHost::start(Clock::time_point first_connect) { asio::co_spawn(shard_.io, run(first_connect), asio::detached); }

void SimHost::stop() {
  stopping_ = true;
  wait_timer_.cancel();
  if (conn_) {
    close_connection(conn_);
  }
}

void SimHost::kill() {
  if (killed_) {
    return;
  }
  killed_ = true;
  stopping_ = true;  // never reconnects
  wait_timer_.cancel();
  const int64_t at = wall_ms();
  if (conn_) {
    conn_->heartbeat_timer.cancel();
    conn_->outbox.clear();
    if (shard_.options.kill_mode == "close") {
      // No close frame: the controller's read ends as when the kernel closes
      // the socket of a SIGKILLed agent.
      error_code ignored;
      beast::get_lowest_layer(conn_->ws).socket().close(ignored);
    }
  }
  shard_.counters.killed.fetch_add(1, std::memory_order_relaxed);
  if (!shard_.options.kill_file.empty()) {
    const nlohmann::ordered_json line = {{"host", hostname_}, {"hostId", host_id_}, {"killedAtMs", at}};
    std::lock_guard lock(g_kill_file_mu);
    std::ofstream(shard_.options.kill_file, std::ios::app) << line.dump() << '\n';
  }
}

void SimHost::close_connection(const std::shared_ptr<Conn>& conn) {
  conn->heartbeat_timer.cancel();
  if (conn->closed || conn->close_requested) {
    return;
  }
  conn->close_requested = true;
  if (!conn->writing) {
    conn->writing = true;
    asio::co_spawn(shard_.io, drain(conn), asio::detached);  // the drain closes when its queue is empty
  }
}

asio::awaitable<void> SimHost::run(Clock::time_point first_connect) {
  error_code ec;
  wait_timer_.expires_at(first_connect);
  co_await wait_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // The agent's own policy. A refusal is not simulated: the controller
  // accepts the simulator's protocol and tokens.
  tranche::agent::ReconnectBackoff backoff;
  while (!stopping_) {
    const bool welcomed = co_await session();
    if (stopping_) {
      break;
    }
    wait_timer_.expires_after(backoff.after(welcomed, false, shard_.rng));
    co_await wait_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

protocol::Hello SimHost::hello() const {
  protocol::Hello h;
  h.host_id = host_id_;
  if (host_token_.empty()) {
    h.join_token = shard_.options.join_token;
  } else {
    h.host_token = host_token_;
  }
  h.hostname = hostname_;
  h.labels = {{"sim", "1"}, {"zone", "z" + std::to_string(index_ % 4)}};
  h.slots = shard_.options.slots;
  for (const auto& [id, m] : members_) {
    h.members.push_back({id, m.revision, m.state, m.pid});
  }
  return h;
}

// Binds the address of --source-addresses before the connect. The port is
// left to the connect (IP_BIND_ADDRESS_NO_PORT): a bind that picked it would
// reserve it for every destination, and exhaust the ports as quickly.
void SimHost::bind_source(tcp::socket& socket, error_code& ec) const {
  using BindAddressNoPort = asio::detail::socket_option::boolean<IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT>;
  const auto n = static_cast<uint32_t>(shard_.options.source_addresses);
  const asio::ip::address_v4 source((127u << 24) + 2 + static_cast<uint32_t>(index_) % n);
  socket.open(tcp::v4(), ec);
  if (!ec) {
    socket.set_option(BindAddressNoPort(true), ec);
  }
  if (!ec) {
    socket.bind(tcp::endpoint(source, 0), ec);
  }
  if (ec && shard_.counters.bind_failures.fetch_add(1, std::memory_order_relaxed) < 5) {
    std::fprintf(stderr, "simulator: %s: cannot bind %s: %s\n", hostname_.c_str(), source.to_string().c_str(),
                 ec.message().c_str());
  }
}

// One connection, from TCP connect to loss. True when it got as far as welcome.
asio::awaitable<bool> SimHost::session() {
  Counters& c = shard_.counters;
  auto conn = std::make_shared<Conn>(shard_.io);
  auto& ws = conn->ws;
  error_code ec;
  auto& stream = beast::get_lowest_layer(ws);
  stream.expires_after(10s);
  if (shard_.options.source_addresses > 0) {
    bind_source(stream.socket(), ec);
  }
  if (!ec) {
    co_await stream.async_connect(shard_.endpoint, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    stream.expires_never();
    stream.socket().set_option(tcp::no_delay(true), ec);
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws.read_message_max(16 * 1024 * 1024);
    co_await ws.async_handshake(shard_.options.host + ":" + shard_.options.port, kAgentPath,
                                asio::redirect_error(asio::use_awaitable, ec));
  }
  std::string hello_text;
  if (!ec) {
    hello_text = protocol::to_json(hello()).dump();
    ws.text(true);
    co_await ws.async_write(asio::buffer(hello_text), asio::redirect_error(asio::use_awaitable, ec));
  }
  beast::flat_buffer buffer;
  if (!ec) {
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
  }
  bool welcomed = false;
  if (!ec) {
    c.bytes_out.fetch_add(hello_text.size(), std::memory_order_relaxed);
    auto envelope = protocol::parse_envelope(beast::buffers_to_string(buffer.data()));
    if (envelope && envelope->first == "welcome") {
      if (auto w = protocol::parse_welcome(envelope->second)) {
        host_id_ = w->host_id;
        host_token_ = w->host_token;  // the join token is not used again
        heartbeat_interval_ = milliseconds(static_cast<int64_t>(w->heartbeat_interval_seconds * 1000));
        batching_ = w->protocol >= protocol::kBatchVersion;
        welcomed = true;
      }
    } else if (envelope && envelope->first == "error") {
      c.refused.fetch_add(1, std::memory_order_relaxed);
      if (c.refused.load(std::memory_order_relaxed) <= 5) {
        std::fprintf(stderr, "simulator: %s refused: %s\n", hostname_.c_str(),
                     envelope->second.value("message", "").c_str());
      }
    }
  }
  if (!welcomed) {
    c.connect_failures.fetch_add(1, std::memory_order_relaxed);
    stream.close();
    co_return false;
  }
  if (stopping_) {
    stream.close();
    co_return true;
  }
  c.welcomes.fetch_add(1, std::memory_order_relaxed);
  if (++sessions_ > 1) {
    c.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  c.connected.fetch_add(1, std::memory_order_relaxed);
  conn_ = conn;
  for (const auto& [id, text] : unacked_results_) {
    send(text);
  }
  asio::co_spawn(shard_.io, heartbeat_loop(conn), asio::detached);

  while (true) {
    buffer.clear();
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      break;
    }
    c.messages_in.fetch_add(1, std::memory_order_relaxed);
    c.bytes_in.fetch_add(buffer.size(), std::memory_order_relaxed);
    on_frame(beast::buffers_to_string(buffer.data()));
  }
  conn->closed = true;
  conn->outbox.clear();
  conn->heartbeat_timer.cancel();
  if (conn_ == conn) {
    conn_.reset();
  }
  c.connected.fetch_sub(1, std::memory_order_relaxed);
  if (!stopping_ && c.disconnects.fetch_add(1, std::memory_order_relaxed) < 5) {
    std::fprintf(stderr, "simulator: %s: connection lost: %s\n", hostname_.c_str(), ec.message().c_str());
  }
  error_code ignored;
  stream.socket().close(ignored);
  co_return true;
}

// The first heartbeat goes out at once (as the real agent's); the next ones
// at this host's phase of the interval, index/N of it, so N hosts spread
// evenly over every interval whatever order they connected in.
Clock::time_point SimHost::next_heartbeat(Clock::time_point after) const {
  const auto interval = std::chrono::duration_cast<Clock::duration>(heartbeat_interval_);
  const auto phase = interval * index_ / shard_.options.hosts;
  const auto since = after - (shard_.epoch + phase);
  const auto periods = since.count() < 0 ? 0 : since / interval + 1;
  return shard_.epoch + phase + periods * interval;
}

asio::awaitable<void> SimHost::heartbeat_loop(std::shared_ptr<Conn> conn) {
  Counters& c = shard_.counters;
  Clock::time_point due = Clock::now();
  while (!conn->closed && !conn->close_requested && !killed_) {
    const auto now = Clock::now();
    const int64_t lag = std::chrono::duration_cast<milliseconds>(now - due).count();
    c.lag_ms[static_cast<size_t>(std::clamp<int64_t>(lag, 0, kLagBuckets - 1))] += 1;
    if (lag > c.max_lag_ms.load(std::memory_order_relaxed)) {
      c.max_lag_ms.store(lag, std::memory_order_relaxed);
    }
    protocol::Heartbeat hb;
    hb.seq = ++heartbeat_seq_;
    hb.members.reserve(members_.size());
    for (const auto& [id, m] : members_) {
      const bool running = m.state == "Running";
      hb.members.push_back(
          protocol::MemberReport{id, m.state, running, protocol::MemberStats{0.5, std::nullopt}, std::nullopt, {}});
    }
    c.heartbeats.fetch_add(1, std::memory_order_relaxed);
    c.member_reports.fetch_add(hb.members.size(), std::memory_order_relaxed);
    send(protocol::to_json(hb).dump());
    due = next_heartbeat(now);
    conn->heartbeat_timer.expires_at(due);
    error_code ec;
    co_await conn->heartbeat_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

// Messages leave in order, what queued up while a frame was written in one
// batch frame (protocol 3), as the agent's. While disconnected they are
// dropped: results stay in unacked_results_ and are replayed, heartbeats
// are simply the next one.
void SimHost::send(std::string text) {
  if (!conn_ || conn_->closed || conn_->close_requested || killed_) {
    return;
  }
  conn_->outbox.push_back(std::move(text));
  if (!conn_->writing) {
    conn_->writing = true;  // before the coroutine runs: it is only posted
    asio::co_spawn(shard_.io, drain(conn_), asio::detached);
  }
}

asio::awaitable<void> SimHost::drain(std::shared_ptr<Conn> conn) {
  error_code ec;
  while (!conn->outbox.empty() && !conn->closed) {
    const std::string text = protocol::take_frame(conn->outbox, batching_);
    conn->ws.text(true);
    co_await conn->ws.async_write(asio::buffer(text), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      conn->closed = true;
      break;
    }
    shard_.counters.bytes_out.fetch_add(text.size(), std::memory_order_relaxed);
  }
  if (conn->close_requested && !conn->closed) {
    // A clean close: the controller sees "closed by the agent", not a reset.
    beast::get_lowest_layer(conn->ws).expires_after(3s);
    co_await conn->ws.async_close(websocket::close_code::normal, asio::redirect_error(asio::use_awaitable, ec));
    conn->closed = true;
  }
  conn->writing = false;
}

void SimHost::on_frame(const std::string& text) {
  if (killed_) {
    return;  // --kill-mode silent: the connection is open, nobody listens
  }
  for (const auto& message : protocol::parse_frame(text).messages) {
    if (message) {
      on_message(message->first, message->second);
    }
  }
}

void SimHost::on_message(const std::string& type, const nlohmann::json& body) {
  if (type == "command") {
    if (auto command = protocol::parse_command(body)) {
      on_command(*command);
    } else if (auto header = protocol::parse_command_header(body)) {
      // As the real agent: a command it cannot read is answered, not dropped.
      shard_.counters.unknown_commands.fetch_add(1, std::memory_order_relaxed);
      send(protocol::to_json(protocol::Ack{header->id}).dump());
      complete(header->id, false, "malformed " + header->type + " command: " + command.error().describe(), {});
    }
  } else if (type == "ack") {
    // The controller has a result: no need to replay it.
    auto ack = protocol::parse_ack(body);
    if (ack && unacked_results_.erase(ack->id) > 0) {
      shard_.counters.results_acked.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (type == "error") {
    auto error = protocol::parse_error_message(body);
    std::fprintf(stderr, "simulator: %s: controller: %s\n", hostname_.c_str(),
                 (error ? error->message : error.error().describe()).c_str());
  }
}

// Sends a command's result and keeps it until the controller acknowledges
// it; returns the text sent.
std::string SimHost::complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data) {
  std::string text = protocol::to_json(protocol::CommandResult{id, ok, std::nullopt, message, std::move(data)}).dump();
  unacked_results_[id] = text;
  shard_.counters.results_sent.fetch_add(1, std::memory_order_relaxed);
  send(text);
  return text;
}

// The real agent says "healthy" when the first probe of a declared check
// passes; a simulated probe passes at once. Without a check the controller
// learns it from the next heartbeat, as with the real agent.
void SimHost::send_healthy(const std::string& member) {
  shard_.counters.healthy_events.fetch_add(1, std::memory_order_relaxed);
  send(protocol::to_json(protocol::AgentEvent{"healthy", member, std::nullopt, "health check passing"}).dump());
}

// A fake port for each port name the spec declares.
std::map<std::string, int> SimHost::fake_ports(const std::vector<std::string>& names) {
  std::map<std::string, int> ports;
  for (const auto& name : names) {
    ports[name] = 20000 + (shard_.next_port++ % 40000);
  }
  return ports;
}

void SimHost::on_command(const protocol::Command& command) {
  Counters& c = shard_.counters;
  c.commands.fetch_add(1, std::memory_order_relaxed);
  const std::string type = command.type();
  if (type == "maintenance") {
    // Arrival before anything is sent back: when the agent has the command.
    const int64_t now = wall_ms();
    if (arrivals_.count.fetch_add(1, std::memory_order_relaxed) == 0) {
      arrivals_.first_ms.store(now, std::memory_order_relaxed);
    }
    arrivals_.last_ms.store(now, std::memory_order_relaxed);
  }
  send(protocol::to_json(protocol::Ack{command.id}).dump());
  if (auto it = unacked_results_.find(command.id); it != unacked_results_.end()) {
    if (c.redeliveries.fetch_add(1, std::memory_order_relaxed) < 5) {
      std::fprintf(stderr, "simulator: %s: command %s delivered again before its result was acknowledged\n",
                   hostname_.c_str(), command.id.c_str());
    }
    send(it->second);  // the outcome again, as the real agent does
    return;
  }
  if (const auto* spec = std::get_if<protocol::StartSpec>(&command.spec)) {
    c.starts.fetch_add(1, std::memory_order_relaxed);
    auto it = members_.find(command.member);
    if (it != members_.end()) {
      // Already ours (a resend after a reconnect): the same answer again.
      if (it->second.state == "Running") {
        complete(command.id, true, "already running", protocol::ProcessStarted{it->second.pid, it->second.ports});
      }
      return;
    }
    SimMember m;
    m.revision = spec->revision;
    m.pid = shard_.next_pid++;
    m.ports = fake_ports(spec->ports);
    m.has_health = spec->health.has_value();
    m.state = shard_.options.start_delay.count() > 0 ? "Starting" : "Running";
    const bool delayed = m.state == "Starting";
    const bool has_health = m.has_health;
    const protocol::ProcessStarted data{m.pid, m.ports};
    members_[command.member] = std::move(m);
    c.members.fetch_add(1, std::memory_order_relaxed);
    if (delayed) {
      asio::co_spawn(shard_.io, delayed_start(command.id, command.member), asio::detached);
    } else {
      complete(command.id, true, "started", data);
      if (has_health) {
        send_healthy(command.member);
      }
    }
  } else if (type == "update") {
    on_update(command);
  } else if (type == "maintenance") {
    on_maintenance(command);
  } else if (type == "stop") {
    c.stops.fetch_add(1, std::memory_order_relaxed);
    const bool had = members_.erase(command.member) > 0;
    if (had) {
      c.members.fetch_sub(1, std::memory_order_relaxed);
    }
    complete(command.id, true, had ? "stopped" : "not running", {});
  } else if (type == "logs") {
    c.logs.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, true, "no output", protocol::LogOutput{});
  }
}

asio::awaitable<void> SimHost::delayed_start(std::string command_id, std::string member) {
  asio::steady_timer timer(shard_.io);
  timer.expires_after(shard_.options.start_delay);
  error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  auto it = members_.find(member);
  if (it == members_.end() || it->second.state != "Starting") {
    co_return;  // stopped meanwhile
  }
  it->second.state = "Running";
  complete(command_id, true, "started", protocol::ProcessStarted{it->second.pid, it->second.ports});
  if (it->second.has_health) {
    send_healthy(member);
  }
}

// updates.md, "method: in-place", as the real agent answers it: refused
// unless the member runs here and is Running; otherwise Updating (in
// heartbeats: not healthy) for exactly --update-time, then Running on the
// spec's revision with a fresh pid. Idempotent by command id: an update in
// progress is not started again, a finished one gets the same result again.
void SimHost::on_update(const protocol::Command& command) {
  Counters& c = shard_.counters;
  auto it = members_.find(command.member);
  if (it != members_.end() && it->second.update_id == command.id) {
    c.update_duplicates.fetch_add(1, std::memory_order_relaxed);
    return;  // its result follows when the update ends
  }
  if (it != members_.end() && it->second.done_update_id == command.id) {
    c.update_duplicates.fetch_add(1, std::memory_order_relaxed);
    send(it->second.done_update_result);
    return;
  }
  if (it == members_.end() || it->second.state != "Running") {
    c.updates_refused.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, false,
             it == members_.end() ? "member is not running here"
                                  : "member is " + it->second.state + ", not Running: update refused",
             {});
    return;
  }
  c.updates.fetch_add(1, std::memory_order_relaxed);
  it->second.state = "Updating";
  it->second.update_id = command.id;
  asio::co_spawn(shard_.io,
                 finish_update(command.id, command.member, std::get<protocol::UpdateSpec>(command.spec).target),
                 asio::detached);
}

// A timer, not a sleep: the io thread serves the other hosts meanwhile.
asio::awaitable<void> SimHost::finish_update(std::string command_id, std::string member, protocol::StartSpec spec) {
  const Clock::time_point due = Clock::now() + shard_.options.update_time;
  asio::steady_timer timer(shard_.io);
  timer.expires_at(due);
  error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  auto it = members_.find(member);
  if (it == members_.end() || it->second.update_id != command_id) {
    co_return;  // stopped meanwhile: the stop answered for it
  }
  Counters& c = shard_.counters;
  const int64_t lag = std::chrono::duration_cast<milliseconds>(Clock::now() - due).count();
  c.update_lag_ms[static_cast<size_t>(std::clamp<int64_t>(lag, 0, kLagBuckets - 1))] += 1;
  if (lag > c.max_update_lag_ms.load(std::memory_order_relaxed)) {
    c.max_update_lag_ms.store(lag, std::memory_order_relaxed);
  }
  SimMember& m = it->second;
  m.revision = spec.revision;
  m.pid = shard_.next_pid++;
  m.ports = fake_ports(spec.ports);
  m.has_health = spec.health.has_value();
  m.state = "Running";
  m.update_id.clear();
  const std::string message = "updated to revision " + std::to_string(m.revision) + " (version " + spec.version + ")";
  m.done_update_id = command_id;
  m.done_update_result = complete(command_id, true, message, protocol::ProcessStarted{m.pid, m.ports});
  c.updates_done.fetch_add(1, std::memory_order_relaxed);
  if (m.has_health) {
    send_healthy(member);
  }
}

// model.md, "maintenance restart", as the real agent answers it (without a
// hook or a journal): refused unless the member runs here and is Running;
// otherwise Maintenance (in heartbeats: not healthy) for exactly
// --maintenance-time, then Running with a fresh pid, the result with pid and
// ports, and a `resumed` event. A known id is not started again.
void SimHost::on_maintenance(const protocol::Command& command) {
  Counters& c = shard_.counters;
  auto it = members_.find(command.member);
  if (it != members_.end() && it->second.maintenance_id == command.id) {
    c.maintenance_duplicates.fetch_add(1, std::memory_order_relaxed);
    return;  // in progress, or done and its result is in unacked_results_ until acked
  }
  if (it == members_.end() || it->second.state != "Running") {
    c.maintenances_refused.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, false, "member is not running here", {});
    return;
  }
  c.maintenances.fetch_add(1, std::memory_order_relaxed);
  it->second.state = "Maintenance";
  it->second.maintenance_id = command.id;
  asio::co_spawn(shard_.io, finish_maintenance(command.id, command.member), asio::detached);
}

asio::awaitable<void> SimHost::finish_maintenance(std::string command_id, std::string member) {
  asio::steady_timer timer(shard_.io);
  timer.expires_after(shard_.options.maintenance_time);
  error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  auto it = members_.find(member);
  if (it == members_.end() || it->second.maintenance_id != command_id || it->second.state != "Maintenance") {
    co_return;  // stopped meanwhile
  }
  SimMember& m = it->second;
  m.pid = shard_.next_pid++;
  m.state = "Running";
  complete(command_id, true, "no maintenance hook", protocol::ProcessStarted{m.pid, m.ports});
  send(protocol::to_json(protocol::AgentEvent{"resumed", member, std::nullopt, "no maintenance hook"}).dump());
  shard_.counters.maintenances_done.fetch_add(1, std::memory_order_relaxed);
}

// ---- reporting ------------------------------------------------------------------

std::string machine() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string model = "unknown CPU";
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      model = line.substr(line.find_first_not_of(" \t", colon + 1));
      break;
    }
  }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " CPUs";
}

std::string build_type() {
  std::string build = TRANCHE_BENCH_BUILD_TYPE;
#ifdef TRANCHE_BENCH_SANITIZED
  build += " (ASan+UBSan)";
#endif
  return build;
}

struct Totals {
  int64_t connected = 0;
  uint64_t welcomes = 0, reconnects = 0, connect_failures = 0, disconnects = 0, refused = 0;
  uint64_t heartbeats = 0, member_reports = 0, commands = 0, redeliveries = 0, starts = 0, stops = 0, logs = 0,
           unknown = 0, results_sent = 0, results_acked = 0, messages_in = 0, bytes_in = 0, bytes_out = 0;
  uint64_t updates = 0, updates_done = 0, update_duplicates = 0, updates_refused = 0, healthy_events = 0;
  uint64_t maintenances = 0, maintenances_done = 0, maintenance_duplicates = 0, maintenances_refused = 0, killed = 0;
  int64_t members = 0, max_lag_ms = 0, max_update_lag_ms = 0;
};

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

// The running totals for a driver script that wants rates over its own
// window: written to a temporary file and renamed, so readers never see half.
// With maintenance commands, also when each host got its first and last one
// (Unix ms): `maintenance_hosts` is [[first, last, count], ...] of the hosts
// that got any.
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

  // ---- report ----
  const double hb_rate = static_cast<double>(at_end.heartbeats) / ran_seconds;
  const int64_t lag_p50 = lag_quantile(shards, &Counters::lag_ms, 0.50);
  const int64_t lag_p99 = lag_quantile(shards, &Counters::lag_ms, 0.99);
  const int64_t update_lag_p50 = lag_quantile(shards, &Counters::update_lag_ms, 0.50);
  const int64_t update_lag_p99 = lag_quantile(shards, &Counters::update_lag_ms, 0.99);
  const std::string mach = machine();
  const std::string build = build_type();
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
  return 0;
}
