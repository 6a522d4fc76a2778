// End-to-end: what a peer that is not (yet) trusted can make the real
// controller spend — connections, descriptors, a request head, an agent
// WebSocket before hello (issue "Hardening", defects 7, 9 and 12). Raw
// sockets, because a well-behaved client cannot send what is tested here.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

namespace tranche::e2e {
namespace {

constexpr const char* kUpgradeToAgent =
    "GET /agent/v1/connect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// One TCP connection to the controller, read with deadlines.
class RawConnection {
 public:
  explicit RawConnection(unsigned short port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }

  bool send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads until `marker` has arrived, the peer closes, or `timeout` passes.
  std::string read_until(const std::string& marker, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (received_.find(marker) == std::string::npos && !closed_ && read_some(deadline)) {
    }
    return received_;
  }

  // True when the peer closed (or reset) the connection within `timeout`;
  // whatever it sent before is kept.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && read_some(deadline)) {
    }
    return closed_;
  }

  // The status code of the HTTP answer, or 0 when none came.
  int status(std::chrono::milliseconds timeout = 5s) {
    const std::string head = read_until("\r\n\r\n", timeout);
    std::smatch match;
    if (!std::regex_search(head, match, std::regex(R"(^HTTP/1\.1 (\d{3}) )"))) {
      return 0;
    }
    return std::stoi(match[1]);
  }

 private:
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      return false;
    }
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    received_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

std::string get(const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"; }

class HostilePeers : public ::testing::Test {
 protected:
  void start(const std::string& config = "") {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    std::vector<std::string> args;
    if (!config.empty()) {
      write_file(dir_.path() / "controller.yaml", config);
      args = {"--config", (dir_.path() / "controller.yaml").string()};
    }
    controller_->start(args);
    port_ = controller_->port();
  }

  // A metric's value from /metrics, or -1.
  double metric(const std::string& name) {
    RawConnection c(port_);
    c.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer " +
           controller_->admin_token() + "\r\n\r\n");
    c.closed_within(5s);
    const std::string text = c.read_until("", 0ms);
    std::smatch match;
    if (!std::regex_search(text, match, std::regex("\n" + name + " ([0-9.e+]+)"))) {
      return -1;
    }
    return std::stod(match[1]);
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  unsigned short port_ = 0;
};

TEST_F(HostilePeers, MalformedRequestsAreAnsweredNotDropped) {
  start();
  {
    RawConnection c(port_);
    c.send("NOT A REQUEST\r\n\r\n");
    EXPECT_EQ(c.status(), 400) << c.read_until("", 0ms);
  }
  {
    RawConnection c(port_);
    c.send(get("/api/v1/applications/" + std::string(9000, 'a')));
    EXPECT_EQ(c.status(), 414) << c.read_until("", 0ms);
  }
  {
    RawConnection c(port_);
    c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + std::string(70 * 1024, 'x') + "\r\n\r\n");
    EXPECT_EQ(c.status(), 431) << c.read_until("", 0ms).substr(0, 200);
  }
  RawConnection healthy(port_);
  healthy.send(get("/healthz"));
  EXPECT_EQ(healthy.status(), 200);
}

TEST_F(HostilePeers, ConnectionsBeyondTheCapAreAnswered503) {
  start("maxConnections: 4\n");
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<RawConnection>(port_));
    ASSERT_TRUE(idle.back()->connected());
  }
  RawConnection over(port_);
  over.send(get("/healthz"));
  EXPECT_EQ(over.status(), 503) << over.read_until("", 0ms);
  EXPECT_NE(over.read_until("limit", 1s).find("limit"), std::string::npos);

  idle.pop_back();
  EXPECT_TRUE(wait_until(
      [&] {
        RawConnection c(port_);
        c.send(get("/healthz"));
        return c.status() == 200;
      },
      10s))
      << "a closed connection gives its place back";
}

TEST_F(HostilePeers, RunningOutOfDescriptorsPausesAcceptingInsteadOfSpinning) {
  start();
  const pid_t pid = controller_->process().pid();
  const auto open_descriptors =
      std::distance(fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd"), fs::directory_iterator());
  rlimit before{};
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, nullptr, &before), 0);
  // Room for two more descriptors: the connections below exhaust it.
  const rlimit exhausted{static_cast<rlim_t>(open_descriptors + 2), before.rlim_max};
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &exhausted, nullptr), 0);
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 8; ++i) {
    waiting.push_back(std::make_unique<RawConnection>(port_));
    waiting.back()->send(get("/healthz"));
  }
  auto log = [&] { return controller_->process().out() + controller_->process().err(); };
  ASSERT_TRUE(wait_until([&] { return log().find("accept failed") != std::string::npos; }, 10s)) << log();
  // A second and a half out of descriptors: a spinning accept loop fails
  // hundreds of thousands of times here, a pausing one about ten.
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &before, nullptr), 0);

  for (auto& c : waiting) {
    EXPECT_EQ(c->status(10s), 200) << "a connection that waited in the backlog is served once descriptors are back";
  }
  const double failures = metric("tranche_accept_errors_total");
  EXPECT_GT(failures, 0);
  EXPECT_LT(failures, 40);
  const std::string text = log();
  size_t lines = 0;
  for (size_t at = text.find("accept failed"); at != std::string::npos; at = text.find("accept failed", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << "one log line per episode";
  EXPECT_NE(text.find("accepting again"), std::string::npos);
}

TEST_F(HostilePeers, AnAgentSocketMustSayHelloSoonAndBriefly) {
  start();
  RawConnection silent(port_);
  silent.send(kUpgradeToAgent);
  ASSERT_EQ(silent.status(), 101);

  RawConnection oversized(port_);
  oversized.send(kUpgradeToAgent);
  ASSERT_EQ(oversized.status(), 101);
  // A masked text frame that announces 1 MiB: refused on its header alone.
  const uint64_t length = 1024 * 1024;
  std::string frame = {char(0x81), char(0x80 | 127)};
  for (int shift = 56; shift >= 0; shift -= 8) {
    frame.push_back(static_cast<char>((length >> shift) & 0xff));
  }
  frame += std::string(4, '\0') + std::string(1024, '{');
  oversized.send(frame);
  EXPECT_TRUE(oversized.closed_within(5s)) << "a 1 MiB message before hello is refused at once";

  EXPECT_TRUE(silent.closed_within(20s)) << "a WebSocket that never says hello is closed after 10 s";
}

TEST_F(HostilePeers, FewAgentSocketsMayWaitForHello) {
  start("maxUnauthenticatedAgents: 2\n");
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 2; ++i) {
    waiting.push_back(std::make_unique<RawConnection>(port_));
    waiting.back()->send(kUpgradeToAgent);
    ASSERT_EQ(waiting.back()->status(), 101);
  }
  RawConnection third(port_);
  third.send(kUpgradeToAgent);
  EXPECT_EQ(third.status(), 503) << third.read_until("", 0ms);

  waiting.pop_back();
  EXPECT_TRUE(wait_until(
      [&] {
        RawConnection c(port_);
        c.send(kUpgradeToAgent);
        return c.status() == 101;
      },
      10s))
      << "a closed WebSocket gives its place back";
}

}  // namespace
}  // namespace tranche::e2e
