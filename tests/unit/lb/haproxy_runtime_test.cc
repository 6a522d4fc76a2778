// HaproxyRuntime against a real HAProxy 2.6: each test starts its own HAProxy
// (generated config in a temp dir, foreground, killed at the end) with a
// frontend on a free loopback port and backends without servers, and
// tranche-hello processes as members. A test skips, saying why, when HAProxy
// cannot run here; a config HAProxy rejects is a failure.
//
// Requests go through the frontend on a new connection each ("Connection:
// close"), so that every one is balanced anew, except where a test keeps a
// client's connection open on purpose.

#include "lb/haproxy_runtime.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace tranche::lb {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- sockets and HTTP --------------------------------------------------------

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A connected socket to 127.0.0.1:port, or -1.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  timeval timeout{10, 0};  // no test may hang on a silent server
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) {
      return true;
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(20ms);  // poll interval of a deadline-bounded wait
  }
}

struct Reply {
  int status = 0;
  std::string member;  // TRANCHE_MEMBER of the tranche-hello that answered, if one did
};

// A client connection to HAProxy's frontend; requests go one at a time.
class Connection {
 public:
  explicit Connection(int port) : fd_(connect_to(port)) {}
  ~Connection() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // `close`: ask for the connection to end with the answer, so that the next
  // request, on a new connection, is balanced anew.
  bool send(const std::string& target, bool close) {
    const std::string req =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (close ? "Connection: close\r\n" : "") + "\r\n";
    return fd_ >= 0 && ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  }

  // One answer, delimited by its Content-Length (HAProxy's and tranche-hello's
  // answers all have one).
  std::optional<Reply> receive() {
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) {
        return std::nullopt;
      }
    }
    std::string head = buf_.substr(0, head_end + 2);
    std::ranges::transform(head, head.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const size_t length_at = head.find("\r\ncontent-length:");
    if (!head.starts_with("http/1.") || head.size() < 12 || length_at == std::string::npos) {
      return std::nullopt;
    }
    const size_t length = std::stoul(head.substr(length_at + 17));
    while (buf_.size() < head_end + 4 + length) {
      if (!fill()) {
        return std::nullopt;
      }
    }
    Reply reply;
    reply.status = std::stoi(head.substr(9, 3));
    const auto json = nlohmann::json::parse(buf_.substr(head_end + 4, length), nullptr, false);
    if (reply.status == 200 && json.is_object() && json.contains("member")) {
      reply.member = json["member"].get<std::string>();
    }
    buf_.erase(0, head_end + 4 + length);
    return reply;
  }

  std::optional<Reply> request(const std::string& target, bool close) {
    if (!send(target, close)) {
      return std::nullopt;
    }
    return receive();
  }

 private:
  bool fill() {
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      return false;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
};

// `member` `n` times, as members_answering() counts it.
std::multiset<std::string> times(int n, const std::string& member) {
  std::multiset<std::string> out;
  for (int i = 0; i < n; ++i) {
    out.insert(member);
  }
  return out;
}

std::optional<Reply> get(int port, const std::string& target = "/") { return Connection(port).request(target, true); }

// ---- child processes -----------------------------------------------------------

// A child process with stdout and stderr in `log`, killed if still running
// when destroyed.
class Child {
 public:
  Child(std::vector<std::string> argv, const fs::path& log, std::vector<std::string> extra_env = {}) : log_(log) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      env.emplace_back(*e);
    }
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> argv_ptrs, env_ptrs;
    for (auto& s : argv) {
      argv_ptrs.push_back(s.data());
    }
    for (auto& s : env) {
      env_ptrs.push_back(s.data());
    }
    argv_ptrs.push_back(nullptr);
    env_ptrs.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (log_fd >= 0) {
        ::dup2(log_fd, STDOUT_FILENO);
        ::dup2(log_fd, STDERR_FILENO);
      }
      ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
      ::_exit(127);
    }
    if (log_fd >= 0) {
      ::close(log_fd);
    }
  }
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // True once the process has ended (it is reaped then).
  bool exited() {
    if (pid_ <= 0 || exited_) {
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    return exited_;
  }
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    wait_until([&] { return exited(); }, timeout);
    return exited_ ? std::optional(exit_code_) : std::nullopt;
  }
  void kill() {
    if (pid_ > 0 && !exited()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      exited_ = true;
    }
  }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
};

fs::path make_temp_dir() {
  std::string pattern = testing::TempDir() + "lb-haproxy-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return {};
  }
  return pattern;
}

// ---- the fixture -------------------------------------------------------------------

// Server names as the controller will make them.
const std::string kA = *server_name_for("shop/web/1");
const std::string kB = *server_name_for("shop/web/2");

class HaproxyRuntimeTest : public testing::Test {
 protected:
  void SetUp() override {
    if (::access(HAPROXY_BINARY, X_OK) != 0) {
      GTEST_SKIP() << "no HAProxy at " HAPROXY_BINARY;
    }
    dir_ = make_temp_dir();
    ASSERT_FALSE(dir_.empty()) << "cannot make a temp dir under " << testing::TempDir();
    {
      Child version({HAPROXY_BINARY, "-v"}, dir_ / "version.log");
      if (version.wait_exit(10s) != 0) {
        GTEST_SKIP() << HAPROXY_BINARY " -v does not run here: " << version.log();
      }
    }

    frontend_port_ = free_port();
    stats_port_ = free_port();
    const fs::path config = dir_ / "haproxy.cfg";
    std::ofstream(config) << "global\n"
                          << "  stats socket " << (dir_ / "admin.sock").string() << " level admin\n"
                          << "  stats socket ipv4@127.0.0.1:" << stats_port_ << " level admin\n"
                          << "defaults\n"
                          << "  mode http\n"
                          << "  timeout connect 1s\n"
                          << "  timeout client 10s\n"
                          << "  timeout server 10s\n"
                          // Named like the backend on purpose: the runtime must not mistake one for the other.
                          << "frontend web\n"
                          << "  bind 127.0.0.1:" << frontend_port_ << "\n"
                          << "  use_backend checked if { path_beg /checked/ }\n"
                          << "  default_backend web\n"
                          << "backend web\n"
                          << "  balance roundrobin\n"
                          << "backend checked\n"
                          << "  balance roundrobin\n"
                          << "  option httpchk GET /healthz\n"
                          << "  http-request set-path /\n"
                          << "backend hashed\n"
                          << "  balance source\n";
    {
      Child check({HAPROXY_BINARY, "-c", "-f", config.string()}, dir_ / "check.log");
      ASSERT_EQ(check.wait_exit(10s), 0) << "HAProxy rejects the test's config:\n" << check.log();
    }

    haproxy_ = std::make_unique<Child>(std::vector<std::string>{HAPROXY_BINARY, "-f", config.string(), "-db"},
                                       dir_ / "haproxy.log");
    runtime_ = std::make_unique<HaproxyRuntime>(HaproxyEndpoint{.unix_path = (dir_ / "admin.sock").string()});
    bool up = wait_until([&] { return haproxy_->exited() || runtime_->list_servers("web").has_value(); }, 10s);
    if (haproxy_->exited()) {
      GTEST_SKIP() << "HAProxy cannot run here; its log:\n" << haproxy_->log();
    }
    ASSERT_TRUE(up) << "HAProxy's runtime socket did not answer within 10 s; log:\n" << haproxy_->log();
  }

  void TearDown() override {
    members_.clear();
    haproxy_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // Starts tranche-hello as member `member_id` and returns its address.
  ServerAddress start_member(const std::string& member_id) {
    const int port = free_port();
    const std::string log = "hello-" + std::to_string(members_.size()) + ".log";
    members_.push_back(std::make_unique<Child>(std::vector<std::string>{HELLO_BINARY, "--port=" + std::to_string(port)},
                                               dir_ / log,
                                               std::vector<std::string>{"TRANCHE_MEMBER=" + member_id, "VERSION=1"}));
    EXPECT_TRUE(wait_until(
        [&] {
          const int fd = connect_to(port);
          if (fd >= 0) {
            ::close(fd);
          }
          return fd >= 0;
        },
        10s))
        << "tranche-hello did not listen:\n"
        << members_.back()->log();
    return ServerAddress{"127.0.0.1", static_cast<uint16_t>(port)};
  }

  void add(const std::string& backend, const std::string& name, const ServerAddress& address,
           bool health_checks = false) {
    const auto ok = runtime_->add_server(backend, ServerSpec{name, address, health_checks});
    ASSERT_TRUE(ok.has_value()) << ok.error().message;
  }

  ServerInfo info(const std::string& backend, const std::string& name) {
    const auto server = runtime_->find_server(backend, name);
    EXPECT_TRUE(server.has_value()) << server.error().message;
    EXPECT_TRUE(server.has_value() && server->has_value()) << "no server " << backend << "/" << name;
    return server.has_value() && server->has_value() ? **server : ServerInfo{};
  }

  // The members that answered `count` requests through the frontend; every one must succeed.
  std::multiset<std::string> members_answering(int count, const std::string& target = "/") {
    std::multiset<std::string> seen;
    for (int i = 0; i < count; ++i) {
      const auto reply = get(frontend_port_, target);
      EXPECT_TRUE(reply.has_value() && reply->status == 200) << "request " << i << " failed";
      if (reply) {
        seen.insert(reply->member);
      }
    }
    return seen;
  }

  fs::path dir_;
  int frontend_port_ = 0;
  int stats_port_ = 0;
  std::unique_ptr<Child> haproxy_;
  std::unique_ptr<HaproxyRuntime> runtime_;
  std::vector<std::unique_ptr<Child>> members_;
};

void expect_unavailable(const Status& status, const std::string& command, const std::string& answer) {
  ASSERT_FALSE(status.has_value()) << "'" << command << "' succeeded";
  EXPECT_EQ(status.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(status.error().message.find("'" + command), std::string::npos) << status.error().message;
  EXPECT_NE(status.error().message.find(answer), std::string::npos) << status.error().message;
}

// ---- with HAProxy -----------------------------------------------------------------------

TEST_F(HaproxyRuntimeTest, AnAddedServerIsEnabledAndReceivesRequests) {
  const auto before = get(frontend_port_);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->status, 503) << "a backend without servers answers 503";

  const ServerAddress address = start_member("shop/web/1");
  add("web", kA, address);

  const auto servers = runtime_->list_servers("web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].name, kA);
  EXPECT_EQ((*servers)[0].state, ServerState::kUp);
  EXPECT_EQ((*servers)[0].status, "no check");
  EXPECT_EQ((*servers)[0].address, to_string(address));
  EXPECT_EQ((*servers)[0].sessions, 0);

  EXPECT_EQ(members_answering(3), (std::multiset<std::string>{"shop/web/1", "shop/web/1", "shop/web/1"}));
}

TEST_F(HaproxyRuntimeTest, ADrainedServerGetsNoNewRequestsWhileAnotherIsReady) {
  add("web", kA, start_member("shop/web/1"));
  add("web", kB, start_member("shop/web/2"));
  auto seen = members_answering(4);
  EXPECT_EQ(seen.count("shop/web/1"), 2u) << "round robin over both";
  EXPECT_EQ(seen.count("shop/web/2"), 2u);

  ASSERT_TRUE(runtime_->set_state("web", kA, AdminState::kDrain).has_value());
  const ServerInfo drained = info("web", kA);
  EXPECT_EQ(drained.state, ServerState::kDrain);
  EXPECT_EQ(drained.status, "DRAIN");
  EXPECT_EQ(members_answering(6), times(6, "shop/web/2")) << "all to the other";

  ASSERT_TRUE(runtime_->set_state("web", kA, AdminState::kReady).has_value());
  EXPECT_EQ(info("web", kA).state, ServerState::kUp);
  seen = members_answering(4);
  EXPECT_EQ(seen.count("shop/web/1"), 2u) << "back in rotation";
}

TEST_F(HaproxyRuntimeTest, SessionsCountOpenRequestsAndDrainLetsThemFinish) {
  add("web", kA, start_member("shop/web/1"));
  Connection slow(frontend_port_);
  ASSERT_TRUE(slow.send("/slow?ms=3000", true));
  ASSERT_TRUE(wait_until([&] { return info("web", kA).sessions == 1; }, 3s))
      << "sessions stayed " << info("web", kA).sessions;

  ASSERT_TRUE(runtime_->set_state("web", kA, AdminState::kDrain).has_value());
  EXPECT_EQ(info("web", kA).state, ServerState::kDrain);
  EXPECT_EQ(info("web", kA).sessions, 1) << "draining keeps the open session";

  const auto reply = slow.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200) << "the session open before the drain finished normally";
  EXPECT_EQ(reply->member, "shop/web/1");
  EXPECT_TRUE(wait_until([&] { return info("web", kA).sessions == 0; }, 5s));
}

TEST_F(HaproxyRuntimeTest, MaintenanceThenDeleteRemovesTheServer) {
  add("web", kA, start_member("shop/web/1"));
  add("web", kB, start_member("shop/web/2"));
  // A client keeping its connection open after a request that A answered.
  Connection keep_alive(frontend_port_);
  std::optional<Reply> reply;
  ASSERT_TRUE(wait_until(
      [&] {
        reply = keep_alive.request("/", false);
        return !reply || reply->member == "shop/web/1";
      },
      5s));
  ASSERT_TRUE(reply.has_value());

  expect_unavailable(runtime_->delete_server("web", kA), "del server web/" + kA,
                     "Only servers in maintenance mode can be deleted.");

  ASSERT_TRUE(runtime_->set_state("web", kA, AdminState::kMaintenance).has_value());
  const ServerInfo maint = info("web", kA);
  EXPECT_EQ(maint.state, ServerState::kMaintenance);
  EXPECT_EQ(maint.status, "MAINT");

  const auto deleted = runtime_->delete_server("web", kA);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().message;
  const auto servers = runtime_->list_servers("web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].name, kB);
  const auto gone = runtime_->find_server("web", kA);
  ASSERT_TRUE(gone.has_value()) << gone.error().message;
  EXPECT_EQ(*gone, std::nullopt);
  EXPECT_EQ(members_answering(2), times(2, "shop/web/2"));
  reply = keep_alive.request("/", false);
  ASSERT_TRUE(reply.has_value()) << "the kept connection outlived the deletion";
  EXPECT_EQ(reply->member, "shop/web/2") << "and its next request went to the server left";
}

TEST_F(HaproxyRuntimeTest, HealthChecksRunOnlyWhenAsked) {
  add("checked", kA, start_member("shop/web/1"), /*health_checks=*/true);
  EXPECT_TRUE(wait_until([&] { return info("checked", kA).status == "UP"; }, 10s))
      << "status " << info("checked", kA).status;

  // Nothing listens on the address of this one: its checks fail.
  add("checked", kB, ServerAddress{"127.0.0.1", static_cast<uint16_t>(free_port())}, /*health_checks=*/true);
  EXPECT_TRUE(wait_until([&] { return info("checked", kB).state == ServerState::kDown; }, 10s))
      << "status " << info("checked", kB).status;
  EXPECT_EQ(members_answering(3, "/checked/"), times(3, "shop/web/1")) << "a server failing its checks gets no request";

  const std::string unchecked = *server_name_for("shop/web/3");
  add("checked", unchecked, start_member("shop/web/3"));
  EXPECT_EQ(info("checked", unchecked).status, "no check");
}

TEST_F(HaproxyRuntimeTest, HaproxysErrorsCarryTheCommandAndTheAnswer) {
  const ServerAddress address = start_member("shop/web/1");
  const std::string at = " " + to_string(address);

  expect_unavailable(runtime_->add_server("nope", ServerSpec{kA, address}), "add server nope/" + kA + at,
                     "No such backend.");
  expect_unavailable(runtime_->add_server("hashed", ServerSpec{kA, address}), "add server hashed/" + kA + at,
                     "dynamic load balancing");
  add("web", kA, address);
  expect_unavailable(runtime_->add_server("web", ServerSpec{kA, address}), "add server web/" + kA + at,
                     "Already exists");
  expect_unavailable(runtime_->delete_server("web", "unknown"), "del server web/unknown", "No such server.");
  expect_unavailable(runtime_->set_state("web", "unknown", AdminState::kDrain), "set server web/unknown state drain",
                     "No such server.");

  const auto listed = runtime_->list_servers("nope");
  ASSERT_FALSE(listed.has_value());
  EXPECT_EQ(listed.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(listed.error().message.find("no backend 'nope'"), std::string::npos) << listed.error().message;

  const auto missing = runtime_->find_server("web", "unknown");
  ASSERT_TRUE(missing.has_value()) << missing.error().message;
  EXPECT_EQ(*missing, std::nullopt);
}

TEST_F(HaproxyRuntimeTest, NamesThatWouldChangeTheCommandAreRefusedBeforeSending) {
  for (const auto& [backend, server] : std::vector<std::pair<std::string, std::string>>{
           {"web", "a b"}, {"web;show info", "a"}, {"web", "a\nadd server web/x 127.0.0.1:1"}, {"", "a"}}) {
    const auto ok = runtime_->add_server(backend, ServerSpec{server, ServerAddress{"127.0.0.1", 8080}});
    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, ErrorCode::kInvalid);
  }
  const auto bad_ip = runtime_->add_server("web", ServerSpec{kA, ServerAddress{"localhost", 8080}});
  ASSERT_FALSE(bad_ip.has_value());
  EXPECT_EQ(bad_ip.error().code, ErrorCode::kInvalid);
  const auto servers = runtime_->list_servers("web");
  ASSERT_TRUE(servers.has_value());
  EXPECT_TRUE(servers->empty()) << "nothing reached HAProxy";
}

TEST_F(HaproxyRuntimeTest, TheTcpSocketServesTheSameApi) {
  const auto endpoint = parse_haproxy_endpoint("127.0.0.1:" + std::to_string(stats_port_));
  ASSERT_TRUE(endpoint.has_value()) << endpoint.error().message;
  HaproxyRuntime tcp(*endpoint);
  const auto ok = tcp.add_server("web", ServerSpec{kA, start_member("shop/web/1")});
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  const auto servers = tcp.list_servers("web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].state, ServerState::kUp);
  EXPECT_EQ(members_answering(1), (std::multiset<std::string>{"shop/web/1"}));
}

TEST_F(HaproxyRuntimeTest, AStoppedHaproxyIsUnavailable) {
  haproxy_->kill();
  const auto start = Clock::now();
  const auto servers = runtime_->list_servers("web");
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("cannot connect"), std::string::npos) << servers.error().message;
  EXPECT_LT(Clock::now() - start, 1s);
}

// ---- without HAProxy -----------------------------------------------------------------------

TEST(HaproxyRuntimeUnreachable, AMissingSocketFailsAtOnce) {
  const fs::path dir = make_temp_dir();
  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = (dir / "admin.sock").string()}, HaproxyOptions{2s});
  const auto start = Clock::now();
  const auto ok = runtime.set_state("web", kA, AdminState::kDrain);
  const auto elapsed = Clock::now() - start;
  fs::remove_all(dir);
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(ok.error().message.find((dir / "admin.sock").string()), std::string::npos) << ok.error().message;
  EXPECT_NE(ok.error().message.find("'set server web/" + kA + " state drain'"), std::string::npos)
      << ok.error().message;
  EXPECT_NE(ok.error().message.find("No such file or directory"), std::string::npos) << ok.error().message;
  EXPECT_LT(elapsed, 1s);
}

TEST(HaproxyRuntimeUnreachable, ARefusedTcpPortFailsAtOnce) {
  HaproxyRuntime runtime(HaproxyEndpoint{.tcp = {"127.0.0.1", static_cast<uint16_t>(free_port())}}, HaproxyOptions{2s});
  const auto start = Clock::now();
  const auto servers = runtime.list_servers("web");
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("Connection refused"), std::string::npos) << servers.error().message;
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST(HaproxyRuntimeUnreachable, ASocketPathTooLongIsAnErrorNotAnOverflow) {
  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = "/" + std::string(200, 'a')});
  const auto servers = runtime.list_servers("web");
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("longer than 107 bytes"), std::string::npos) << servers.error().message;
}

// A unix socket answering each connection's command with the next scripted
// answer, in place of HAProxy, to see which commands are sent in which order.
class ScriptedHaproxy {
 public:
  explicit ScriptedHaproxy(std::vector<std::string> answers)
      : dir_(make_temp_dir()), path_((dir_ / "admin.sock").string()) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener_, 4), 0);
    thread_ = std::thread([this, answers = std::move(answers)] {
      for (const std::string& answer : answers) {
        pollfd p{listener_, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) {
          return;  // the runtime stopped sending: commands() shows how far it got
        }
        const int fd = ::accept(listener_, nullptr, nullptr);
        std::string line;
        char c;
        while (::recv(fd, &c, 1, 0) == 1 && c != '\n') {
          line += c;
        }
        commands_.push_back(line);
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
        ::close(fd);
      }
    });
  }
  ~ScriptedHaproxy() {
    if (thread_.joinable()) {
      thread_.join();
    }
    ::close(listener_);
    fs::remove_all(dir_);
  }

  const std::string& path() const { return path_; }
  // What was received; call after the runtime's call returned.
  std::vector<std::string> commands() {
    thread_.join();
    return commands_;
  }

 private:
  fs::path dir_;
  std::string path_;
  int listener_ = -1;
  std::vector<std::string> commands_;
  std::thread thread_;
};

TEST(HaproxyRuntimeScripted, AddWithChecksEnablesHealthBeforeTheServer) {
  ScriptedHaproxy haproxy({"New server registered.\n\n", "\n", "\n"});
  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = haproxy.path()});
  const auto ok = runtime.add_server("web", ServerSpec{kA, ServerAddress{"127.0.0.1", 8080}, /*health_checks=*/true});
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(haproxy.commands(), (std::vector<std::string>{"add server web/" + kA + " 127.0.0.1:8080 check",
                                                          "enable health web/" + kA, "enable server web/" + kA}));
}

TEST(HaproxyRuntimeScripted, AFailedEnableSaysTheServerStaysInMaintenance) {
  ScriptedHaproxy haproxy({"New server registered.\n\n", "No such server.\n\n"});
  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = haproxy.path()});
  const auto ok = runtime.add_server("web", ServerSpec{kA, ServerAddress{"10.0.0.7", 80}});
  ASSERT_FALSE(ok.has_value());
  expect_unavailable(ok, "enable server web/" + kA, "No such server.");
  EXPECT_NE(ok.error().message.find("server web/" + kA + " was added and stays in maintenance"), std::string::npos)
      << ok.error().message;
  EXPECT_EQ(haproxy.commands(),
            (std::vector<std::string>{"add server web/" + kA + " 10.0.0.7:80", "enable server web/" + kA}));
}

TEST(HaproxyRuntimeScripted, AnAnswerCutShortIsAnError) {
  ScriptedHaproxy haproxy({"# pxname,svname,scur,status,addr,\nweb,BACKEND,0,UP,,\n"});
  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = haproxy.path()});
  const auto servers = runtime.list_servers("web");
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("does not end with an empty line"), std::string::npos)
      << servers.error().message;
  EXPECT_EQ(haproxy.commands(), (std::vector<std::string>{"show stat -1 6 -1"}));
}

TEST(HaproxyRuntimeUnreachable, AHungHaproxyCostsOneTimeout) {
  // Listening but never accepting: connect succeeds (the backlog takes it) and
  // no answer ever comes.
  const fs::path dir = make_temp_dir();
  const std::string path = (dir / "admin.sock").string();
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);

  HaproxyRuntime runtime(HaproxyEndpoint{.unix_path = path}, HaproxyOptions{300ms});
  const auto start = Clock::now();
  const auto servers = runtime.list_servers("web");
  const auto elapsed = Clock::now() - start;
  ::close(listener);
  fs::remove_all(dir);
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("no complete answer within 300 ms"), std::string::npos)
      << servers.error().message;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 2s);
}

}  // namespace
}  // namespace tranche::lb
