// The CLI's client against servers made for the occasion: one that accepts
// and never answers (the request deadline), and a TLS server whose
// certificate the client must check against the CA it pins.
#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "cli/client.h"

#include <unistd.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include "common/tls_context.h"
#include "common/tls_files.h"

namespace tranche::cli {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tranche-client-XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) {
      path_ = pattern;
    }
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name) << content;
    return path_ / name;
  }

 private:
  fs::path path_;
};

// Accepts connections and never sends a byte.
class SilentServer {
 public:
  SilentServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~SilentServer() {
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  size_t accepted() const { return accepted_; }

 private:
  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (!ec) {
        held_.push_back(std::move(socket));
        ++accepted_;
        accept();
      }
    });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> held_;
  std::atomic<size_t> accepted_{0};
  std::thread thread_;
};

// A TLS server that answers every request "200 ok", or one Server-Sent
// Event to a request that accepts them.
class TlsServer {
 public:
  TlsServer(const fs::path& certificate, const fs::path& key)
      : context_(ssl::context::tls_server), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    auto ok = configure_tls_server(context_.native_handle(), certificate.string(), key.string());
    EXPECT_TRUE(ok) << ok.error().describe();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TlsServer() {
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  size_t handshakes() const { return handshakes_; }

 private:
  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (!ec) {
        asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
        accept();
      }
    });
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    ssl::stream<tcp::socket> tls(std::move(socket), context_);
    error_code ec;
    co_await tls.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
    ++handshakes_;
    asio::streambuf request;
    co_await asio::async_read_until(tls, request, "\r\n\r\n", asio::redirect_error(asio::use_awaitable, ec));
    const std::string head(asio::buffers_begin(request.data()), asio::buffers_end(request.data()));
    const std::string answer =
        head.find("text/event-stream") != std::string::npos
            ? "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {\"seq\":1}\n\n"
            : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    co_await asio::async_write(tls, asio::buffer(answer), asio::redirect_error(asio::use_awaitable, ec));
    co_await tls.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::io_context io_;
  ssl::context context_;
  tcp::acceptor acceptor_;
  std::atomic<size_t> handshakes_{0};
  std::thread thread_;
};

TEST(ApiClientTimeout, ASilentServerIsGivenUpOnAfterTheTimeoutNamingTheServer) {
  SilentServer server;
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
  ApiClient client(url, "", TransportOptions{"", 300ms});
  const auto started = std::chrono::steady_clock::now();
  auto reply = client.send("GET", "/api/v1/applications");
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(reply.error().message.find(url), std::string::npos) << reply.error().message;
  EXPECT_NE(reply.error().message.find("within 300ms"), std::string::npos) << reply.error().message;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(server.accepted(), 1u);
}

TEST(ApiClientTimeout, AnEventStreamWhoseHeadersNeverComeTimesOutToo) {
  SilentServer server;
  ApiClient client("http://127.0.0.1:" + std::to_string(server.port()), "", TransportOptions{"", 300ms});
  const auto started = std::chrono::steady_clock::now();
  auto streamed = client.stream("/api/v1/events?follow=1", [](const std::string&) { return true; });
  ASSERT_FALSE(streamed);
  EXPECT_NE(streamed.error().message.find("within 300ms"), std::string::npos) << streamed.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST(ApiClientTimeout, ATlsHandshakeThatNeverCompletesTimesOut) {
  SilentServer server;
  ApiClient client("https://127.0.0.1:" + std::to_string(server.port()), "", TransportOptions{"", 300ms});
  auto reply = client.send("GET", "/version");
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("within 300ms"), std::string::npos) << reply.error().message;
}

class ApiClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = create_certificate_authority("client test CA");
    auto other_ca = create_certificate_authority("someone else's CA");
    ASSERT_TRUE(ca && other_ca);
    auto server = issue_server_certificate(*ca, {"127.0.0.1", "localhost"}, 24h);
    auto localhost_only = issue_server_certificate(*ca, {"localhost"}, 24h);
    ASSERT_TRUE(server && localhost_only);
    ca_file_ = dir_.write("ca.crt", ca->certificate);
    other_ca_file_ = dir_.write("other-ca.crt", other_ca->certificate);
    certificate_ = dir_.write("server.crt", server->certificate);
    key_ = dir_.write("server.key", server->private_key);
    localhost_certificate_ = dir_.write("localhost.crt", localhost_only->certificate);
    localhost_key_ = dir_.write("localhost.key", localhost_only->private_key);
  }

  TempDir dir_;
  fs::path ca_file_, other_ca_file_, certificate_, key_, localhost_certificate_, localhost_key_;
};

TEST_F(ApiClientTlsTest, TheRightCaIsTrusted) {
  TlsServer server(certificate_, key_);
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    ApiClient client("https://" + host + ":" + std::to_string(server.port()), "t", TransportOptions{ca_file_.string()});
    auto reply = client.send("GET", "/version");
    ASSERT_TRUE(reply) << host << ": " << reply.error().describe();
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->body, "ok");
  }
}

TEST_F(ApiClientTlsTest, AnEventStreamOverTlsDeliversItsEventsAndEnds) {
  TlsServer server(certificate_, key_);
  ApiClient client("https://127.0.0.1:" + std::to_string(server.port()), "t", TransportOptions{ca_file_.string()});
  std::vector<std::string> events;
  auto streamed = client.stream("/api/v1/events?follow=1", [&](const std::string& data) {
    events.push_back(data);
    return true;
  });
  ASSERT_TRUE(streamed) << streamed.error().describe();
  EXPECT_EQ(events, std::vector<std::string>{"{\"seq\":1}"});
}

TEST_F(ApiClientTlsTest, AServerCertificateOfAnotherCaIsRefused) {
  TlsServer server(certificate_, key_);
  ApiClient client("https://127.0.0.1:" + std::to_string(server.port()), "t",
                   TransportOptions{other_ca_file_.string()});
  auto reply = client.send("GET", "/version");
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("certificate verify failed"), std::string::npos) << reply.error().message;
  EXPECT_NE(reply.error().message.find(other_ca_file_.string()), std::string::npos) << reply.error().message;
  EXPECT_EQ(server.handshakes(), 0u);
}

TEST_F(ApiClientTlsTest, ACertificateThatDoesNotNameTheAddressDialledIsRefused) {
  TlsServer server(localhost_certificate_, localhost_key_);
  ApiClient by_address("https://127.0.0.1:" + std::to_string(server.port()), "t", TransportOptions{ca_file_.string()});
  auto reply = by_address.send("GET", "/version");
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("IP address mismatch"), std::string::npos) << reply.error().message;
  ApiClient by_name("https://localhost:" + std::to_string(server.port()), "t", TransportOptions{ca_file_.string()});
  EXPECT_TRUE(by_name.send("GET", "/version"));
}

TEST_F(ApiClientTlsTest, AMissingCaFileIsAnErrorNotTheSystemsCas) {
  TlsServer server(certificate_, key_);
  ApiClient client("https://127.0.0.1:" + std::to_string(server.port()), "t",
                   TransportOptions{(ca_file_.parent_path() / "missing.crt").string()});
  auto reply = client.send("GET", "/version");
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().field, "ca");
}

TEST_F(ApiClientTlsTest, PlainHttpToATlsServerGetsNoAnswer) {
  TlsServer server(certificate_, key_);
  ApiClient client("http://127.0.0.1:" + std::to_string(server.port()), "t", TransportOptions{"", 5s});
  auto reply = client.send("GET", "/version");
  ASSERT_FALSE(reply);
  EXPECT_EQ(server.handshakes(), 0u);
}

}  // namespace
}  // namespace tranche::cli
