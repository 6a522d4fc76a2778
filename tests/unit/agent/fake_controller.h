#pragma once
// The controller's end of the agent protocol, as much as the agent's tests
// need: it welcomes every hello (unless told to hold its welcomes),
// acknowledges every result, records every message and sends the commands
// it is given; a plain GET is answered with the artifact served at its path
// to the host token. Its io_context runs on a thread of its own; the methods
// may be called from the test's thread.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "protocol/frames.h"
#include "protocol/messages.h"

namespace tranche::agent::test {

class FakeController {
 public:
  FakeController() {
    const boost::asio::ip::tcp::endpoint endpoint(boost::asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  FakeController(const FakeController&) = delete;
  FakeController& operator=(const FakeController&) = delete;
  ~FakeController() {
    io_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // True while an agent that has said hello is connected.
  bool connected() const {
    std::lock_guard lock(mu_);
    return connected_;
  }

  size_t hellos() const { return of_type("hello").size(); }

  // GET `path` with "Authorization: Bearer host-token" answers `body`.
  void serve_artifact(const std::string& path, std::string body) {
    std::lock_guard lock(mu_);
    artifacts_[path] = std::move(body);
  }

  // While held, hellos are recorded and their connections closed unwelcomed.
  void hold_welcomes(bool hold) {
    std::lock_guard lock(mu_);
    hold_welcomes_ = hold;
  }

  // Sends a command to the connected agent (dropped when none is). Written
  // by hand as on the wire, so that a test may send what no typed command
  // serialises to (a malformed spec, an unknown type).
  void command(const std::string& id, const std::string& type, const std::string& member, const nlohmann::json& spec) {
    send(command_text(id, type, member, spec));
  }

  // Sends these commands ({id, command, member, spec} each) to the connected
  // agent in one batch frame (protocol 3), each as command() writes it.
  void command_batch(const std::vector<nlohmann::json>& commands) {
    std::deque<std::string> messages;
    for (const auto& c : commands) {
      messages.push_back(command_text(c.at("id"), c.at("command"), c.at("member"), c.at("spec")));
    }
    send(protocol::take_frame(messages, true));
  }

  // The protocol version its welcomes agree (before the agent connects).
  void agree(int protocol) { protocol_ = protocol; }

  // How many messages came in batch frames.
  size_t batched() const {
    std::lock_guard lock(mu_);
    return batched_;
  }

  std::vector<nlohmann::json> of_type(const std::string& type) const {
    std::lock_guard lock(mu_);
    std::vector<nlohmann::json> out;
    for (const auto& m : messages_) {
      if (m.value("type", "") == type) {
        out.push_back(m);
      }
    }
    return out;
  }

  // Every result received for `id`, oldest first.
  std::vector<nlohmann::json> results(const std::string& id) const {
    std::vector<nlohmann::json> out;
    for (const auto& r : of_type("result")) {
      if (r.value("id", "") == id) {
        out.push_back(r);
      }
    }
    return out;
  }

  // The member's entry in the newest heartbeat that lists it.
  std::optional<nlohmann::json> report(const std::string& member) const {
    const auto beats = of_type("heartbeat");
    for (auto beat = beats.rbegin(); beat != beats.rend(); ++beat) {
      for (const auto& m : (*beat)["members"]) {
        if (m.value("id", "") == member) {
          return m;
        }
      }
    }
    return std::nullopt;
  }

  // Every state the member was reported in, by heartbeats and hellos, in order.
  std::vector<std::string> states(const std::string& member) const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& message : messages_) {
      const std::string type = message.value("type", "");
      if (type != "heartbeat" && type != "hello") {
        continue;
      }
      for (const auto& m : message["members"]) {
        if (m.value("id", "") == member) {
          out.push_back(m.value("state", ""));
        }
      }
    }
    return out;
  }

 private:
  using Socket = boost::beast::websocket::stream<boost::beast::tcp_stream>;
  struct Session {
    explicit Session(boost::asio::ip::tcp::socket&& socket) : ws(std::move(socket)) {}
    Socket ws;
    std::deque<std::string> outbox;
    bool writing = false;
  };

  boost::asio::awaitable<void> accept_loop() {
    while (true) {
      boost::system::error_code ec;
      auto socket = co_await acceptor_.async_accept(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      boost::asio::co_spawn(io_, route(std::move(socket)), boost::asio::detached);
    }
  }

  // A WebSocket upgrade goes to serve(); any other request is an artifact's GET.
  boost::asio::awaitable<void> route(boost::asio::ip::tcp::socket socket) {
    namespace http = boost::beast::http;
    boost::system::error_code ec;
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    co_await http::async_read(socket, buffer, request, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
    if (boost::beast::websocket::is_upgrade(request)) {
      co_await serve(std::make_shared<Session>(std::move(socket)), request);
      co_return;
    }
    http::response<http::string_body> response(http::status::not_found, 11);
    {
      std::lock_guard lock(mu_);
      const auto it = artifacts_.find(std::string(request.target()));
      if (request[http::field::authorization] != "Bearer host-token") {
        response.result(http::status::unauthorized);
        response.body() = "not authorized\n";
      } else if (it != artifacts_.end()) {
        response.result(http::status::ok);
        response.body() = it->second;
      } else {
        response.body() = "no such artifact\n";
      }
    }
    response.prepare_payload();
    co_await http::async_write(socket, response, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }

  boost::asio::awaitable<void> serve(std::shared_ptr<Session> session,
                                     const boost::beast::http::request<boost::beast::http::string_body>& request) {
    boost::system::error_code ec;
    co_await session->ws.async_accept(request, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    boost::beast::flat_buffer buffer;
    while (!ec) {
      buffer.clear();
      co_await session->ws.async_read(buffer, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) {
        break;
      }
      const protocol::Frame frame = protocol::parse_frame(boost::beast::buffers_to_string(buffer.data()));
      bool refused = false;
      for (const auto& parsed : frame.messages) {
        if (!parsed) {
          continue;
        }
        const auto& [type, message] = *parsed;
        {
          std::lock_guard lock(mu_);
          messages_.push_back(message);
          batched_ += frame.batch ? 1 : 0;
          if (type == "hello") {
            connected_ = true;
          }
        }
        if (type == "hello") {
          session_ = session;
          if (holding_welcomes()) {
            refused = true;  // closes the connection: the agent tries again
            break;
          }
          enqueue(session, protocol::to_json(protocol::Welcome{"h-test", "host-token", 0.2, protocol_}).dump());
        } else if (type == "result") {
          enqueue(session, protocol::to_json(protocol::Ack{message.value("id", "")}).dump());
        }
      }
      if (refused) {
        break;
      }
    }
    if (session_ == session) {
      session_.reset();
      std::lock_guard lock(mu_);
      connected_ = false;
    }
  }

  static std::string command_text(const std::string& id, const std::string& type, const std::string& member,
                                  const nlohmann::json& spec) {
    return nlohmann::json{{"type", "command"}, {"id", id}, {"command", type}, {"member", member}, {"spec", spec}}.dump();
  }

  // A frame to the connected agent, dropped when none is.
  void send(std::string text) {
    boost::asio::post(io_, [this, text = std::move(text)] {
      if (session_) {
        enqueue(session_, text);
      }
    });
  }

  bool holding_welcomes() const {
    std::lock_guard lock(mu_);
    return hold_welcomes_;
  }

  void enqueue(const std::shared_ptr<Session>& session, std::string text) {
    session->outbox.push_back(std::move(text));
    if (!session->writing) {
      session->writing = true;
      boost::asio::co_spawn(io_, drain(session), boost::asio::detached);
    }
  }

  boost::asio::awaitable<void> drain(std::shared_ptr<Session> session) {
    while (!session->outbox.empty()) {
      const std::string text = std::move(session->outbox.front());
      session->outbox.pop_front();
      boost::system::error_code ec;
      session->ws.text(true);
      co_await session->ws.async_write(boost::asio::buffer(text),
                                       boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) {
        break;
      }
    }
    session->writing = false;
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  unsigned short port_ = 0;
  std::thread thread_;
  std::shared_ptr<Session> session_;  // the io thread's only

  int protocol_ = protocol::kVersion;  // set before the agent connects

  mutable std::mutex mu_;
  std::vector<nlohmann::json> messages_;
  size_t batched_ = 0;
  bool connected_ = false;
  std::map<std::string, std::string> artifacts_;  // path -> body
  bool hold_welcomes_ = false;
};

}  // namespace tranche::agent::test
