// Tests of tranche-hello (examples/hello), the sample workload: each test runs
// the real binary on a free port and talks to it with a tiny blocking HTTP
// client over POSIX sockets.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using Json = nlohmann::json;

// ---- sockets ----------------------------------------------------------------

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
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
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval timeout{5, 0};  // no test may hang on a silent server
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
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);  // poll interval of a deadline-bounded wait
  }
}

bool accepting(int port) {
  int fd = connect_to(port);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// ---- HTTP client -------------------------------------------------------------

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  Json json() const { return Json::parse(body); }
};

// One keep-alive connection; requests are sent and answered one at a time.
class Client {
 public:
  explicit Client(int port) : fd_(connect_to(port)) {}
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(const std::string& method, const std::string& target) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    size_t sent = 0;
    while (fd_ >= 0 && sent < req.size()) {
      ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  // Reads one response; nothing on EOF, error or timeout.
  std::optional<Response> receive() {
    size_t header_end;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    Response res;
    std::istringstream head(buf_.substr(0, header_end));
    std::string line;
    std::getline(head, line);
    if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return std::nullopt;
    res.status = std::stoi(line.substr(9, 3));
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      res.headers[name] = value;
    }
    size_t length = std::stoul(res.headers.count("content-length") ? res.headers["content-length"] : std::string("0"));
    buf_.erase(0, header_end + 4);
    while (buf_.size() < length) {
      if (!fill()) return std::nullopt;
    }
    res.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return res;
  }

  std::optional<Response> request(const std::string& method, const std::string& target) {
    if (!send(method, target)) return std::nullopt;
    return receive();
  }

  // True once the server has closed the connection (EOF or reset).
  bool closed_by_peer() {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool fill() {
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
};

std::optional<Response> fetch(int port, const std::string& method, const std::string& target) {
  Client client(port);
  return client.request(method, target);
}

// ---- the process under test ----------------------------------------------------

// Runs tranche-hello with `args` and an environment without the variables it
// reads, plus `env`. Its stderr goes to a file, see log(). Killed if still
// running at the end.
class Hello {
 public:
  explicit Hello(std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {}) {
    static std::atomic<int> counter{0};
    log_path_ =
        testing::TempDir() + "tranche-hello-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".log";

    std::vector<std::string> argv_store{HELLO_BINARY};
    argv_store.insert(argv_store.end(), args.begin(), args.end());
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e) {
      std::string_view var(*e);
      if (var.starts_with("VERSION=") || var.starts_with("TRANCHE_MEMBER=") || var.starts_with("HELLO_HEALTHY=")) {
        continue;
      }
      env_store.emplace_back(var);
    }
    for (auto& [name, value] : env) env_store.push_back(name + "=" + value);
    std::vector<char*> argv_ptrs, env_ptrs;
    for (auto& s : argv_store) argv_ptrs.push_back(s.data());
    for (auto& s : env_store) env_ptrs.push_back(s.data());
    argv_ptrs.push_back(nullptr);
    env_ptrs.push_back(nullptr);

    int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (log_fd >= 0) ::dup2(log_fd, STDERR_FILENO);
      ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
  }

  ~Hello() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::unlink(log_path_.c_str());
  }
  Hello(const Hello&) = delete;
  Hello& operator=(const Hello&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo) { ::kill(pid_, signo); }

  // The exit code (-signal when killed by one), or nothing after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    std::optional<int> code;
    wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
          exited_ = true;
          code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
          return true;
        },
        timeout);
    return code;
  }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

// Whether the process has installed its SIGTERM handler (/proc/PID/status).
bool catches_sigterm(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("SigCgt:", 0) == 0) {
      return (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1;
    }
  }
  return false;
}

// Starts tranche-hello on a free port and waits until it accepts connections.
struct Started {
  int port;
  std::unique_ptr<Hello> hello;
};

Started start_hello(std::vector<std::pair<std::string, std::string>> env = {},
                    std::vector<std::string> extra_args = {}) {
  int port = free_port();
  std::vector<std::string> args{"--port=" + std::to_string(port)};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto hello = std::make_unique<Hello>(args, std::move(env));
  EXPECT_TRUE(wait_until([&] { return accepting(port); }, 10s)) << "tranche-hello did not start listening; log:\n"
                                                                << hello->log();
  return {port, std::move(hello)};
}

// ---- tests ---------------------------------------------------------------------

TEST(Hello, RootReportsVersionAndMemberOverKeepAlive) {
  auto [port, hello] = start_hello({{"VERSION", "1.2.3"}, {"TRANCHE_MEMBER", "shop-web-2"}});
  Client client(port);
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {  // several requests on one connection
    auto res = client.request("GET", "/");
    ASSERT_TRUE(res) << "request " << i;
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->headers["content-type"], "application/json");
    EXPECT_NE(res->headers["connection"], "close");
    EXPECT_EQ(res->json(), (Json{{"version", "1.2.3"}, {"member", "shop-web-2"}}));
  }
  EXPECT_NE(hello->log().find("tranche-hello 1.2.3 listening on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << hello->log();
}

TEST(Hello, RootHasEmptyStringsWhenEnvironmentUnset) {
  auto [port, hello] = start_hello();
  auto res = fetch(port, "GET", "/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->json(), (Json{{"version", ""}, {"member", ""}}));

  auto missing = fetch(port, "GET", "/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(Hello, HealthStartsFalseFromEnvironmentAndIsSettable) {
  auto [port, hello] = start_hello({{"HELLO_HEALTHY", "false"}});
  Client client(port);
  EXPECT_EQ(client.request("GET", "/healthz")->status, 500);
  EXPECT_EQ(client.request("POST", "/admin/health?ok=1")->status, 200);
  auto healthy = client.request("GET", "/healthz");
  ASSERT_TRUE(healthy);
  EXPECT_EQ(healthy->status, 200);
  EXPECT_EQ(healthy->body, "ok");
  EXPECT_EQ(client.request("POST", "/admin/health?ok=0")->status, 200);
  EXPECT_EQ(client.request("GET", "/healthz")->status, 500);
  EXPECT_EQ(client.request("POST", "/admin/health?ok=maybe")->status, 400);
  EXPECT_EQ(client.request("GET", "/admin/health?ok=1")->status, 405);
  EXPECT_EQ(client.request("GET", "/healthz")->status, 500);
}

TEST(Hello, HealthyByDefault) {
  auto [port, hello] = start_hello();
  auto res = fetch(port, "GET", "/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(Hello, LoadIsSetAndReported) {
  auto [port, hello] = start_hello();
  Client client(port);
  auto initial = client.request("GET", "/admin/load");
  ASSERT_TRUE(initial);
  EXPECT_EQ(initial->status, 200);
  EXPECT_EQ(initial->headers["content-type"], "application/json");
  EXPECT_EQ(initial->json(), (Json{{"load", 0.0}, {"requestsInFlight", 0}}));

  EXPECT_EQ(client.request("POST", "/admin/load?value=0.75")->status, 200);
  EXPECT_EQ(client.request("GET", "/admin/load")->json()["load"], 0.75);

  for (const char* bad : {"/admin/load?value=abc", "/admin/load?value=-1", "/admin/load?value=", "/admin/load",
                          "/admin/load?value=1x", "/admin/load?value=nan"}) {
    EXPECT_EQ(client.request("POST", bad)->status, 400) << bad;
  }
  EXPECT_EQ(client.request("GET", "/admin/load")->json()["load"], 0.75);
}

TEST(Hello, CountsRequestsInFlight) {
  auto [port, hello] = start_hello({{"VERSION", "1.2.3"}});
  Client slow(port);
  ASSERT_TRUE(slow.send("GET", "/slow?ms=300"));
  EXPECT_TRUE(wait_until([&] { return fetch(port, "GET", "/admin/load")->json()["requestsInFlight"] == 1; }, 5s));
  auto res = slow.receive();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  // The version too, so a load generator's share by version counts slow answers.
  EXPECT_EQ(res->json()["sleptMs"], 300);
  EXPECT_EQ(res->json()["version"], "1.2.3");
  EXPECT_EQ(fetch(port, "GET", "/admin/load")->json()["requestsInFlight"], 0);
  EXPECT_EQ(fetch(port, "GET", "/slow?ms=abc")->status, 400);
}

TEST(Hello, ListensOnlyAfterStartDelay) {
  int port = free_port();
  auto started = Clock::now();
  Hello hello({"--port", std::to_string(port), "--start-delay-ms", "700"});
  EXPECT_FALSE(accepting(port));
  ASSERT_TRUE(wait_until([&] { return accepting(port); }, 10s)) << hello.log();
  EXPECT_GE(Clock::now() - started, 650ms);
  EXPECT_EQ(fetch(port, "GET", "/healthz")->status, 200);
}

TEST(Hello, SigtermDuringStartDelayExitsCleanly) {
  int port = free_port();
  Hello hello({"--port", std::to_string(port), "--start-delay-ms", "60000"});
  ASSERT_TRUE(wait_until([&] { return catches_sigterm(hello.pid()); }, 5s));
  hello.signal(SIGTERM);
  EXPECT_EQ(hello.wait_exit(5s), 0) << hello.log();
  EXPECT_FALSE(accepting(port));
}

TEST(Hello, SigtermFinishesInFlightRequestsThenExits) {
  auto [port, hello] = start_hello();

  Client idle(port);  // an idle keep-alive connection: closed at once
  ASSERT_EQ(idle.request("GET", "/")->status, 200);

  Client slow(port);
  ASSERT_TRUE(slow.send("GET", "/slow?ms=500"));
  ASSERT_TRUE(wait_until([&] { return fetch(port, "GET", "/admin/load")->json()["requestsInFlight"] == 1; }, 5s));

  auto signalled = Clock::now();
  hello->signal(SIGTERM);

  // New connections are refused while the slow request is still running.
  EXPECT_TRUE(wait_until([&] { return !accepting(port); }, 2s));
  EXPECT_TRUE(idle.closed_by_peer());

  auto res = slow.receive();
  ASSERT_TRUE(res) << hello->log();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->headers["connection"], "close");
  EXPECT_TRUE(slow.closed_by_peer());

  EXPECT_EQ(hello->wait_exit(5s), 0) << hello->log();
  EXPECT_LT(Clock::now() - signalled, 3s);
  EXPECT_FALSE(accepting(port));
  EXPECT_NE(hello->log().find("shutting down"), std::string::npos) << hello->log();
}

TEST(Hello, SecondSignalStopsWaitingForInFlightRequests) {
  auto [port, hello] = start_hello();
  Client slow(port);
  ASSERT_TRUE(slow.send("GET", "/slow?ms=30000"));
  ASSERT_TRUE(wait_until([&] { return fetch(port, "GET", "/admin/load")->json()["requestsInFlight"] == 1; }, 5s));
  hello->signal(SIGTERM);
  EXPECT_FALSE(hello->wait_exit(200ms));  // still waiting for the slow request
  hello->signal(SIGTERM);
  EXPECT_EQ(hello->wait_exit(2s), 0) << hello->log();
}

TEST(Hello, SigintWhenIdleExitsAtOnce) {
  auto [port, hello] = start_hello();
  Client idle(port);
  ASSERT_EQ(idle.request("GET", "/healthz")->status, 200);
  hello->signal(SIGINT);
  EXPECT_EQ(hello->wait_exit(2s), 0) << hello->log();
  EXPECT_TRUE(idle.closed_by_peer());
}

TEST(Hello, ServesManyConcurrentClients) {
  auto [port, hello] = start_hello({{"TRANCHE_MEMBER", "m1"}});
  constexpr int kThreads = 32;
  constexpr int kRequests = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client keep_alive(port);
      for (int i = 0; i < kRequests; ++i) {
        // Alternate one long-lived connection with fresh ones.
        auto res = (i + t) % 5 == 0 ? fetch(port, "GET", "/") : keep_alive.request("GET", "/");
        if (res && res->status == 200 && res->json()["member"] == "m1") ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, kThreads * kRequests);
}

TEST(Hello, BadArgumentsExitWithUsage) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"--port"},
      {"--port", "abc"},
      {"--port=70000"},
      {"--port", "8080", "--bogus"},
      {"--port", "8080", "extra"},
      {"--port", "8080", "--start-delay-ms", "-5"},
      {"--port", "8080", "--host", "not-an-address"},
  };
  for (const auto& args : cases) {
    Hello hello(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(hello.wait_exit(5s), 2) << joined;
    EXPECT_NE(hello.log().find("usage: tranche-hello"), std::string::npos) << joined;
  }
}

}  // namespace
