// A connection's HTTP requests: its TLS handshake, each request read head
// first (an artifact upload's body streamed to the artifact store, any other
// read whole within the body limit), answered by ControllerApi, a file
// streamed from disk, the event log as Server-Sent Events, and the answer
// that closes a connection (a limit exceeded, the connection cap). A request
// that upgrades to the agents' WebSocket goes on in http_server_agents.cc.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "api/controller_api.h"
#include "api/http_server_state.h"
#include "api/metrics.h"
#include "common/gzip.h"
#include "store/store.h"

namespace tranche::api {

namespace {
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr size_t kStreamBatch = 500;
constexpr const char* kAgentPath = "/agent/v1/connect";
// A TLS handshake is as unauthenticated as a hello, and as quick.
constexpr auto kHandshakeTimeout = kHelloTimeout;
// A request head (request line and fields) and its target: what common
// servers accept, far above what the API or a browser needs.
constexpr size_t kHeaderLimit = 64 * 1024;
constexpr size_t kTargetLimit = 8 * 1024;

Response error_response(int status, const std::string& code, const std::string& message) {
  return Response{status, "application/json", nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump()};
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
  const auto accept_encoding = req[http::field::accept_encoding];
  r.accepts_gzip = accepts_gzip({accept_encoding.data(), accept_encoding.size()});
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
asio::awaitable<void> HttpServer::State::answer_and_close(Stream& stream, const Response& response, std::string method,
                                                          std::string route) {
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
      co_await answer_and_close(
          stream,
          error_response(413, "too_large",
                         "request body exceeds the limit of " + std::to_string(options.body_limit) + " bytes"),
          method, "oversized");
      break;
    }
    if (ec == http::error::header_limit) {
      co_await answer_and_close(
          stream,
          error_response(431, "header_too_large",
                         "the request line and header fields exceed " + std::to_string(kHeaderLimit) + " bytes"),
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
      co_await answer_and_close(
          stream,
          error_response(414, "uri_too_long", "the request target exceeds " + std::to_string(kTargetLimit) + " bytes"),
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
    auto refused =
        to_beast(error_response(503, "unavailable", "cannot read " + response.file_path + ": " + ec.message()), version,
                 keep_alive);
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

}  // namespace tranche::api
