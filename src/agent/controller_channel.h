#pragma once
// The agent's WebSocket to the controller (/agent/v1/connect): ws:// over
// TCP for an http:// server, wss:// for an https:// one, the controller's
// certificate checked against the pinned CA and the host dialled. The agent
// reads and writes messages through it without knowing which.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "common/error.h"

namespace tranche::agent {

class ControllerChannel {
 public:
  virtual ~ControllerChannel() = default;

  // One whole message into `buffer`; an error when the connection is lost.
  virtual boost::asio::awaitable<boost::system::error_code> read(boost::beast::flat_buffer& buffer) = 0;
  // One text message; at most one write at a time.
  virtual boost::asio::awaitable<boost::system::error_code> write(const std::string& text) = 0;
  // Closes the socket, ending whatever waits on it.
  virtual void close() = 0;
  // The controller's close frame once one came, "CODE REASON" (1008 and
  // why, for an agent refused); empty before.
  virtual std::string close_reason() const = 0;
};

// Connects to `server` ("http://HOST:PORT" or "https://HOST:PORT") and
// completes the WebSocket handshake. `ca_file`: the CA an https:// server's
// certificate must chain to (empty: the system's CAs); read again on every
// connection, so that a CA replaced meanwhile is the one trusted.
boost::asio::awaitable<Result<std::unique_ptr<ControllerChannel>>> open_controller_channel(boost::asio::io_context& io,
                                                                                           const std::string& server,
                                                                                           const std::string& ca_file);

}  // namespace tranche::agent
