#include "agent/controller_channel.h"

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "common/server_url.h"
#include "common/tls_context.h"

namespace tranche::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto kConnectTimeout = 5s;
// The controller's limit for agents' messages, kept for its messages too.
constexpr size_t kMessageLimit = 16 * 1024 * 1024;

template <class NextLayer>
class WebSocketChannel final : public ControllerChannel {
 public:
  // `tls_context` (null over plain TCP) lives as long as the stream that uses it.
  template <class... StreamArgs>
  explicit WebSocketChannel(std::unique_ptr<ssl::context> tls_context, StreamArgs&&... stream_args)
      : tls_context_(std::move(tls_context)), ws_(std::forward<StreamArgs>(stream_args)...) {}

  websocket::stream<NextLayer>& ws() { return ws_; }

  asio::awaitable<error_code> read(beast::flat_buffer& buffer) override {
    error_code ec;
    co_await ws_.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }

  asio::awaitable<error_code> write(const std::string& text) override {
    error_code ec;
    ws_.text(true);
    co_await ws_.async_write(asio::buffer(text), asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }

  void close() override {
    error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  std::string close_reason() const override {
    const websocket::close_reason& r = ws_.reason();
    if (r.code == websocket::close_code::none) {
      return {};
    }
    return std::to_string(r.code) + (r.reason.empty() ? "" : " " + std::string(r.reason.data(), r.reason.size()));
  }

 private:
  std::unique_ptr<ssl::context> tls_context_;
  websocket::stream<NextLayer> ws_;
};

using PlainChannel = WebSocketChannel<beast::tcp_stream>;
using TlsChannel = WebSocketChannel<beast::ssl_stream<beast::tcp_stream>>;

// Results, events and acks are small frames: none may wait in the kernel
// for the ack of the one before it (Nagle's algorithm against the
// controller's delayed ack). Only latency depends on it.
void no_delay(tcp::socket& socket) {
  error_code ec;
  if (socket.set_option(tcp::no_delay(true), ec); ec) {
    spdlog::debug("TCP_NODELAY not set on the connection to the controller: {}", ec.message());
  }
}

// The WebSocket handshake on a connected (and, for TLS, secured) stream.
template <class Channel>
asio::awaitable<error_code> upgrade(Channel& channel, const ServerUrl& url) {
  auto& ws = channel.ws();
  beast::get_lowest_layer(ws).expires_never();  // from here on, the WebSocket's own timeouts
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  ws.read_message_max(kMessageLimit);
  error_code ec;
  co_await ws.async_handshake(url.authority(), "/agent/v1/connect", asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

}  // namespace

asio::awaitable<Result<std::unique_ptr<ControllerChannel>>> open_controller_channel(asio::io_context& io,
                                                                                    const std::string& server,
                                                                                    const std::string& ca_file) {
  auto url = parse_server_url(server);
  if (!url) {
    co_return std::unexpected(url.error());
  }
  error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = co_await resolver.async_resolve(url->host, url->port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "cannot resolve " + url->text + ": " + ec.message());
  }
  const auto cannot_connect = [&](const std::string& why) {
    return fail(ErrorCode::kUnavailable, "cannot connect to " + url->text + ": " + why);
  };
  if (!url->tls) {
    auto channel = std::make_unique<PlainChannel>(nullptr, io);
    beast::get_lowest_layer(channel->ws()).expires_after(kConnectTimeout);
    co_await beast::get_lowest_layer(channel->ws())
        .async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      no_delay(beast::get_lowest_layer(channel->ws()).socket());
      ec = co_await upgrade(*channel, *url);
    }
    if (ec) {
      co_return cannot_connect(ec.message());
    }
    co_return std::unique_ptr<ControllerChannel>(std::move(channel));
  }
  auto tls_context = std::make_unique<ssl::context>(ssl::context::tls_client);
  if (auto ok = configure_tls_client(tls_context->native_handle(), ca_file); !ok) {
    co_return std::unexpected(ok.error());
  }
  ssl::context& context = *tls_context;
  auto channel = std::make_unique<TlsChannel>(std::move(tls_context), io, context);
  auto& tls = channel->ws().next_layer();
  if (auto ok = expect_server_name(tls.native_handle(), url->host); !ok) {
    co_return std::unexpected(ok.error());
  }
  beast::get_lowest_layer(channel->ws()).expires_after(kConnectTimeout);
  co_await beast::get_lowest_layer(channel->ws())
      .async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return cannot_connect(ec.message());
  }
  no_delay(beast::get_lowest_layer(channel->ws()).socket());
  co_await tls.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    const std::string trusted = ca_file.empty() ? "the system's CAs" : "CA " + ca_file;
    co_return cannot_connect("TLS handshake failed (trusting " + trusted +
                             "): " + describe_handshake_failure(tls.native_handle(), ec.message()));
  }
  ec = co_await upgrade(*channel, *url);
  if (ec) {
    co_return cannot_connect(ec.message());
  }
  co_return std::unique_ptr<ControllerChannel>(std::move(channel));
}

}  // namespace tranche::agent
