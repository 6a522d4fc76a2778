#pragma once
// Internal to the HTTP server, whose three files share it: http_server.cc
// (accepting, the open connections, drain), http_server_requests.cc (a
// connection's HTTP requests, from its TLS handshake to its close) and
// http_server_agents.cc (an agent's WebSocket, once a request upgrades to
// it). Asio and Beast stay out of this folder's interfaces.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>

#include "api/connection_parts.h"
#include "api/http.h"
#include "api/http_server.h"

namespace tranche::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Before hello a peer is unauthenticated, and an agent sends its hello at
// once (http_server_agents.cc); a TLS handshake is as unauthenticated, and
// as quick (http_server_requests.cc).
inline constexpr auto kHelloTimeout = std::chrono::seconds(10);

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

  // http_server.cc
  asio::awaitable<void> accept_loop();
  void forget(const std::shared_ptr<Connection>& conn);
  void close_idle(const std::shared_ptr<Connection>& conn);
  void close_agents_once();

  // http_server_requests.cc
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

  // http_server_agents.cc, for both streams (beast::tcp_stream, TlsStream):
  // an upgraded request's WebSocket, from its hello to its close.
  template <class Stream>
  asio::awaitable<void> serve_agent(Stream stream, http::request<http::string_body> request,
                                    std::shared_ptr<Connection> conn);

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

}  // namespace tranche::api
