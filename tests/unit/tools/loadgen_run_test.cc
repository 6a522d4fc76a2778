// The real tranche-loadgen against a real tranche-hello on a free loopback
// port, for about a second each: it counts what it sent, reads the version
// from the answers, stops on its stop file and tells refused connections
// apart.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

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

bool accepting(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(20ms);  // poll interval of a deadline-bounded wait
  }
  return true;
}

// A child process with its stdout and stderr in a file; killed if still
// running when destroyed.
class Child {
 public:
  Child(std::vector<std::string> argv, std::vector<std::string> extra_env = {}) {
    static int counter = 0;
    log_ = fs::path(testing::TempDir()) /
           ("loadgen-run-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".log");
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
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
      ::_exit(127);
    }
    ::close(fd);
  }
  ~Child() {
    if (!exit_code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove(log_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) != pid_) {
            return false;
          }
          exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
          return true;
        },
        timeout);
    return exit_code_;
  }

  std::string output() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // The {"bench":"loadgen"} line of the output, or null.
  Json report() const {
    std::istringstream lines(output());
    std::string line;
    while (std::getline(lines, line)) {
      if (line.starts_with("{\"bench\":\"loadgen\"")) {
        return Json::parse(line);
      }
    }
    return nullptr;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  fs::path log_;
};

std::string url(int port) { return "http://127.0.0.1:" + std::to_string(port) + "/"; }

TEST(LoadgenRun, CountsAnswersAndTheirVersionOnBothKindsOfConnection) {
  const int port = free_port();
  Child hello({HELLO_BINARY, "--port", std::to_string(port)}, {"VERSION=1.0.0", "TRANCHE_MEMBER=demo/web/0"});
  ASSERT_TRUE(wait_until([&] { return accepting(port); }, 10s)) << hello.output();

  Child loadgen({LOADGEN_BINARY, "--url", url(port), "--duration", "1s", "--connections", "2", "--keep-alive-rate",
                 "50/s", "--new-connection-rate", "20/s", "--interval", "500ms", "--json"});
  ASSERT_EQ(loadgen.wait_exit(10s), 0) << loadgen.output();
  const Json r = loadgen.report();
  ASSERT_TRUE(r.is_object()) << loadgen.output();

  // About 2 x 50 + 20 requests in a second; loose bounds for a busy machine.
  EXPECT_GE(r["sent"].get<int>(), 30) << r.dump();
  EXPECT_LE(r["sent"].get<int>(), 150) << r.dump();
  EXPECT_EQ(r["failed"], 0) << r.dump();
  EXPECT_EQ(r["ok"], r["sent"]);
  EXPECT_GT(r["keep_alive"]["sent"].get<int>(), 0);
  EXPECT_GT(r["new_connection"]["sent"].get<int>(), 0);
  EXPECT_EQ(r["keep_alive"]["sent"].get<int>() + r["new_connection"]["sent"].get<int>(), r["sent"].get<int>());
  EXPECT_EQ(r["versions"], (Json{{"1.0.0", r["sent"]}}));
  EXPECT_GT(r["latency_ms"]["p50"].get<double>(), 0);
  EXPECT_LE(r["latency_ms"]["p50"].get<double>(), r["latency_ms"]["p99"].get<double>());
  EXPECT_LE(r["latency_ms"]["p99"].get<double>(), r["latency_ms"]["max"].get<double>());
  ASSERT_GE(r["buckets"].size(), 2u);
  EXPECT_EQ(r["buckets"][1]["t_s"], 0.5);
  EXPECT_NE(loadgen.output().find("requests sent"), std::string::npos);
}

TEST(LoadgenRun, StopsWhenTheStopFileAppears) {
  const int port = free_port();
  Child hello({HELLO_BINARY, "--port", std::to_string(port)}, {"VERSION=2.0.0"});
  ASSERT_TRUE(wait_until([&] { return accepting(port); }, 10s)) << hello.output();
  const fs::path stop = fs::path(testing::TempDir()) / ("loadgen-stop-" + std::to_string(::getpid()));
  fs::remove(stop);

  const auto started = Clock::now();
  Child loadgen({LOADGEN_BINARY, "--url", url(port), "--duration", "60s", "--stop-file", stop.string(), "--json"});
  // Still running while the file is absent (its --duration is a minute).
  ASSERT_FALSE(loadgen.wait_exit(300ms)) << loadgen.output();
  std::ofstream(stop.string()) << "stop\n";
  ASSERT_EQ(loadgen.wait_exit(10s), 0) << loadgen.output();
  EXPECT_LT(Clock::now() - started, 10s);
  fs::remove(stop);
  const Json r = loadgen.report();
  ASSERT_TRUE(r.is_object()) << loadgen.output();
  EXPECT_GT(r["sent"].get<int>(), 0);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_EQ(r["versions"].begin().key(), "2.0.0");
  EXPECT_LT(r["elapsed_s"].get<double>(), 10.0);
}

TEST(LoadgenRun, SlowRequestsAndPhasesFromThePhaseFile) {
  const int port = free_port();
  Child hello({HELLO_BINARY, "--port", std::to_string(port)}, {"VERSION=1.0.0"});
  ASSERT_TRUE(wait_until([&] { return accepting(port); }, 10s)) << hello.output();
  const fs::path phase = fs::path(testing::TempDir()) / ("loadgen-phase-" + std::to_string(::getpid()));
  std::ofstream(phase.string()) << "before\n";

  Child loadgen({LOADGEN_BINARY, "--url", url(port), "--duration", "1500ms", "--connections", "1", "--keep-alive-rate",
                 "50/s", "--new-connection-rate", "0", "--slow-rate", "10/s", "--slow-path", "/slow?ms=200",
                 "--phase-file", phase.string(), "--json"});
  std::this_thread::sleep_for(700ms);  // a stretch of the first phase, not a wait for some state
  std::ofstream(phase.string() + ".new") << "during\n";
  fs::rename(phase.string() + ".new", phase);
  ASSERT_EQ(loadgen.wait_exit(10s), 0) << loadgen.output();
  fs::remove(phase);
  const Json r = loadgen.report();
  ASSERT_TRUE(r.is_object()) << loadgen.output();

  EXPECT_EQ(r["failed"], 0) << r.dump();
  EXPECT_GT(r["slow"]["sent"].get<int>(), 0) << r.dump();
  EXPECT_EQ(r["keep_alive"]["sent"].get<int>() + r["slow"]["sent"].get<int>(), r["sent"].get<int>());
  EXPECT_GE(r["slow_latency_ms"]["p50"].get<double>(), 200.0) << r.dump();
  EXPECT_LT(r["latency_ms"]["p99"].get<double>(), 200.0) << r.dump();  // no slow answer in it
  EXPECT_EQ(r["versions"].size(), 1u) << r.dump();                     // slow answers say 1.0.0 too
  ASSERT_TRUE(r["phases"].contains("before")) << r.dump();
  ASSERT_TRUE(r["phases"].contains("during")) << r.dump();
  EXPECT_FALSE(r["phases"].contains("run")) << r.dump();  // the file named the first phase
  EXPECT_EQ(r["phases"]["before"]["sent"].get<int>() + r["phases"]["during"]["sent"].get<int>(), r["sent"].get<int>());
  EXPECT_GT(r["phases"]["during"]["sent"].get<int>(), 0) << r.dump();
  EXPECT_GT(r["phases"]["before"]["slow_sent"].get<int>(), 0) << r.dump();
}

TEST(LoadgenRun, RefusedConnectionsAreFailuresOfTheirOwnKind) {
  const int port = free_port();  // nobody listens there
  Child loadgen({LOADGEN_BINARY, "--url", url(port), "--duration", "500ms", "--connections", "1", "--keep-alive-rate",
                 "20/s", "--new-connection-rate", "10/s", "--json"});
  ASSERT_EQ(loadgen.wait_exit(10s), 0) << loadgen.output();  // the caller judges failures
  const Json r = loadgen.report();
  ASSERT_TRUE(r.is_object()) << loadgen.output();
  EXPECT_GT(r["sent"].get<int>(), 0);
  EXPECT_EQ(r["ok"], 0);
  EXPECT_EQ(r["failures"]["refused"], r["sent"]);
}

TEST(LoadgenRun, BadArgumentsExit2) {
  Child loadgen({LOADGEN_BINARY, "--url", "http://192.0.2.1:80/"});
  EXPECT_EQ(loadgen.wait_exit(10s), 2);
  EXPECT_NE(loadgen.output().find("loopback"), std::string::npos) << loadgen.output();
}

}  // namespace
