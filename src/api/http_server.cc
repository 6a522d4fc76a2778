#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "api/http_server.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <nlohmann/json.hpp>

#include "api/controller_api.h"
#include "api/metrics.h"
#include "engine/fleet.h"
#include "protocol/messages.h"
#include "store/store.h"

namespace tranche::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;

namespace {
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kStreamKeepalive = std::chrono::seconds(15);
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr size_t kStreamBatch = 500;
constexpr size_t kAgentMessageLimit = 16 * 1024 * 1024;
constexpr const char* kAgentPath = "/agent/v1/connect";
// Before hello a peer is unauthenticated: a hello fits in a few hundred
// bytes and an agent sends it at once.
constexpr size_t kHelloMessageLimit = 64 * 1024;
constexpr auto kHelloTimeout = std::chrono::seconds(10);
// A request head (request line and fields) and its target: what common
// servers accept, far above what the API or a browser needs.
constexpr size_t kHeaderLimit = 64 * 1024;
constexpr size_t kTargetLimit = 8 * 1024;
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

Response error_response(int status, const std::string& code, const std::string& message) {
  return Response{status, "application/json",
                  nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump()};
}

// One agent's WebSocket, usable from any thread: send() and close() post to
// the connection's strand, where writes go out one at a time in order.
class WebSocketAgentLink final : public AgentLink, public std::enable_shared_from_this<WebSocketAgentLink> {
 public:
  WebSocketAgentLink(Strand strand, beast::tcp_stream&& stream)
      : strand_(strand), peer_address_(remote_address(stream)), ws_(std::move(stream)) {}

  websocket::stream<beast::tcp_stream>& ws() { return ws_; }

  void send(std::string message) override {
    asio::post(strand_, [self = shared_from_this(), m = std::move(message)]() mutable {
      self->queue_.push_back(std::move(m));
      self->pump();
    });
  }

  std::string peer_address() const override { return peer_address_; }

  void close(std::string reason) override {
    asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)] {
      if (self->closed_) {
        return;
      }
      self->closed_ = true;
      spdlog::info("closing agent connection: {}", reason);
      self->ws_.async_close(websocket::close_reason(websocket::close_code::going_away, reason),
                            asio::bind_executor(self->strand_, [self](error_code) {}));
    });
  }

 private:
  void pump() {
    if (writing_ || closed_ || queue_.empty()) {
      return;
    }
    writing_ = true;
    ws_.text(true);
    // The stream's own executor is the io_context's: without the strand the
    // completion would touch queue_ and the stream concurrently with send()
    // and the read loop (seen as double frees under load, bench/rollout).
    ws_.async_write(asio::buffer(queue_.front()),
                    asio::bind_executor(strand_, [self = shared_from_this()](error_code ec, size_t) {
                      self->writing_ = false;
                      self->queue_.pop_front();
                      if (ec) {
                        self->closed_ = true;
                        return;
                      }
                      self->pump();
                    }));
  }

  static std::string remote_address(beast::tcp_stream& stream) {
    error_code ec;
    const auto endpoint = stream.socket().remote_endpoint(ec);
    return ec ? std::string() : endpoint.address().to_string();
  }

  Strand strand_;
  std::string peer_address_;
  websocket::stream<beast::tcp_stream> ws_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool closed_ = false;
};

// Wakes one event-stream connection when new events are committed. It lives
// on the connection's strand, so a wake-up between "nothing new" and "wait"
// is never lost.
class StreamWaker {
 public:
  explicit StreamWaker(Strand strand) : strand_(strand), timer_(strand) {}
  void wake() {
    asio::post(strand_, [this] {
      pending_ = true;
      timer_.cancel();
    });
  }
  // True when woken, false when the keepalive interval passed quietly.
  asio::awaitable<bool> wait() {
    if (!pending_) {
      timer_.expires_after(kStreamKeepalive);
      error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    const bool woken = pending_;
    pending_ = false;
    co_return woken;
  }

 private:
  Strand strand_;
  asio::steady_timer timer_;
  bool pending_ = false;
};
// The answer of a deferred route, without holding a thread: the reply,
// from whatever thread gives it, is posted to the connection's strand and
// wakes the coroutine.
asio::awaitable<Response> await_reply(const Deferred& deferred) {
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, asio::steady_timer::time_point::max());
  auto answer = std::make_shared<std::optional<Response>>();
  deferred([timer, answer](Response response) {
    asio::post(timer->get_executor(), [timer, answer, response = std::move(response)]() mutable {
      *answer = std::move(response);
      timer->cancel();
    });
  });
  while (!*answer) {
    error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return std::move(**answer);
}
}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io, ControllerApi& api, Store& store, Fleet& fleet, Metrics& metrics,
        HttpServerOptions options)
      : io(io), api(api), store(store), fleet(fleet), metrics(metrics), options(std::move(options)), acceptor(io) {}

  asio::io_context& io;
  ControllerApi& api;
  Store& store;
  Fleet& fleet;
  Metrics& metrics;
  HttpServerOptions options;
  tcp::acceptor acceptor;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<size_t> unauthenticated_agents{0};

  // Open connections, so drain() can end idle ones and event streams.
  struct Connection {
    Strand strand;
    beast::tcp_stream* stream = nullptr;
    bool busy = false;  // a request is being handled
    StreamWaker* waker = nullptr;
    std::weak_ptr<WebSocketAgentLink> agent;
  };
  std::mutex connections_mutex;
  std::set<std::shared_ptr<Connection>> connections;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket, std::shared_ptr<Connection> conn);
  // Answers `response` and closes the connection, reading what the client
  // still sends for a moment so that the close does not reset the
  // connection before the client has read the answer.
  asio::awaitable<void> answer_and_close(beast::tcp_stream& stream, const Response& response, std::string method,
                                         std::string route);
  asio::awaitable<void> stream_events(beast::tcp_stream& stream, const EventStreamRequest& request,
                                      std::shared_ptr<Connection> conn);
  asio::awaitable<void> serve_agent(beast::tcp_stream stream, http::request<http::string_body> request,
                                    std::shared_ptr<Connection> conn);
  void close_idle(const std::shared_ptr<Connection>& conn);
};

namespace {

Request to_request(const http::request<http::string_body>& req) {
  Request r;
  r.method = std::string(req.method_string());
  const std::string_view target(req.target().data(), req.target().size());
  const size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) {
    r.query = parse_query(target.substr(q + 1));
  }
  r.authorization = std::string(req[http::field::authorization]);
  r.content_type = std::string(req[http::field::content_type]);
  r.body = req.body();
  return r;
}

http::response<http::string_body> to_beast(const Response& response, unsigned version, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(response.status), version};
  res.set(http::field::server, "tranche");
  res.set(http::field::content_type, response.content_type);
  res.keep_alive(keep_alive);
  res.body() = response.body;
  res.prepare_payload();
  return res;
}

std::string sse_frame(const EventRecord& e) {
  return "id: " + std::to_string(e.seq) + "\nevent: " + e.type + "\ndata: " + event_json(e).dump() + "\n\n";
}

}  // namespace

asio::awaitable<void> HttpServer::State::accept_loop() {
  auto self = shared_from_this();
  asio::steady_timer pause_timer(io);
  auto pause = kAcceptPauseMin;
  uint64_t failures_in_a_row = 0;
  while (!draining) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
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
    auto conn = std::make_shared<Connection>(Connection{asio::make_strand(io)});
    bool full = false;
    {
      std::lock_guard lock(connections_mutex);
      full = connections.size() >= options.max_connections;
      if (!full) {
        connections.insert(conn);
      }
    }
    if (full) {
      asio::co_spawn(
          conn->strand,
          [self, socket = std::move(socket)]() mutable -> asio::awaitable<void> {
            beast::tcp_stream stream(std::move(socket));
            co_await self->answer_and_close(
                stream,
                error_response(503, "unavailable",
                               "the controller has " + std::to_string(self->options.max_connections) +
                                   " open connections, its limit; retry later"),
                "", "connection_limit");
          },
          asio::detached);
      continue;
    }
    asio::co_spawn(conn->strand, serve(std::move(socket), conn), asio::detached);
  }
}

asio::awaitable<void> HttpServer::State::answer_and_close(beast::tcp_stream& stream, const Response& response,
                                                          std::string method, std::string route) {
  const auto started = std::chrono::steady_clock::now();
  auto res = to_beast(response, 11, false);
  stream.expires_after(kLingerTimeout);
  error_code ec;
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  metrics.record_request(method, route, response.status, std::chrono::steady_clock::now() - started);
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 16 * 1024> discard;
  while (!ec) {
    co_await stream.async_read_some(asio::buffer(discard), asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> HttpServer::State::serve(tcp::socket socket, std::shared_ptr<Connection> conn) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(socket));
  conn->stream = &stream;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(options.body_limit);
    stream.expires_after(kIdleTimeout);
    error_code ec;
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    const std::string method(parser.get().method_string());
    if (ec == http::error::body_limit) {
      co_await answer_and_close(stream,
                                error_response(413, "too_large",
                                               "request body exceeds the limit of " +
                                                   std::to_string(options.body_limit) + " bytes"),
                                method, "oversized");
      break;
    }
    if (ec == http::error::header_limit) {
      co_await answer_and_close(stream,
                                error_response(431, "header_too_large",
                                               "the request line and header fields exceed " +
                                                   std::to_string(kHeaderLimit) + " bytes"),
                                method, "malformed");
      break;
    }
    // The peer closing, the idle timeout or a drain end the connection
    // quietly; a request that does not parse is answered.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == http::error::short_read) {
      break;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_method).category()) {
      co_await answer_and_close(stream, error_response(400, "malformed", "the request does not parse: " + ec.message()),
                                method, "malformed");
      break;
    }
    if (ec) {
      break;
    }
    if (parser.get().target().size() > kTargetLimit) {
      co_await answer_and_close(stream,
                                error_response(414, "uri_too_long",
                                               "the request target exceeds " + std::to_string(kTargetLimit) + " bytes"),
                                method, "malformed");
      break;
    }
    if (websocket::is_upgrade(parser.get()) && parser.get().target() == kAgentPath) {
      if (unauthenticated_agents.fetch_add(1) >= options.max_unauthenticated_agents) {
        --unauthenticated_agents;
        co_await answer_and_close(stream,
                                  error_response(503, "unavailable",
                                                 std::to_string(options.max_unauthenticated_agents) +
                                                     " agent connections are waiting to say hello; retry later"),
                                  method, "agent_limit");
        break;
      }
      conn->stream = nullptr;
      co_await serve_agent(std::move(stream), parser.release(), conn);
      std::lock_guard lock(connections_mutex);
      connections.erase(conn);
      co_return;
    }
    conn->busy = true;
    const auto started = std::chrono::steady_clock::now();
    const auto& req = parser.get();
    RouteResult result = api.handle(to_request(req));
    if (result.deferred) {
      result.response = co_await await_reply(result.deferred);
    }
    if (result.stream) {
      metrics.record_request(std::string(req.method_string()), result.route, 200,
                             std::chrono::steady_clock::now() - started);
      co_await stream_events(stream, *result.stream, conn);
      break;
    }
    const bool keep_alive = req.keep_alive() && !draining;
    auto res = to_beast(result.response, req.version(), keep_alive);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    metrics.record_request(std::string(req.method_string()), result.route, result.response.status,
                           std::chrono::steady_clock::now() - started);
    conn->busy = false;
    if (ec || !keep_alive) {
      break;
    }
  }
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  conn->stream = nullptr;
  std::lock_guard lock(connections_mutex);
  connections.erase(conn);
}

asio::awaitable<void> HttpServer::State::stream_events(beast::tcp_stream& stream, const EventStreamRequest& request,
                                                       std::shared_ptr<Connection> conn) {
  // Headers by hand: the body is an open-ended stream delimited by close.
  static const std::string kHeaders =
      "HTTP/1.1 200 OK\r\nServer: tranche\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
  stream.expires_never();
  error_code ec;
  co_await asio::async_write(stream, asio::buffer(kHeaders), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return;
  }
  StreamWaker waker(conn->strand);
  conn->waker = &waker;
  const uint64_t watch_id = store.watch([&waker](uint64_t) { waker.wake(); });
  uint64_t after = request.since;
  // The store is the single source: every pass reads what was committed
  // after the last seq sent, so nothing is skipped or sent twice.
  while (!draining) {
    auto events = store.list_events(EventQuery{after, request.app, kStreamBatch});
    if (!events) {
      spdlog::error("event stream: {}", events.error().describe());
      break;
    }
    std::string frames;
    if (events->empty()) {
      const bool woken = co_await waker.wait();
      if (draining) {
        break;
      }
      if (woken) {
        continue;
      }
      frames = ": keepalive\n\n";
    }
    for (const auto& e : *events) {
      frames += sse_frame(e);
      after = e.seq;
    }
    co_await asio::async_write(stream, asio::buffer(frames), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      break;
    }
  }
  store.unwatch(watch_id);
  conn->waker = nullptr;
}

asio::awaitable<void> HttpServer::State::serve_agent(beast::tcp_stream stream, http::request<http::string_body> request,
                                                     std::shared_ptr<Connection> conn) {
  auto self = shared_from_this();
  stream.expires_never();
  auto link = std::make_shared<WebSocketAgentLink>(conn->strand, std::move(stream));
  conn->agent = link;
  auto& ws = link->ws();
  // Until hello the peer is a stranger: little time, small messages, and a
  // place among the few (serve() counted it in unauthenticated_agents).
  struct Unauthenticated {
    std::atomic<size_t>* count;
    void end() {
      if (count) {
        --*count;
        count = nullptr;
      }
    }
    ~Unauthenticated() { end(); }
  } unauthenticated{&unauthenticated_agents};
  ws.set_option(websocket::stream_base::timeout{kHelloTimeout, kHelloTimeout, false});
  ws.read_message_max(kHelloMessageLimit);
  error_code ec;
  co_await ws.async_accept(request, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return;
  }
  beast::flat_buffer buffer;
  co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    spdlog::info("agent connection from {} ended before hello: {}", link->peer_address(), ec.message());
    co_return;
  }
  auto refuse = [&](const Error& e) {
    spdlog::warn("agent refused: {}", e.describe());
    link->send(protocol::to_json(protocol::ErrorMessage{e.describe()}).dump());
    link->close(e.message);
  };
  auto envelope = protocol::parse_envelope(beast::buffers_to_string(buffer.data()));
  if (!envelope || envelope->first != "hello") {
    refuse(envelope ? Error{ErrorCode::kInvalid, "the first message must be hello", "type"} : envelope.error());
    co_return;
  }
  auto hello = protocol::parse_hello(envelope->second);
  auto host_id = hello ? fleet.connect(*hello, link) : Result<std::string>(std::unexpected(hello.error()));
  if (!host_id) {
    refuse(host_id.error());
    co_return;
  }
  unauthenticated.end();
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.read_message_max(kAgentMessageLimit);
  while (!draining) {
    buffer.clear();
    co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      break;
    }
    // Decoded once, here; a frame that does not decode is the fleet's to
    // count and log, and the connection goes on.
    auto message = protocol::decode_agent_message(beast::buffers_to_string(buffer.data()));
    if (message) {
      fleet.receive(*host_id, *message);
    } else {
      fleet.reject(*host_id, message.error());
    }
  }
  fleet.disconnect(*host_id, link.get());
}

void HttpServer::State::close_idle(const std::shared_ptr<Connection>& conn) {
  if (auto agent = conn->agent.lock()) {
    agent->close("controller shutting down");
    return;
  }
  asio::post(conn->strand, [conn] {
    if (conn->waker) {
      conn->waker->wake();
    } else if (conn->stream && !conn->busy) {
      conn->stream->cancel();
    }
  });
}

HttpServer::HttpServer(asio::io_context& io, ControllerApi& api, Store& store, Fleet& fleet, Metrics& metrics,
                       HttpServerOptions options)
    : state_(std::make_shared<State>(io, api, store, fleet, metrics, std::move(options))) {
  metrics.add_counter("tranche_agent_messages_rejected_total",
                      "Agent messages that did not decode, rejected without closing their connection.",
                      [&fleet] { return fleet.rejected_messages(); });
  metrics.add_counter("tranche_accept_errors_total",
                      "Failed accepts (such as running out of file descriptors); each is followed by a pause.",
                      [state = state_.get()] { return state->accept_errors.load(); });
}

HttpServer::~HttpServer() = default;

unsigned short HttpServer::start() {
  auto& s = *state_;
  if (s.options.max_connections == 0) {
    s.options.max_connections = connection_cap_from_open_files_limit();
  }
  tcp::endpoint endpoint(asio::ip::make_address(s.options.host), s.options.port);
  s.acceptor.open(endpoint.protocol());
  set_close_on_exec(s.acceptor.native_handle());
  s.acceptor.set_option(asio::socket_base::reuse_address(true));
  s.acceptor.bind(endpoint);
  s.acceptor.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(s.io, s.accept_loop(), asio::detached);
  return s.acceptor.local_endpoint().port();
}

void HttpServer::drain() {
  auto state = state_;
  asio::post(state->io, [state] {
    if (state->draining.exchange(true)) {
      return;
    }
    error_code ignored;
    state->acceptor.close(ignored);
    std::lock_guard lock(state->connections_mutex);
    for (const auto& conn : state->connections) {
      state->close_idle(conn);
    }
  });
}

}  // namespace tranche::api
