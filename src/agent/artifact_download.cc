#include "agent/artifact_download.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/server_url.h"
#include "common/tls_context.h"

namespace tranche::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

template <class Stream>
asio::awaitable<Result<std::string>> exchange(Stream& stream, const ServerUrl& url, const ArtifactRequest& request) {
  http::request<http::empty_body> get{http::verb::get, request.path, 11};
  get.set(http::field::host, url.authority());
  get.set(http::field::authorization, "Bearer " + request.token);
  get.set(http::field::user_agent, "tranche-agent");
  error_code ec;
  co_await http::async_write(stream, get, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "GET " + request.path + ": " + ec.message());
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(static_cast<uint64_t>(request.max_bytes));
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == http::error::body_limit) {
    co_return fail(ErrorCode::kInvalid,
                   "GET " + request.path + ": the artifact is larger than the " + std::to_string(request.max_bytes) +
                       " bytes announced",
                   "spec.size");
  }
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "GET " + request.path + ": " + ec.message());
  }
  auto response = parser.release();
  if (response.result() != http::status::ok) {
    std::string body = response.body().substr(0, response.body().find('\n'));
    if (body.size() > 200) {
      body = body.substr(0, 200) + "...";
    }
    co_return fail(ErrorCode::kUnavailable,
                   "GET " + request.path + ": " + std::to_string(response.result_int()) + " " + body);
  }
  co_return std::move(response.body());
}

}  // namespace

asio::awaitable<Result<std::string>> download_artifact(asio::io_context& io, ArtifactRequest request) {
  auto url = parse_server_url(request.server);
  if (!url) {
    co_return std::unexpected(url.error());
  }
  error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = co_await resolver.async_resolve(url->host, url->port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "cannot resolve " + url->text + ": " + ec.message());
  }
  if (!url->tls) {
    beast::tcp_stream stream(io);
    stream.expires_after(request.timeout);  // the whole download
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return fail(ErrorCode::kUnavailable, "cannot connect to " + url->text + ": " + ec.message());
    }
    co_return co_await exchange(stream, *url, request);
  }
  ssl::context context(ssl::context::tls_client);
  if (auto ok = configure_tls_client(context.native_handle(), request.ca_file); !ok) {
    co_return std::unexpected(ok.error());
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  if (auto ok = expect_server_name(stream.native_handle(), url->host); !ok) {
    co_return std::unexpected(ok.error());
  }
  beast::get_lowest_layer(stream).expires_after(request.timeout);
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "cannot connect to " + url->text + ": " + ec.message());
  }
  co_await stream.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(ErrorCode::kUnavailable, "cannot connect to " + url->text + ": TLS handshake failed: " +
                                                describe_handshake_failure(stream.native_handle(), ec.message()));
  }
  co_return co_await exchange(stream, *url, request);
}

}  // namespace tranche::agent
