// The HTTP server itself: the listening socket and its accept loop (a
// connection cap from the open-files limit, a pause when descriptors run
// out), the open connections, and drain(). A connection's requests are in
// http_server_requests.cc, an agent's WebSocket in http_server_agents.cc.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "api/http_server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>

#include <spdlog/spdlog.h>

#include "api/http_server_state.h"
#include "api/metrics.h"
#include "common/tls_context.h"
#include "engine/fleet/fleet.h"

namespace tranche::api {

namespace {
// Descriptors the controller needs beside its connections: the store and
// its WAL, logs, the HAProxy socket, pipes to the processes it starts.
constexpr size_t kReservedDescriptors = 64;
// Accepting when the process is out of descriptors fails at once, forever:
// wait between attempts, doubling up to a second, so that the failure
// costs no CPU and writes one log line per episode.
constexpr auto kAcceptPauseMin = std::chrono::milliseconds(10);
constexpr auto kAcceptPauseMax = std::chrono::seconds(1);

// Asio opens and accepts sockets without SOCK_CLOEXEC: a program the
// controller starts (the --dev agent) must not inherit them.
void set_close_on_exec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) {
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

// Raises the soft open-files limit to the hard one (often 1,024 against
// 524,288: every agent holds a connection) and derives the connection cap
// from it.
size_t connection_cap_from_open_files_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 1024;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised{limit.rlim_max, limit.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    }
  }
  if (limit.rlim_cur == RLIM_INFINITY) {
    return 1 << 20;
  }
  const auto open_files = static_cast<size_t>(limit.rlim_cur);
  return open_files > 2 * kReservedDescriptors ? open_files - kReservedDescriptors : open_files / 2;
}
}  // namespace

asio::awaitable<void> HttpServer::State::accept_loop() {
  auto self = shared_from_this();
  asio::steady_timer pause_timer(io);
  auto pause = kAcceptPauseMin;
  uint64_t failures_in_a_row = 0;
  while (!draining) {
    error_code ec;
    asio::io_context& home = *contexts[next_context++ % contexts.size()];
    tcp::socket socket = co_await acceptor.async_accept(home, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (draining || ec == asio::error::operation_aborted) {
        break;
      }
      ++accept_errors;
      if (failures_in_a_row++ == 0) {
        spdlog::warn("accept failed: {}; retrying at most once a second until it works", ec.message());
      }
      pause_timer.expires_after(pause);
      co_await pause_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      pause = std::min<std::chrono::milliseconds>(pause * 2, kAcceptPauseMax);
      continue;
    }
    if (failures_in_a_row > 0) {
      spdlog::info("accepting again after {} failed attempts", failures_in_a_row);
      failures_in_a_row = 0;
      pause = kAcceptPauseMin;
    }
    set_close_on_exec(socket.native_handle());
    // An agent's connection carries many small frames each way (commands,
    // acks, results): none may wait in the kernel for the ack of the one
    // before it (Nagle's algorithm against the peer's delayed ack).
    if (socket.set_option(tcp::no_delay(true), ec); ec) {
      spdlog::debug("TCP_NODELAY not set on a connection: {}", ec.message());
    }
    auto conn = std::make_shared<Connection>(Connection{asio::make_strand(home)});
    bool full = false;
    {
      std::lock_guard lock(connections_mutex);
      full = connections.size() >= options.max_connections;
      if (!full) {
        connections.insert(conn);
      }
    }
    if (full) {
      asio::co_spawn(conn->strand, refuse(std::move(socket)), asio::detached);
      continue;
    }
    asio::co_spawn(conn->strand, serve(std::move(socket), conn), asio::detached);
  }
}

void HttpServer::State::forget(const std::shared_ptr<Connection>& conn) {
  std::lock_guard lock(connections_mutex);
  connections.erase(conn);
}

void HttpServer::State::close_agents_once() {
  if (agents_closed.exchange(true)) {
    return;
  }
  std::lock_guard lock(connections_mutex);
  for (const auto& conn : connections) {
    if (auto agent = conn->agent.lock()) {
      agent->close("controller shutting down");
    }
  }
}

void HttpServer::State::close_idle(const std::shared_ptr<Connection>& conn) {
  if (!conn->agent.expired()) {
    return;  // agents go once no request is in flight: close_agents_once()
  }
  asio::post(conn->strand, [conn] {
    if (conn->waker) {
      conn->waker->wake();
    } else if (conn->stream && !conn->busy) {
      conn->stream->cancel();
    }
  });
}

HttpServer::HttpServer(std::vector<asio::io_context*> contexts, ControllerApi& api, Store& store, Fleet& fleet,
                       Metrics& metrics, HttpServerOptions options)
    : state_(std::make_shared<State>(std::move(contexts), api, store, fleet, metrics, std::move(options))) {
  metrics.add_counter("tranche_agent_messages_rejected_total",
                      "Agent messages that did not decode, rejected without closing their connection.",
                      [&fleet] { return fleet.rejected_messages(); });
  metrics.add_histogram("tranche_heartbeat_handling_seconds",
                        "Agent heartbeats from their arrival to the end of their handling, the wait for the fleet "
                        "included.",
                        [&fleet] { return fleet.heartbeat_handling(); });
  metrics.add_counter("tranche_accept_errors_total",
                      "Failed accepts (such as running out of file descriptors); each is followed by a pause.",
                      [state = state_.get()] { return state->accept_errors.load(); });
}

HttpServer::~HttpServer() = default;

Status HttpServer::enable_tls(const std::string& certificate_file, const std::string& key_file) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  if (auto ok = configure_tls_server(context->native_handle(), certificate_file, key_file); !ok) {
    return ok;
  }
  state_->tls_context = std::move(context);
  return {};
}

Result<ListeningSocket> ListeningSocket::open(const std::string& host, unsigned short port) {
  asio::io_context io;  // only to open the socket: it is handed over by descriptor
  tcp::acceptor acceptor(io);
  error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address(host, ec), port);
  if (!ec) {
    acceptor.open(endpoint.protocol(), ec);
  }
  if (!ec) {
    set_close_on_exec(acceptor.native_handle());
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    // As deep as the system allows (net.core.somaxconn caps it; SOMAXCONN,
    // 4,096, would cap it even when an operator raised that for a fleet of
    // more hosts, all reconnecting to a restarted controller at once).
    acceptor.listen(std::numeric_limits<int>::max(), ec);
  }
  tcp::endpoint bound;
  if (!ec) {
    bound = acceptor.local_endpoint(ec);
  }
  const int fd = ec ? -1 : acceptor.release(ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, ec.message());
  }
  return ListeningSocket(fd, bound.protocol() == tcp::v6(), bound.port());
}

ListeningSocket::ListeningSocket(ListeningSocket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), v6_(other.v6_), port_(other.port_) {}

ListeningSocket::~ListeningSocket() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void HttpServer::start(ListeningSocket socket) {
  auto& s = *state_;
  if (s.options.max_connections == 0) {
    s.options.max_connections = connection_cap_from_open_files_limit();
  }
  s.acceptor.assign(socket.v6_ ? tcp::v6() : tcp::v4(), std::exchange(socket.fd_, -1));
  asio::co_spawn(s.io, s.accept_loop(), asio::detached);
}

void HttpServer::drain() {
  auto state = state_;
  asio::post(state->io, [state] {
    if (state->draining.exchange(true)) {
      return;
    }
    error_code ignored;
    state->acceptor.close(ignored);
    {
      std::lock_guard lock(state->connections_mutex);
      for (const auto& conn : state->connections) {
        state->close_idle(conn);
      }
    }
    if (state->requests_in_flight == 0) {
      state->close_agents_once();
    }
  });
}

}  // namespace tranche::api
