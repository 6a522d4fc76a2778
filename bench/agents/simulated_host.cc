// The connection side of a simulated host: pacing its first connect,
// connect (from a --source-addresses address), the WebSocket handshake,
// hello and welcome, the heartbeat loop at the host's phase, the ordered
// outbox written in batch frames, reconnects with the agent's own backoff, a
// clean close at the end and --kill-hosts' abrupt death. What arrives is
// handed to on_frame (simulated_host_commands.cc).

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "simulated_host.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>

#include <netinet/in.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "agent/reconnect_backoff.h"
#include "protocol/frames.h"
#include "simulator_options.h"

namespace tranche::sim {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;
using namespace std::chrono_literals;

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

int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {

constexpr const char* kAgentPath = "/agent/v1/connect";

// The kill file is written by every shard's thread.
std::mutex g_kill_file_mu;

}  // namespace

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
    send(protocol::heartbeat_text(hb));
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

}  // namespace tranche::sim
