#pragma once
// The HTTP/1.1 server: accepts on one endpoint, reads each request with a
// body limit (413 beyond it), hands it to ControllerApi on the connection's
// strand, streams the event log as Server-Sent Events, and upgrades
// /agent/v1/connect to the agent protocol's WebSocket. drain() refuses
// new connections, lets in-flight requests finish and ends streams; the
// io_contexts then run out of work.
//
// Each connection lives on one of the io_contexts it is given (round
// robin), each meant to be run by one thread: a connection's handlers never
// wake another thread. (One io_context run by several threads wakes an idle
// one for nearly every handler; at 10,000 agents that cost more CPU than
// the handlers did.) The first one also accepts.
//
// What an unauthenticated peer can hold is bounded: open connections
// (503 beyond max_connections), WebSockets that have not said hello yet
// (503 beyond max_unauthenticated_agents; 64 KiB and 10 s to say it), and a
// request's head (431 beyond 64 KiB, 414 for a target beyond 8 KiB, 400 for
// one that does not parse). Running out of file descriptors pauses
// accepting instead of spinning.
//
// With enable_tls() every connection, the API's and the agents' WebSocket
// alike, is TLS; one whose handshake fails (plain HTTP sent to it) is
// closed without an answer.

#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace boost::asio {
class io_context;
}

namespace tranche {
class Fleet;
class Store;
}  // namespace tranche

namespace tranche::api {

class ControllerApi;
class Metrics;

struct HttpServerOptions {
  size_t body_limit = 1024 * 1024;
  // 0: derived from the open-files limit at start(), leaving room for the
  // store, logs and child processes.
  size_t max_connections = 0;
  size_t max_unauthenticated_agents = 1024;
};

// The listening socket, opened apart from the server and before it: the
// controller opens it before it reads its store, so that what connects
// while it starts (agents of a controller restarted in place, a CLI) waits
// in the kernel's accept queue, as with systemd's socket activation, rather
// than being refused and sent into its reconnect backoff.
class ListeningSocket {
 public:
  // Binds host (an IP address) and port (0: any free port) and listens; the
  // error says why it cannot.
  static Result<ListeningSocket> open(const std::string& host, unsigned short port);
  ListeningSocket(ListeningSocket&& other) noexcept;
  ListeningSocket& operator=(ListeningSocket&&) = delete;
  ~ListeningSocket();

  unsigned short port() const { return port_; }

 private:
  friend class HttpServer;
  ListeningSocket(int fd, bool v6, unsigned short port) : fd_(fd), v6_(v6), port_(port) {}

  int fd_;
  bool v6_;
  unsigned short port_;
};

class HttpServer {
 public:
  // Agents connect to `fleet` through the WebSocket /agent/v1/connect.
  // `contexts`: at least one; they must outlive the server.
  HttpServer(std::vector<boost::asio::io_context*> contexts, ControllerApi& api, Store& store, Fleet& fleet,
             Metrics& metrics, HttpServerOptions options);
  ~HttpServer();

  // Serves every connection over TLS: the certificate chain and key of
  // these PEM files. Before start(); an error when they do not load or match.
  Status enable_tls(const std::string& certificate_file, const std::string& key_file);
  // Starts accepting on `socket`.
  void start(ListeningSocket socket);
  // Thread-safe; idempotent.
  void drain();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tranche::api
