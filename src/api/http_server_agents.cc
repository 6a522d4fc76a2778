// An agent's WebSocket, once its request upgrades to it: the hello, within
// the limits of an unauthenticated peer, then the read loop, each frame
// decoded once and handed to the fleet typed or as a counted rejection.
// What the controller sends goes through the link (WebSocketAgentLink,
// connection_parts.h).

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>
#include <boost/beast/websocket/ssl.hpp>

#include "api/http_server_state.h"
#include "engine/fleet/fleet.h"
#include "protocol/messages.h"

namespace tranche::api {

namespace {
constexpr size_t kAgentMessageLimit = 16 * 1024 * 1024;
// A hello fits in a few hundred bytes.
constexpr size_t kHelloMessageLimit = 64 * 1024;
}  // namespace

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
  // place among the few (serve_requests() counted it in unauthenticated_agents).
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

template asio::awaitable<void> HttpServer::State::serve_agent(beast::tcp_stream stream,
                                                              http::request<http::string_body> request,
                                                              std::shared_ptr<Connection> conn);
template asio::awaitable<void> HttpServer::State::serve_agent(TlsStream stream,
                                                              http::request<http::string_body> request,
                                                              std::shared_ptr<Connection> conn);

}  // namespace tranche::api
