#pragma once
// Internal to the HTTP server, whose files reach it through
// http_server_state.h (Asio and Beast stay out of this folder's
// interfaces): the parts of a connection that outlive one request. An
// agent's WebSocket as the fleet's AgentLink, and what wakes an event
// stream.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <sys/ioctl.h>

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "engine/fleet/fleet.h"
#include "protocol/frames.h"

namespace tranche::api {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

// An event stream with nothing to send says so this often (a comment line),
// so that clients and proxies can tell a quiet stream from a dead one.
inline constexpr auto kStreamKeepalive = std::chrono::seconds(15);

// One agent's WebSocket (over a beast::tcp_stream, or TLS over one),
// usable from any thread: send() and close() post to the connection's
// strand, where writes go out one at a time in order.
template <class Stream>
class WebSocketAgentLink final : public AgentLink, public std::enable_shared_from_this<WebSocketAgentLink<Stream>> {
 public:
  WebSocketAgentLink(Strand strand, Stream&& stream)
      : strand_(strand),
        peer_address_(remote_address(boost::beast::get_lowest_layer(stream))),
        fd_(boost::beast::get_lowest_layer(stream).socket().native_handle()),
        ws_(std::move(stream)) {}

  boost::beast::websocket::stream<Stream>& ws() { return ws_; }

  void send(std::string message) override {
    boost::asio::post(strand_, [self = this->shared_from_this(), m = std::move(message)]() mutable {
      self->queue_.push_back(std::move(m));
      self->pump();
    });
  }

  // One post for the lot: the strand's thread is woken once, not per message.
  void send_all(std::vector<std::string> messages) override {
    boost::asio::post(strand_, [self = this->shared_from_this(), ms = std::move(messages)]() mutable {
      for (auto& m : ms) {
        self->queue_.push_back(std::move(m));
      }
      self->pump();
    });
  }

  void agree(int protocol) override {
    boost::asio::post(strand_, [self = this->shared_from_this(), protocol] {
      self->batching_ = protocol >= protocol::kBatchVersion;
      self->alone_ = self->queue_.size();  // the welcome, before which nothing was agreed
    });
  }

  std::string peer_address() const override { return peer_address_; }

  // The kernel's count, not the stream's: the socket itself is the strand's.
  bool has_unread_input() const override {
    int unread = 0;
    return ::ioctl(fd_, FIONREAD, &unread) == 0 && unread > 0;
  }

  void close(std::string reason) override { close_with(boost::beast::websocket::close_code::going_away, reason); }

  // Closes with "policy violation" (1008): the agent is not accepted, and
  // `reason` says why (its `error` message said it whole before).
  void refuse(std::string reason) { close_with(boost::beast::websocket::close_code::policy_error, reason); }

 private:
  void close_with(boost::beast::websocket::close_code code, std::string reason) {
    boost::asio::post(strand_, [self = this->shared_from_this(), code, reason = std::move(reason)] {
      if (self->closed_) {
        return;
      }
      self->closed_ = true;
      spdlog::info("closing agent connection: {}", reason);
      self->ws_.async_close(boost::beast::websocket::close_reason(code, frame_reason(reason)),
                            boost::asio::bind_executor(self->strand_, [self](boost::system::error_code) {}));
    });
  }

  // A close frame's reason holds 123 bytes (RFC 6455; Beast throws beyond):
  // a longer one is cut there, at the start of a UTF-8 character.
  static std::string frame_reason(const std::string& reason) {
    constexpr size_t kMax = boost::beast::websocket::reason_string::max_size_n;
    if (reason.size() <= kMax) {
      return reason;
    }
    size_t end = kMax;
    while (end > 0 && (static_cast<unsigned char>(reason[end]) & 0xC0) == 0x80) {
      --end;
    }
    return reason.substr(0, end);
  }

  // What queued up while the previous frame was written goes out in one
  // frame, once the agent speaks batches.
  void pump() {
    if (writing_ || closed_ || queue_.empty()) {
      return;
    }
    writing_ = true;
    const bool batch = batching_ && alone_ == 0;
    alone_ -= alone_ > 0 ? 1 : 0;
    frame_ = protocol::take_frame(queue_, batch);
    ws_.text(true);
    // The stream's own executor is the io_context's: without the strand the
    // completion would touch the queue and the stream concurrently with
    // send() and the read loop (seen as double frees under load, bench/rollout).
    ws_.async_write(
        boost::asio::buffer(frame_),
        boost::asio::bind_executor(strand_, [self = this->shared_from_this()](boost::system::error_code ec, size_t) {
          self->writing_ = false;
          if (ec) {
            self->closed_ = true;
            return;
          }
          self->pump();
        }));
  }

  static std::string remote_address(boost::beast::tcp_stream& stream) {
    boost::system::error_code ec;
    const auto endpoint = stream.socket().remote_endpoint(ec);
    return ec ? std::string() : endpoint.address().to_string();
  }

  Strand strand_;
  std::string peer_address_;
  int fd_;
  boost::beast::websocket::stream<Stream> ws_;
  std::deque<std::string> queue_;
  std::string frame_;  // being written
  bool writing_ = false;
  bool batching_ = false;  // protocol 3 agreed
  size_t alone_ = 0;       // messages at the queue's front that go one per frame
  bool closed_ = false;
};

// Wakes one event-stream connection when new events are committed. It lives
// on the connection's strand, so a wake-up between "nothing new" and "wait"
// is never lost.
class StreamWaker {
 public:
  explicit StreamWaker(Strand strand) : strand_(strand), timer_(strand) {}
  void wake() {
    boost::asio::post(strand_, [this] {
      pending_ = true;
      timer_.cancel();
    });
  }
  // True when woken, false when the keepalive interval passed quietly.
  boost::asio::awaitable<bool> wait() {
    if (!pending_) {
      timer_.expires_after(kStreamKeepalive);
      boost::system::error_code ec;
      co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
    const bool woken = pending_;
    pending_ = false;
    co_return woken;
  }

 private:
  Strand strand_;
  boost::asio::steady_timer timer_;
  bool pending_ = false;
};

}  // namespace tranche::api
