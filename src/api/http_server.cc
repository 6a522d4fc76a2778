#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "api/http_server.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <array>
#include <limits>
#include <atomic>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <nlohmann/json.hpp>

#include "api/connection_parts.h"
#include "api/controller_api.h"
#include "api/metrics.h"
#include "common/tls_context.h"
#include "engine/fleet/fleet.h"
#include "protocol/messages.h"
#include "store/store.h"

namespace tranche::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

namespace {
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr size_t kStreamBatch = 500;
constexpr size_t kAgentMessageLimit = 16 * 1024 * 1024;
constexpr const char* kAgentPath = "/agent/v1/connect";
// Before hello a peer is unauthenticated: a hello fits in a few hundred
// bytes and an agent sends it at once.
constexpr size_t kHelloMessageLimit = 64 * 1024;
constexpr auto kHelloTimeout = std::chrono::seconds(10);
// A TLS handshake is as unauthenticated as a hello, and as quick.
constexpr auto kHandshakeTimeout = kHelloTimeout;
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
  State(std::vector<asio::io_context*> contexts, ControllerApi& api, Store& store, Fleet& fleet, Metrics& metrics,
        HttpServerOptions options)
      : contexts(std::move(contexts)),
        io(*this->contexts.front()),
        api(api),
        store(store),
        fleet(fleet),
        metrics(metrics),
        options(std::move(options)),
        acceptor(io) {
    // An io_context opens its reactor's descriptors with its first socket or
    // timer; out of descriptors then, Asio can only terminate. A timer opens
    // them now, at start, where accept's pause-and-retry cannot be needed.
    for (asio::io_context* context : this->contexts) {
      asio::steady_timer opens_reactor(*context);
    }
  }

  std::vector<asio::io_context*> contexts;  // connections' homes, round robin
  size_t next_context = 0;                  // only the accept loop uses it
  asio::io_context& io;                     // the acceptor's
  ControllerApi& api;
  Store& store;
  Fleet& fleet;
  Metrics& metrics;
  HttpServerOptions options;
  tcp::acceptor acceptor;
  std::unique_ptr<ssl::context> tls_context;  // set: every connection is TLS
  std::atomic<bool> draining{false};
  // Requests read past their head and not yet answered. A drain closes the
  // agents' connections only once none is left: a request may wait on an
  // agent (a member's logs).
  std::atomic<size_t> requests_in_flight{0};
  std::atomic<bool> agents_closed{false};
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<size_t> unauthenticated_agents{0};

  // Open connections, so drain() can end idle ones and event streams.
  struct Connection {
    Strand strand;
    beast::tcp_stream* stream = nullptr;  // the lowest layer, TLS or not
    bool busy = false;                    // a request is being handled
    StreamWaker* waker = nullptr;
    std::weak_ptr<AgentLink> agent;
  };
  std::mutex connections_mutex;
  std::set<std::shared_ptr<Connection>> connections;

  asio::awaitable<void> accept_loop();
  // A connection's requests, over TCP or, with tls_context, TLS.
  asio::awaitable<void> serve(tcp::socket socket, std::shared_ptr<Connection> conn);
  // Past the connection cap: answered 503 and closed.
  asio::awaitable<void> refuse(tcp::socket socket);
  // The TLS handshake of an accepted connection, bounded in time; false
  // when it failed (plain HTTP sent to a TLS listener ends here).
  asio::awaitable<bool> handshake(TlsStream& stream);
  template <class Stream>
  asio::awaitable<void> serve_requests(Stream& stream, std::shared_ptr<Connection> conn);
  // Answers `response` and closes the connection, reading what the client
  // still sends for a moment so that the close does not reset the
  // connection before the client has read the answer.
  template <class Stream>
  asio::awaitable<void> answer_and_close(Stream& stream, const Response& response, std::string method,
                                         std::string route);
  // An artifact upload (ControllerApi::is_artifact_upload): its body
  // streamed to the artifact store in pieces, never held whole. Returns
  // whether the connection goes on.
  template <class Stream>
  asio::awaitable<bool> receive_artifact(Stream& stream, beast::flat_buffer& buffer,
                                         http::request_parser<http::empty_body>& head, const Request& meta);
  // A response whose body is a file (an artifact), streamed from disk.
  template <class Stream>
  asio::awaitable<error_code> send_file(Stream& stream, const Response& response, unsigned version, bool keep_alive);
  template <class Stream>
  asio::awaitable<void> stream_events(Stream& stream, const EventStreamRequest& request,
                                      std::shared_ptr<Connection> conn);
  template <class Stream>
  asio::awaitable<void> serve_agent(Stream stream, http::request<http::string_body> request,
                                    std::shared_ptr<Connection> conn);
  void forget(const std::shared_ptr<Connection>& conn);
  void close_idle(const std::shared_ptr<Connection>& conn);
  void close_agents_once();

  // One request from its head to its answer: its connection is busy (a
  // drain lets it finish) and it counts in requests_in_flight.
  class InFlight {
   public:
    InFlight(State& state, Connection& conn) : state_(state), conn_(conn) {
      conn_.busy = true;
      ++state_.requests_in_flight;
    }
    ~InFlight() {
      conn_.busy = false;
      if (--state_.requests_in_flight == 0 && state_.draining) {
        state_.close_agents_once();
      }
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    State& state_;
    Connection& conn_;
  };
};

namespace {

template <class Body>
Request to_request(const http::request<Body>& req) {
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
  if constexpr (std::is_same_v<Body, http::string_body>) {
    r.body = req.body();
  }
  return r;
}

http::response<http::string_body> to_beast(const Response& response, unsigned version, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(response.status), version};
  res.set(http::field::server, "tranche");
  res.set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) {
    res.set(name, value);
  }
  res.keep_alive(keep_alive);
  res.body() = response.body;
  res.prepare_payload();
  return res;
}

std::string sse_frame(const EventRecord& e) {
  return "id: " + std::to_string(e.seq) + "\nevent: " + e.type + "\ndata: " + event_json(e).dump() + "\n\n";
}

// The end of what the server sends on a connection. Over TCP, half a close:
// the client still reads what was sent. Over TLS, close_notify first (so the
// client can tell the end from a truncation), waiting for the client's
// answer a moment at most.
asio::awaitable<void> end_sending(beast::tcp_stream& stream) {
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  co_return;
}

asio::awaitable<void> end_sending(TlsStream& stream) {
  beast::get_lowest_layer(stream).expires_after(kLingerTimeout);
  error_code ec;
  co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
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

asio::awaitable<void> HttpServer::State::refuse(tcp::socket socket) {
  auto self = shared_from_this();
  const Response full = error_response(
      503, "unavailable",
      "the controller has " + std::to_string(options.max_connections) + " open connections, its limit; retry later");
  if (!tls_context) {
    beast::tcp_stream stream(std::move(socket));
    co_await answer_and_close(stream, full, "", "connection_limit");
    co_return;
  }
  TlsStream stream(std::move(socket), *tls_context);
  if (co_await handshake(stream)) {
    co_await answer_and_close(stream, full, "", "connection_limit");
  }
}

asio::awaitable<bool> HttpServer::State::handshake(TlsStream& stream) {
  beast::get_lowest_layer(stream).expires_after(kHandshakeTimeout);
  error_code ec;
  co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    error_code ignored;
    const auto peer = beast::get_lowest_layer(stream).socket().remote_endpoint(ignored);
    spdlog::debug("TLS handshake with {} failed: {}", peer.address().to_string(), ec.message());
    co_return false;
  }
  co_return true;
}

template <class Stream>
asio::awaitable<void> HttpServer::State::answer_and_close(Stream& stream, const Response& response,
                                                          std::string method, std::string route) {
  const auto started = std::chrono::steady_clock::now();
  auto res = to_beast(response, 11, false);
  beast::get_lowest_layer(stream).expires_after(kLingerTimeout);
  error_code ec;
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  metrics.record_request(method, route, response.status, std::chrono::steady_clock::now() - started);
  co_await end_sending(stream);
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    std::array<char, 16 * 1024> discard;
    while (!ec) {
      co_await stream.async_read_some(asio::buffer(discard), asio::redirect_error(asio::use_awaitable, ec));
    }
  }
}

asio::awaitable<void> HttpServer::State::serve(tcp::socket socket, std::shared_ptr<Connection> conn) {
  auto self = shared_from_this();
  if (!tls_context) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve_requests(stream, conn);
    co_return;
  }
  TlsStream stream(std::move(socket), *tls_context);
  conn->stream = &beast::get_lowest_layer(stream);  // a drain ends a handshake in progress too
  if (co_await handshake(stream)) {
    co_await serve_requests(stream, conn);
  } else {
    conn->stream = nullptr;
    forget(conn);
  }
}

void HttpServer::State::forget(const std::shared_ptr<Connection>& conn) {
  std::lock_guard lock(connections_mutex);
  connections.erase(conn);
}

template <class Stream>
asio::awaitable<void> HttpServer::State::serve_requests(Stream& stream, std::shared_ptr<Connection> conn) {
  conn->stream = &beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  for (;;) {
    // The head first: an artifact upload's body goes to disk as it comes,
    // any other is read whole within the body limit.
    http::request_parser<http::empty_body> head;
    head.header_limit(kHeaderLimit);
    // No limit yet (Beast reads none as "refuse any body"): which one applies
    // depends on the route.
    head.body_limit(std::numeric_limits<std::uint64_t>::max());
    // A connection accepted just before a drain began has a moment for its
    // request, not the idle timeout.
    beast::get_lowest_layer(stream).expires_after(draining ? kLingerTimeout : kIdleTimeout);
    error_code ec;
    co_await http::async_read_header(stream, buffer, head, asio::redirect_error(asio::use_awaitable, ec));
    // From its head on the request is in flight: a drain waits for its body
    // and its answer instead of cutting it off.
    std::optional<InFlight> in_flight;
    if (!ec) {
      in_flight.emplace(*this, *conn);
    }
    const std::string method(head.get().method_string());
    std::optional<http::request_parser<http::string_body>> whole;
    if (!ec && head.get().target().size() <= kTargetLimit && !websocket::is_upgrade(head.get())) {
      const Request meta = to_request(head.get());
      if (api.is_artifact_upload(meta)) {
        const bool goes_on = co_await receive_artifact(stream, buffer, head, meta);
        in_flight.reset();
        if (!goes_on || draining) {
          break;
        }
        continue;
      }
    }
    if (!ec) {
      whole.emplace(std::move(head));
      whole->body_limit(options.body_limit);
      if (whole->content_length() && *whole->content_length() > options.body_limit) {
        ec = http::error::body_limit;
      } else {
        co_await http::async_read(stream, buffer, *whole, asio::redirect_error(asio::use_awaitable, ec));
      }
    }
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
    auto& parser = *whole;
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
      in_flight.reset();  // an agent's connection from here on
      co_await serve_agent(std::move(stream), parser.release(), conn);
      forget(conn);
      co_return;
    }
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
    if (!result.response.file_path.empty()) {
      ec = co_await send_file(stream, result.response, req.version(), keep_alive);
    } else {
      auto res = to_beast(result.response, req.version(), keep_alive);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    }
    metrics.record_request(std::string(req.method_string()), result.route, result.response.status,
                           std::chrono::steady_clock::now() - started);
    in_flight.reset();
    if (ec || !keep_alive) {
      break;
    }
  }
  co_await end_sending(stream);
  conn->stream = nullptr;
  forget(conn);
}

template <class Stream>
asio::awaitable<bool> HttpServer::State::receive_artifact(Stream& stream, beast::flat_buffer& buffer,
                                                          http::request_parser<http::empty_body>& head,
                                                          const Request& meta) {
  static const std::string kRoute = "/api/v1/artifacts/{name}/{version}";
  const auto started = std::chrono::steady_clock::now();
  const auto length = head.content_length();
  ControllerApi::UploadStart start =
      api.begin_artifact_upload(meta, length ? std::optional<uint64_t>(*length) : std::nullopt);
  if (!start.upload) {
    co_await answer_and_close(stream, start.refusal, meta.method, kRoute);
    co_return false;
  }
  error_code ec;
  if (beast::iequals(head.get()[http::field::expect], "100-continue")) {
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    co_await asio::async_write(stream, asio::buffer(kContinue), asio::redirect_error(asio::use_awaitable, ec));
  }
  http::request_parser<http::buffer_body> body(std::move(head));
  body.body_limit(std::numeric_limits<std::uint64_t>::max());  // the artifact store's applies, piece by piece
  std::vector<char> piece(64 * 1024);
  Status written;
  while (!ec && written && !body.is_done()) {
    body.get().body().data = piece.data();
    body.get().body().size = piece.size();
    beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
    co_await http::async_read(stream, buffer, body, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) {
      ec = {};
    }
    const size_t n = piece.size() - body.get().body().size;
    if (!ec && n > 0) {
      written = start.upload->write(std::string_view(piece.data(), n));
    }
  }
  if (ec) {
    co_return false;  // the client is gone mid-body: the upload leaves nothing
  }
  Response response = api.finish_artifact_upload(meta, std::move(start.upload), written);
  if (!written) {
    // Refused mid-body (too large): the rest is not read.
    co_await answer_and_close(stream, response, meta.method, kRoute);
    co_return false;
  }
  const bool keep_alive = body.get().keep_alive() && !draining;
  auto res = to_beast(response, body.get().version(), keep_alive);
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  metrics.record_request(meta.method, kRoute, response.status, std::chrono::steady_clock::now() - started);
  co_return !ec && keep_alive;
}

template <class Stream>
asio::awaitable<error_code> HttpServer::State::send_file(Stream& stream, const Response& response, unsigned version,
                                                         bool keep_alive) {
  http::response<http::file_body> res{static_cast<http::status>(response.status), version};
  error_code ec;
  res.body().open(response.file_path.c_str(), beast::file_mode::scan, ec);
  if (ec) {
    auto refused = to_beast(error_response(503, "unavailable", "cannot read " + response.file_path + ": " + ec.message()),
                            version, keep_alive);
    co_await http::async_write(stream, refused, asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }
  res.set(http::field::server, "tranche");
  res.set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) {
    res.set(name, value);
  }
  res.keep_alive(keep_alive);
  res.prepare_payload();
  // A large file to a slow agent takes longer than an idle connection may.
  beast::get_lowest_layer(stream).expires_after(kIdleTimeout * 10);
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

template <class Stream>
asio::awaitable<void> HttpServer::State::stream_events(Stream& stream, const EventStreamRequest& request,
                                                       std::shared_ptr<Connection> conn) {
  // Headers by hand: the body is an open-ended stream delimited by close.
  static const std::string kHeaders =
      "HTTP/1.1 200 OK\r\nServer: tranche\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
  beast::get_lowest_layer(stream).expires_never();
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

template <class Stream>
asio::awaitable<void> HttpServer::State::serve_agent(Stream stream, http::request<http::string_body> request,
                                                     std::shared_ptr<Connection> conn) {
  auto self = shared_from_this();
  beast::get_lowest_layer(stream).expires_never();
  auto link = std::make_shared<WebSocketAgentLink<Stream>>(conn->strand, std::move(stream));
  conn->agent = link;
  if (agents_closed) {  // accepted just before a drain that closed the others
    link->close("controller shutting down");
  }
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
    link->refuse(e.message);
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
    // Decoded once, here; a message that does not decode is the fleet's to
    // count and log, and the connection goes on.
    for (auto& message : protocol::decode_agent_frame(beast::buffers_to_string(buffer.data()))) {
      if (message) {
        fleet.receive(*host_id, std::move(*message));
      } else {
        fleet.reject(*host_id, message.error());
      }
    }
  }
  fleet.disconnect(*host_id, link.get());
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
