#pragma once
// What end-to-end tests need to drive the real `tranche` binary: temporary
// data dirs, child processes, a controller on a free loopback port, the CLI,
// and waiting with a deadline instead of sleeping.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tranche::e2e {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string tranche_binary();
// tranche-next, next to tranche in the build tree: the same sources whose
// build_version() says the next minor version (tests/e2e/CMakeLists.txt).
// Test binaries that use it list it among their dependencies.
std::string next_binary();
fs::path source_dir();

// Polls `done` every 20 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

std::string read_file(const fs::path& path);
void write_file(const fs::path& path, const std::string& content);

// The binary process `pid` runs ("" once it is gone).
fs::path exe_of(pid_t pid);
// SIGKILLs the agent of `state_dir` by its agent.pid: after a self-upgrade's
// fall-back it is its watchdog's exec, no child of the test's.
void kill_agent_of(const fs::path& state_dir);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A child process with stdout and stderr captured in files.
class Process {
 public:
  Process(std::vector<std::string> argv, const fs::path& log_dir, const std::string& name,
          const std::map<std::string, std::string>& env = {});
  ~Process();  // SIGKILLs a running child
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for exit; nullopt on timeout. The exit status, or 128+signal.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string out() const { return read_file(out_path_); }
  std::string err() const { return read_file(err_path_); }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  fs::path out_path_;
  fs::path err_path_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// The real controller on 127.0.0.1 and a free port, in its own data dir.
class Controller {
 public:
  explicit Controller(fs::path data_dir);
  ~Controller();

  // Starts (or restarts) the process and waits until it serves /readyz.
  void start(const std::vector<std::string>& extra_args = {});
  // The next start()s listen on this ADDR:PORT instead of 127.0.0.1:0.
  void listen_on(std::string address) { listen_ = std::move(address); }
  // The next start()s run this binary (tranche_binary() until told, e.g.
  // next_binary() for an upgrade of the controller).
  void use_binary(std::string binary) { binary_ = std::move(binary); }
  // start() and cli() trust this CA (--ca, TRANCHE_CA): for a controller
  // serving TLS. The file need not exist before start() (--dev --tls makes it).
  void trust_ca(fs::path ca_file) { ca_file_ = std::move(ca_file); }
  void kill_hard();  // SIGKILL and reap
  int stop();        // SIGTERM; returns the exit status

  const std::string& url() const { return url_; }
  unsigned short port() const { return static_cast<unsigned short>(std::stoi(url_.substr(url_.rfind(':') + 1))); }
  std::string admin_token() const;
  const fs::path& data_dir() const { return data_dir_; }
  Process& process() { return *process_; }

  // Runs `tranche ARGS...` against this controller with the admin token
  // unless `token` is given.
  CliResult cli(const std::vector<std::string>& args, std::optional<std::string> token = std::nullopt) const;

 private:
  fs::path data_dir_;
  std::string binary_ = tranche_binary();
  std::string listen_ = "127.0.0.1:0";
  fs::path ca_file_;
  std::string url_;
  std::unique_ptr<Process> process_;
  int starts_ = 0;
};

// Runs a command to completion and captures its output.
CliResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});

// A loopback port that nothing listens on right now.
unsigned short free_port();

}  // namespace tranche::e2e
