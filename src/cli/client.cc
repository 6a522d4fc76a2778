#include <utility>

#include "cli/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace tranche::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Endpoint {
  std::string host;
  std::string port;
};

Result<Endpoint> parse_server(const std::string& server) {
  constexpr std::string_view kScheme = "http://";
  if (server.starts_with("https://")) {
    return fail(ErrorCode::kInvalid, "https servers are not supported by this client yet: " + server, "server");
  }
  if (!server.starts_with(kScheme)) {
    return fail(ErrorCode::kInvalid, "server must look like http://HOST:PORT, got '" + server + "'", "server");
  }
  std::string rest = server.substr(kScheme.size());
  while (!rest.empty() && rest.back() == '/') {
    rest.pop_back();
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) {
    return Endpoint{rest, "80"};
  }
  return Endpoint{rest.substr(0, colon), rest.substr(colon + 1)};
}

Result<tcp::socket> connect(asio::io_context& io, const std::string& server) {
  auto endpoint = parse_server(server);
  if (!endpoint) {
    return std::unexpected(endpoint.error());
  }
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(endpoint->host, endpoint->port, ec);
  tcp::socket socket(io);
  if (!ec) {
    asio::connect(socket, results, ec);
  }
  if (ec) {
    return fail(ErrorCode::kUnavailable, "cannot reach the controller at " + server + ": " + ec.message());
  }
  return socket;
}

}  // namespace

Result<Reply> ApiClient::send(const std::string& method, const std::string& target, const std::string& body,
                              const std::string& content_type) const {
  asio::io_context io;
  auto socket = connect(io, server_);
  if (!socket) {
    return std::unexpected(socket.error());
  }
  beast::tcp_stream stream(std::move(*socket));
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "tranche");
  req.set(http::field::user_agent, "tranche-cli");
  if (!token_.empty()) {
    req.set(http::field::authorization, "Bearer " + token_);
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.prepare_payload();
  boost::system::error_code ec;
  http::write(stream, req, ec);
  // Read the answer even when the write failed: a server refusing a large
  // body (413) answers and stops reading before the body is sent.
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, "request to " + server_ + target + " failed: " + ec.message());
  }
  return Reply{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

Status ApiClient::stream(const std::string& target, const std::function<bool(const std::string&)>& on_data) const {
  asio::io_context io;
  auto socket = connect(io, server_);
  if (!socket) {
    return std::unexpected(socket.error());
  }
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: tranche\r\nAccept: text/event-stream\r\n";
  if (!token_.empty()) {
    request += "Authorization: Bearer " + token_ + "\r\n";
  }
  request += "\r\n";
  boost::system::error_code ec;
  asio::write(*socket, asio::buffer(request), ec);
  asio::streambuf buffer;
  if (!ec) {
    asio::read_until(*socket, buffer, "\r\n\r\n", ec);
  }
  if (ec) {
    return fail(ErrorCode::kUnavailable, "event stream from " + server_ + " failed: " + ec.message());
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
    std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    asio::read(*socket, buffer, ec);
    rest.append((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return fail(error_code_from_http_status(status), "server answered " + std::to_string(status) + ": " + rest);
  }
  // Lines of "data: ..." accumulate until a blank line ends the event.
  std::string data;
  for (;;) {
    asio::read_until(*socket, buffer, "\n", ec);
    if (ec) {
      return ec == asio::error::eof ? Status{}
                                    : fail(ErrorCode::kUnavailable, "event stream interrupted: " + ec.message());
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
        return {};
      }
      data.clear();
    }
  }
}

}  // namespace tranche::cli
