#pragma once
// `tranche agent` (TRANCHE_BINARY) as a child process of the test.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace tranche::agent::test {

namespace fs = std::filesystem;

// `tranche agent` as a child process, so that a test can kill it at any
// instant and start it again on the same state dir.
class AgentProcess {
 public:
  AgentProcess(fs::path state_dir, std::string server, fs::path log)
      : state_dir_(std::move(state_dir)), server_(std::move(server)), log_(std::move(log)) {}
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;
  ~AgentProcess() { kill(); }

  void start() {
    std::vector<std::string> args = {TRANCHE_BINARY, "agent",       "--server",    server_,
                                     "--join-token", "join-secret", "--state-dir", state_dir_.string()};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int error = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) {
      throw std::runtime_error("cannot start " + std::string(TRANCHE_BINARY) + ": " + std::strerror(error));
    }
  }

  pid_t pid() const { return pid_; }

  // SIGKILL: the agent gets no chance to tidy up; its members live on.
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
  }

 private:
  fs::path state_dir_;
  std::string server_;
  fs::path log_;
  pid_t pid_ = -1;
};

}  // namespace tranche::agent::test
