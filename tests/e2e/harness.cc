#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace tranche::e2e {

std::string tranche_binary() { return TRANCHE_BINARY; }
std::string next_binary() { return (fs::path(TRANCHE_BINARY).parent_path() / "tranche-next").string(); }
fs::path source_dir() { return TRANCHE_SOURCE_DIR; }

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(20ms);  // poll interval of a deadline-bounded wait
  }
  return true;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

fs::path exe_of(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
}

void kill_agent_of(const fs::path& state_dir) {
  const std::string pid = read_file(state_dir / "agent.pid");
  if (!pid.empty() && std::isdigit(static_cast<unsigned char>(pid[0])) &&
      exe_of(std::stoi(pid)).filename().string().starts_with("tranche")) {
    ::kill(std::stoi(pid), SIGKILL);
  }
}

unsigned short free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool bound = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) {
    ::close(fd);
  }
  if (!bound) {
    throw std::runtime_error("no free port");
  }
  return ntohs(addr.sin_port);
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "tranche-e2e-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

Process::Process(std::vector<std::string> argv, const fs::path& log_dir, const std::string& name,
                 const std::map<std::string, std::string>& env) {
  static int counter = 0;
  const std::string stem = name + "-" + std::to_string(++counter);
  out_path_ = log_dir / (stem + ".out");
  err_path_ = log_dir / (stem + ".err");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    if (!env.contains(entry.substr(0, entry.find('=')))) {
      env_strings.push_back(entry);
    }
  }
  for (const auto& [k, v] : env) {
    env_strings.push_back(k + "=" + v);
  }
  std::vector<char*> cargv;
  for (auto& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  for (auto& e : env_strings) {
    cenv.push_back(e.data());
  }
  cenv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw std::runtime_error("cannot start " + argv[0]);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(10s);
  }
}

void Process::signal(int sig) const { ::kill(pid_, sig); }

bool Process::running() {
  if (status_) {
    return false;
  }
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  wait_until([this] { return !running(); }, timeout);
  return status_;
}

CliResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  TempDir logs;
  Process p(argv, logs.path(), "cli", env);
  auto status = p.wait(60s);
  return CliResult{status.value_or(-1), p.out(), p.err()};
}

Controller::Controller(fs::path data_dir) : data_dir_(std::move(data_dir)) {}

Controller::~Controller() {
  if (process_ && process_->running()) {
    kill_hard();
  }
}

void Controller::start(const std::vector<std::string>& extra_args) {
  fs::remove(data_dir_ / "controller.url");
  std::vector<std::string> argv = {binary_, "controller", "--listen", listen_, "--data-dir", data_dir_.string()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<Process>(argv, data_dir_.parent_path(), "controller-" + std::to_string(++starts_));
  const bool up = wait_until(
      [&] {
        if (!process_->running()) {
          return true;
        }
        std::string url = read_file(data_dir_ / "controller.url");
        if (url.empty()) {
          return false;
        }
        url_ = url.substr(0, url.find('\n'));
        std::vector<std::string> version = {tranche_binary(), "version", "--server", url_, "--token", admin_token()};
        if (!ca_file_.empty()) {
          version.insert(version.end(), {"--ca", ca_file_.string()});
        }
        return run(version).exit_code == 0;
      },
      20s);
  if (!up || !process_->running()) {
    throw std::runtime_error("controller did not start: " + process_->err());
  }
}

void Controller::kill_hard() {
  process_->signal(SIGKILL);
  process_->wait(10s);
}

int Controller::stop() {
  process_->signal(SIGTERM);
  return process_->wait(30s).value_or(-1);
}

std::string Controller::admin_token() const {
  std::string token = read_file(data_dir_ / "admin.token");
  return token.substr(0, token.find('\n'));
}

CliResult Controller::cli(const std::vector<std::string>& args, std::optional<std::string> token) const {
  std::vector<std::string> argv = {tranche_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {{"TRANCHE_SERVER", url_},
                    {"TRANCHE_TOKEN", token.value_or(admin_token())},
                    {"TRANCHE_TOKEN_FILE", "/nonexistent"},
                    {"TRANCHE_CA", ca_file_.string()}});
}

}  // namespace tranche::e2e
