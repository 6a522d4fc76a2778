#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "cli/client.h"

#include <algorithm>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/gzip.h"
#include "common/server_url.h"
#include "common/time_format.h"
#include "common/tls_context.h"

namespace tranche::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// An answer's body at most, as sent and once decompressed.
constexpr size_t kMaxAnswerBytes = 64 * 1024 * 1024;

// One request's connection to the controller, plain or TLS, with one
// deadline over all of it: when it passes, the resolver is cancelled and the
// socket closed, which ends whatever was waiting on them.
class Connection {
 public:
  Connection(ServerUrl url, const TransportOptions& transport)
      : url_(std::move(url)),
        transport_(transport),
        resolver_(io_),
        socket_(io_),
        deadline_(io_),
        tls_context_(ssl::context::tls_client) {}

  // Connects and runs `exchange(stream)` on the connected stream (the
  // socket, or TLS over it); returns its result, or why it never ran.
  template <class T, class Exchange>
  Result<T> run(Exchange& exchange) {
    std::optional<Result<T>> result;
    extend_deadline(transport_.timeout);
    asio::co_spawn(io_, connect_and_exchange<T>(exchange), [&](std::exception_ptr failure, Result<T> outcome) {
      deadline_.cancel();
      if (failure) {
        std::rethrow_exception(failure);  // a bug (or no memory), not an answer
      }
      result = std::move(outcome);
    });
    io_.run();
    return std::move(*result);
  }

  // The deadline is now `from_now` away (an event stream moves it on with
  // every line it reads).
  void extend_deadline(std::chrono::milliseconds from_now) {
    deadline_.expires_after(from_now);
    deadline_.async_wait([this, from_now](error_code ec) {
      if (ec) {
        return;  // moved or cancelled
      }
      expired_after_ = from_now;
      resolver_.cancel();
      error_code ignored;
      socket_.close(ignored);
    });
  }

  // What went wrong with `what`, naming the server; the deadline, when it
  // is what ended the operation.
  std::unexpected<Error> failure(const std::string& what, const std::string& detail) const {
    if (expired_after_) {
      return fail(ErrorCode::kUnavailable, "no answer from the controller at " + url_.text + " within " +
                                               format_duration(*expired_after_) + " (--timeout)");
    }
    return fail(ErrorCode::kUnavailable, what + ": " + detail);
  }

 private:
  template <class T, class Exchange>
  asio::awaitable<Result<T>> connect_and_exchange(Exchange& exchange) {
    error_code ec;
    auto endpoints =
        co_await resolver_.async_resolve(url_.host, url_.port, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await asio::async_connect(socket_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      co_return failure("cannot reach the controller at " + url_.text, ec.message());
    }
    if (!url_.tls) {
      co_return co_await exchange(socket_);
    }
    if (auto ok = configure_tls_client(tls_context_.native_handle(), transport_.ca_file); !ok) {
      co_return std::unexpected(ok.error());
    }
    ssl::stream<tcp::socket&> tls(socket_, tls_context_);
    if (auto ok = expect_server_name(tls.native_handle(), url_.host); !ok) {
      co_return std::unexpected(ok.error());
    }
    co_await tls.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      const std::string trusted = transport_.ca_file.empty() ? "the system's CAs" : "CA " + transport_.ca_file;
      co_return failure("TLS handshake with " + url_.text + " failed (trusting " + trusted + ")",
                        describe_handshake_failure(tls.native_handle(), ec.message()));
    }
    co_return co_await exchange(tls);
  }

  ServerUrl url_;
  TransportOptions transport_;
  asio::io_context io_;
  tcp::resolver resolver_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  ssl::context tls_context_;
  std::optional<std::chrono::milliseconds> expired_after_;
};

// The end of an event stream: the server closed (over TLS, with or without
// saying so first).
bool is_end_of_stream(const error_code& ec) { return ec == asio::error::eof || ec == ssl::error::stream_truncated; }

}  // namespace

Result<Reply> ApiClient::send(const std::string& method, const std::string& target, const std::string& body,
                              const std::string& content_type) const {
  auto url = parse_server_url(server_);
  if (!url) {
    return std::unexpected(url.error());
  }
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, url->authority());
  req.set(http::field::user_agent, "tranche-cli");
  req.set(http::field::accept_encoding, "gzip");  // a large application's view is ~50 times smaller so
  if (!token_.empty()) {
    req.set(http::field::authorization, "Bearer " + token_);
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.prepare_payload();
  Connection connection(*url, transport_);
  auto exchange = [&](auto& stream) -> asio::awaitable<Result<Reply>> {
    error_code ec;
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    // Read the answer even when the write failed: a server refusing a large
    // body (413) answers and stops reading before the body is sent.
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswerBytes);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return connection.failure("request to " + server_ + target + " failed", ec.message());
    }
    const auto& answer = parser.get();
    const int status = static_cast<int>(answer.result_int());
    if (!beast::iequals(answer[http::field::content_encoding], "gzip")) {
      co_return Reply{status, answer.body()};
    }
    auto inflated = gunzip(answer.body(), kMaxAnswerBytes);
    if (!inflated) {
      co_return fail(ErrorCode::kUnavailable,
                     "the answer of " + server_ + target + " does not decompress: " + inflated.error().message);
    }
    co_return Reply{status, std::move(*inflated)};
  };
  return connection.run<Reply>(exchange);
}

Result<Reply> ApiClient::send_file(const std::string& method, const std::string& target,
                                   const std::string& path) const {
  auto url = parse_server_url(server_);
  if (!url) {
    return std::unexpected(url.error());
  }
  http::request<http::file_body> req{http::string_to_verb(method), target, 11};
  error_code opened;
  req.body().open(path.c_str(), beast::file_mode::scan, opened);
  if (opened) {
    return fail(ErrorCode::kInvalid, "cannot read " + path + ": " + opened.message(), "PATH");
  }
  req.set(http::field::host, url->authority());
  req.set(http::field::user_agent, "tranche-cli");
  if (!token_.empty()) {
    req.set(http::field::authorization, "Bearer " + token_);
  }
  req.set(http::field::content_type, "application/octet-stream");
  req.prepare_payload();
  Connection connection(*url, transport_);
  auto exchange = [&](auto& stream) -> asio::awaitable<Result<Reply>> {
    error_code ec;
    http::request_serializer<http::file_body> serializer(req);
    co_await http::async_write(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    // A refusal (409, 413) may come before the whole body went: read it anyway.
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return connection.failure("upload to " + server_ + target + " failed", ec.message());
    }
    co_return Reply{static_cast<int>(parser.get().result_int()), parser.get().body()};
  };
  return connection.run<Reply>(exchange);
}

Status ApiClient::stream(const std::string& target, const std::function<bool(const std::string&)>& on_data) const {
  auto url = parse_server_url(server_);
  if (!url) {
    return std::unexpected(url.error());
  }
  std::string request =
      "GET " + target + " HTTP/1.1\r\nHost: " + url->authority() + "\r\nAccept: text/event-stream\r\n";
  if (!token_.empty()) {
    request += "Authorization: Bearer " + token_ + "\r\n";
  }
  request += "\r\n";
  const auto silence = std::max(transport_.timeout, kStreamSilence);
  Connection connection(*url, transport_);
  auto exchange = [&](auto& stream) -> asio::awaitable<Status> {
    error_code ec;
    co_await asio::async_write(stream, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
    asio::streambuf buffer;
    if (!ec) {
      co_await asio::async_read_until(stream, buffer, "\r\n\r\n", asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      co_return connection.failure("event stream from " + server_ + " failed", ec.message());
    }
    std::istream in(&buffer);
    std::string status_line;
    std::getline(in, status_line);
    int status = 0;
    if (status_line.size() >= 12) {
      status = std::atoi(status_line.c_str() + 9);
    }
    for (std::string header; std::getline(in, header) && header != "\r";) {
    }
    if (status != 200) {
      // The refusal's body, as much as arrives before the server closes.
      std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      co_await asio::async_read(stream, buffer, asio::redirect_error(asio::use_awaitable, ec));
      rest.append((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      co_return fail(error_code_from_http_status(status), "server answered " + std::to_string(status) + ": " + rest);
    }
    // Lines of "data: ..." accumulate until a blank line ends the event.
    std::string data;
    for (;;) {
      connection.extend_deadline(silence);
      co_await asio::async_read_until(stream, buffer, "\n", asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (is_end_of_stream(ec)) {
          co_return Status{};
        }
        co_return connection.failure("event stream from " + server_ + " interrupted", ec.message());
      }
      std::string line;
      std::getline(in, line);
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      if (line.starts_with("data: ")) {
        data += line.substr(6);
      } else if (line.empty() && !data.empty()) {
        if (!on_data(data)) {
          co_return Status{};
        }
        data.clear();
      }
    }
  };
  return connection.run<void>(exchange);
}

}  // namespace tranche::cli
