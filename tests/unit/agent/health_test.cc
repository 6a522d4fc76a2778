#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "agent/health.h"
#include "agent_test_util.h"

namespace tranche::agent {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// A listening socket on 127.0.0.1 with an ephemeral port.
int listen_loopback(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot listen");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A port nothing listens on (bound, read and released).
int closed_port() {
  int port = 0;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string response(int status, const std::string& body, bool content_length = true) {
  std::string text = "HTTP/1.1 " + std::to_string(status) + " Whatever\r\nContent-Type: application/json\r\n";
  if (content_length) {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return text + "Connection: close\r\n\r\n" + body;
}

// A tiny HTTP server on a thread: answers each request with what `respond`
// returns for it, then closes the connection.
class TestServer {
 public:
  explicit TestServer(std::function<std::string(const std::string&)> respond) : respond_(std::move(respond)) {
    listen_fd_ = listen_loopback(&port_);
    thread_ = std::thread([this] { serve(); });
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  ~TestServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  std::string last_request() {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) {
        continue;
      }
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        continue;
      }
      timeval tv{2, 0};
      ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0) {
          break;
        }
        request.append(buffer, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        last_request_ = request;
      }
      const std::string reply = respond_(request);
      size_t sent = 0;
      while (sent < reply.size()) {
        const ssize_t n = ::send(client, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
          break;
        }
        sent += static_cast<size_t>(n);
      }
      ::close(client);
    }
  }

  std::function<std::string(const std::string&)> respond_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string last_request_;
  std::thread thread_;
};

TEST(ProbeHttpTest, OkOn2xxAnd3xx) {
  TestServer server([](const std::string&) { return response(200, "ok"); });
  const auto result = probe_http(server.port(), "/healthz", 2s);
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_EQ(result.message, "status 200");
  const auto request = server.last_request();
  EXPECT_THAT(request, ::testing::StartsWith("GET /healthz HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("\r\nHost: 127.0.0.1\r\n"));
  EXPECT_THAT(request, HasSubstr("\r\nConnection: close\r\n"));

  TestServer redirect([](const std::string&) { return response(302, ""); });
  EXPECT_TRUE(probe_http(redirect.port(), "healthz", 2s).ok);
  EXPECT_THAT(redirect.last_request(), ::testing::StartsWith("GET /healthz HTTP/1.1\r\n"));
}

TEST(ProbeHttpTest, FailsOnErrorStatus) {
  TestServer server([](const std::string&) { return response(500, "broken"); });
  const auto result = probe_http(server.port(), "/healthz", 2s);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.message, "status 500");
}

TEST(ProbeHttpTest, FailsOnRefusedConnection) {
  const auto result = probe_http(closed_port(), "/healthz", 2s);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.message, "connect refused");
}

TEST(ProbeHttpTest, FailsOnGarbage) {
  TestServer server([](const std::string&) { return std::string("SSH-2.0-OpenSSH\r\n\r\n"); });
  const auto result = probe_http(server.port(), "/", 2s);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.message, "bad response");

  TestServer silent([](const std::string&) { return std::string(); });
  EXPECT_FALSE(probe_http(silent.port(), "/", 2s).ok);
}

TEST(ProbeHttpTest, TimesOutOnASilentServer) {
  int port = 0;
  const int fd = listen_loopback(&port);  // accepted by the backlog, never answered
  const auto begun = std::chrono::steady_clock::now();
  const auto result = probe_http(port, "/healthz", 200ms);
  const auto took = std::chrono::steady_clock::now() - begun;
  ::close(fd);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.message, "timeout");
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 5s);
}

TEST(ProbeTcpTest, OpenAndClosedPorts) {
  int port = 0;
  const int fd = listen_loopback(&port);
  const auto open = probe_tcp(port, 2s);
  ::close(fd);
  EXPECT_TRUE(open.ok) << open.message;

  const auto closed = probe_tcp(closed_port(), 2s);
  EXPECT_FALSE(closed.ok);
  EXPECT_EQ(closed.message, "connect refused");
  EXPECT_FALSE(probe_tcp(0, 2s).ok);
}

TEST(ProbeExecTest, ExitStatusDecides) {
  EXPECT_TRUE(probe_exec({"true"}, 5s).ok);
  const auto failed = probe_exec({"false"}, 5s);
  EXPECT_FALSE(failed.ok);
  EXPECT_EQ(failed.message, "exit 1");
  EXPECT_FALSE(probe_exec({"sh", "-c", "kill -9 $$"}, 5s).ok);
}

// An exec probe sees nothing of the agent's environment but its PATH.
TEST(ProbeExecTest, SeesNoSecretOfTheAgent) {
  const test::ScopedEnv token("TRANCHE_TOKEN", "secret-of-the-agent");
  const auto result = probe_exec({"sh", "-c", "test -z \"${TRANCHE_TOKEN+set}\" && test -n \"$PATH\""}, 5s);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(ProbeExecTest, TimesOut) {
  const auto begun = std::chrono::steady_clock::now();
  const auto result = probe_exec({"sleep", "60"}, 200ms);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.message, "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - begun, 10s);
}

TEST(ProbeExecTest, CannotStart) {
  const auto missing = probe_exec({"tranche-no-such-probe"}, 5s);
  EXPECT_FALSE(missing.ok);
  EXPECT_THAT(missing.message, HasSubstr("tranche-no-such-probe"));
  EXPECT_FALSE(probe_exec({}, 5s).ok);
}

TEST(ReadStatsTest, ParsesLoadAndRequestsInFlight) {
  TestServer server([](const std::string&) { return response(200, R"({"load": 0.5, "requestsInFlight": 7})"); });
  const auto stats = read_stats(server.port(), "/admin/load", 2s);
  ASSERT_TRUE(stats);
  EXPECT_DOUBLE_EQ(stats->load, 0.5);
  EXPECT_EQ(stats->requests_in_flight, 7);
  EXPECT_THAT(server.last_request(), ::testing::StartsWith("GET /admin/load HTTP/1.1\r\n"));
}

TEST(ReadStatsTest, RequestsInFlightIsOptional) {
  TestServer server([](const std::string&) { return response(200, R"({"load": 2})"); });
  const auto stats = read_stats(server.port(), "/admin/load", 2s);
  ASSERT_TRUE(stats);
  EXPECT_DOUBLE_EQ(stats->load, 2.0);
  EXPECT_EQ(stats->requests_in_flight, std::nullopt);
}

TEST(ReadStatsTest, BodyUntilCloseOrChunked) {
  TestServer until_close([](const std::string&) { return response(200, R"({"load": 0.25})", false); });
  const auto closed = read_stats(until_close.port(), "/admin/load", 2s);
  ASSERT_TRUE(closed);
  EXPECT_DOUBLE_EQ(closed->load, 0.25);

  TestServer chunked([](const std::string&) {
    return std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") + "6\r\n{\"load\r\n" +
           "10\r\n\": 0.75, \"reques\r\n" + "13\r\ntsInFlight\": 12}   \r\n" + "0\r\n\r\n";
  });
  const auto dechunked = read_stats(chunked.port(), "/admin/load", 2s);
  ASSERT_TRUE(dechunked);
  EXPECT_DOUBLE_EQ(dechunked->load, 0.75);
  EXPECT_EQ(dechunked->requests_in_flight, 12);
}

TEST(ReadStatsTest, BadAnswersAreNothing) {
  TestServer error([](const std::string&) { return response(500, R"({"load": 0.5})"); });
  EXPECT_FALSE(read_stats(error.port(), "/admin/load", 2s));
  TestServer not_json([](const std::string&) { return response(200, "load=0.5"); });
  EXPECT_FALSE(read_stats(not_json.port(), "/admin/load", 2s));
  TestServer no_load([](const std::string&) { return response(200, R"({"requestsInFlight": 3})"); });
  EXPECT_FALSE(read_stats(no_load.port(), "/admin/load", 2s));
  TestServer truncated(
      [](const std::string&) { return std::string("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"load\": 1}"); });
  EXPECT_FALSE(read_stats(truncated.port(), "/admin/load", 2s));
  EXPECT_FALSE(read_stats(closed_port(), "/admin/load", 2s));
}

TEST(HostLoadTest, IsANonNegativeNumber) {
  const double load = host_load();
  EXPECT_GE(load, 0.0);
  EXPECT_LT(load, 1e6);
}

}  // namespace
}  // namespace tranche::agent
