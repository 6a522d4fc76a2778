// The process driver: members are plain processes, each the leader of its
// own session (setsid), so they outlive the agent and a stop can signal the
// whole process group.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "agent/driver.h"
#include "agent/spawn.h"

namespace tranche::agent {

namespace {

using Clock = std::chrono::steady_clock;
using detail::Environment;

struct ProcStat {
  char state = '?';
  uint64_t start_ticks = 0;
};

// /proc/PID/stat: "pid (comm) state ppid ... starttime(22) ...". comm may
// hold spaces and parentheses, so fields are counted after the last ')'.
std::optional<ProcStat> read_proc_stat(int64_t pid) {
  if (pid <= 0) {
    return std::nullopt;
  }
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  if (!file) {
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream rest(text.substr(paren + 1));
  std::string field;
  ProcStat stat;
  // Field 3 is the state; field 22 is the start time, the 20th after ')'.
  for (int index = 3; index <= 22; ++index) {
    if (!(rest >> field)) {
      return std::nullopt;
    }
    if (index == 3) {
      stat.state = field.empty() ? '?' : field[0];
    }
  }
  try {
    size_t used = 0;
    stat.start_ticks = std::stoull(field, &used);
    if (used != field.size()) {
      return std::nullopt;
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return stat;
}

// Allocates one free loopback port per name. All sockets stay bound until
// every port is known, so two names never get the same port.
Result<std::map<std::string, int>> allocate_ports(const std::vector<std::string>& names) {
  std::map<std::string, int> ports;
  std::vector<int> sockets;
  auto close_all = [&] {
    for (int fd : sockets) {
      ::close(fd);
    }
  };
  for (const auto& name : names) {
    if (ports.contains(name)) {
      close_all();
      return fail(ErrorCode::kInvalid, "port '" + name + "' is declared twice", "ports");
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      const int err = errno;
      close_all();
      return fail(ErrorCode::kInternal, std::string("socket: ") + std::strerror(err));
    }
    sockets.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      close_all();
      return fail(ErrorCode::kInternal, "cannot allocate port '" + name + "': " + std::strerror(err));
    }
    ports[name] = ntohs(addr.sin_port);
  }
  close_all();
  return ports;
}

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Replaces each ${NAME} (NAME: [A-Za-z_][A-Za-z0-9_]*) with its value in
// `env`. Anything else, "$X", "$$" or "${X:-y}" included, is left as it is
// for a shell the command may run.
Result<std::string> expand(const std::string& arg, const Environment& env, size_t index) {
  std::string out;
  size_t i = 0;
  while (i < arg.size()) {
    if (arg[i] == '$' && i + 2 < arg.size() && arg[i + 1] == '{' && is_name_start(arg[i + 2])) {
      size_t end = i + 3;
      while (end < arg.size() && is_name_char(arg[end])) {
        ++end;
      }
      if (end < arg.size() && arg[end] == '}') {
        const std::string name = arg.substr(i + 2, end - i - 2);
        const auto it = env.find(name);
        if (it == env.end()) {
          return fail(ErrorCode::kInvalid, "unknown variable ${" + name + "}",
                      "command[" + std::to_string(index) + "]");
        }
        out += it->second;
        i = end + 1;
        continue;
      }
    }
    out += arg[i];
    ++i;
  }
  return out;
}

// Keeps the newest `max_bytes / 2` bytes of a file that has grown beyond
// `max_bytes`, in place: the member holds the file open with O_APPEND, so a
// rename would leave it writing to an unlinked inode, while after an in-place
// truncation its next write lands at the new end. Output the member writes
// between our last look and the truncation is lost.
void cap_file(const std::filesystem::path& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) <= max_bytes) {
    ::close(fd);
    return;
  }
  auto read_at = [fd](std::string& into, off_t from, size_t count) {
    const size_t base = into.size();
    into.resize(base + count);
    size_t got = 0;
    while (got < count) {
      const ssize_t n = ::pread(fd, into.data() + base + got, count - got, from + static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      got += static_cast<size_t>(n);
    }
    into.resize(base + got);
  };
  off_t size = st.st_size;
  const size_t keep = static_cast<size_t>(max_bytes / 2);
  std::string tail;
  read_at(tail, size - static_cast<off_t>(keep), keep);
  // Start at a line boundary when there is one.
  const size_t newline = tail.find('\n');
  if (newline != std::string::npos && newline + 1 < tail.size()) {
    tail.erase(0, newline + 1);
  }
  // Catch up with what the member appended meanwhile (a few rounds at most).
  for (int round = 0; round < 4; ++round) {
    if (::fstat(fd, &st) != 0 || st.st_size <= size) {
      break;
    }
    read_at(tail, size, static_cast<size_t>(st.st_size - size));
    size = st.st_size;
  }
  size_t written = 0;
  while (written < tail.size()) {
    const ssize_t n = ::pwrite(fd, tail.data() + written, tail.size() - written, static_cast<off_t>(written));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (written == tail.size()) {
    // Bytes appended after the last fstat sit beyond `size`; keep them too.
    if (::fstat(fd, &st) == 0 && st.st_size > size) {
      std::string late;
      read_at(late, size, static_cast<size_t>(st.st_size - size));
      if (::pwrite(fd, late.data(), late.size(), static_cast<off_t>(written)) == static_cast<ssize_t>(late.size())) {
        written += late.size();
      }
    }
    if (::ftruncate(fd, static_cast<off_t>(written)) != 0) {
      // Leaves the file as it was plus the copied prefix; the next round retries.
    }
  }
  ::close(fd);
}

// kill() on the group, falling back to the pid when the member left its group.
void signal_member(pid_t pid, int sig) {
  if (::kill(-pid, sig) != 0 && errno == ESRCH) {
    ::kill(pid, sig);
  }
}

class ProcessDriver final : public Driver {
 public:
  explicit ProcessDriver(ProcessDriverOptions options) : options_(options) {}

  Result<MemberProcess> start(const LaunchSpec& spec, const std::filesystem::path& log_dir) override {
    if (spec.command.empty()) {
      return fail(ErrorCode::kInvalid, "member " + spec.member + " has an empty command", "command");
    }
    auto ports = allocate_ports(spec.ports);
    if (!ports) {
      return std::unexpected(ports.error());
    }
    Environment env = detail::base_environment();
    for (auto& [key, value] : member_variables(spec, *ports)) {
      env[key] = std::move(value);
    }
    detail::SpawnRequest request;
    for (size_t i = 0; i < spec.command.size(); ++i) {
      auto arg = expand(spec.command[i], env, i);
      if (!arg) {
        return std::unexpected(arg.error());
      }
      request.argv.push_back(std::move(*arg));
    }
    std::error_code ec;
    std::filesystem::create_directories(log_dir, ec);
    if (ec) {
      return fail(ErrorCode::kInternal, "cannot create log dir '" + log_dir.string() + "': " + ec.message());
    }
    request.env = std::move(env);
    request.workdir = spec.workdir.empty() ? log_dir : std::filesystem::path(spec.workdir);
    request.stdout_path = log_dir / "stdout.log";
    request.stderr_path = log_dir / "stderr.log";
    request.new_session = true;
    request.pid_file = log_dir / kSpawnRecord;
    auto pid = detail::spawn(request);
    if (!pid) {
      Error error = pid.error();
      error.message = "cannot start member " + spec.member + ": " + error.message;
      return std::unexpected(std::move(error));
    }
    MemberProcess process;
    process.member = spec.member;
    process.pid = *pid;
    // The child is not reaped yet, so its /proc entry exists even if it has
    // already exited.
    process.start_ticks = process_start_ticks(*pid).value_or(0);
    process.ports = std::move(*ports);
    process.log_dir = log_dir;
    std::lock_guard lock(mu_);
    std::erase_if(reaped_, [&](const auto& entry) { return entry.first.first == process.pid; });
    stopping_.erase(Key{process.pid, process.start_ticks});
    return process;
  }

  void begin_stop(const MemberProcess& process, std::chrono::milliseconds grace) override {
    std::lock_guard lock(mu_);
    const Key key{process.pid, process.start_ticks};
    if (reaped_.contains(key) || !is_same_process(process)) {
      return;  // gone, or the pid now belongs to someone else
    }
    signal_member(static_cast<pid_t>(process.pid), SIGTERM);
    const auto deadline = Clock::now() + grace;
    const auto [it, inserted] = stopping_.emplace(key, deadline);
    if (!inserted) {
      it->second = std::min(it->second, deadline);
    }
  }

  ProcessStatus poll(const MemberProcess& process) override {
    std::lock_guard lock(mu_);
    const Key key{process.pid, process.start_ticks};
    if (const auto it = reaped_.find(key); it != reaped_.end()) {
      return it->second;
    }
    if (process.pid <= 0) {
      return ProcessStatus{ProcessState::kExited, std::nullopt, std::nullopt};
    }
    // Gone, or the pid now belongs to another process (perhaps a member this
    // agent started since): either way the process we knew has exited. An
    // unreaped child of ours still has its /proc entry.
    const auto stat = read_proc_stat(process.pid);
    if (!stat || stat->start_ticks != process.start_ticks) {
      return remember(key, ProcessStatus{ProcessState::kExited, std::nullopt, std::nullopt});
    }
    const auto pid = static_cast<pid_t>(process.pid);
    siginfo_t info{};
    int r;
    do {
      info.si_pid = 0;
      r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    } while (r != 0 && errno == EINTR);
    if (r == 0 && info.si_pid == pid) {
      // Our child, exited. While stopping, whatever it left in its group goes
      // too; the zombie still holds the group id, so no stranger is hit.
      if (stopping_.contains(key)) {
        ::kill(-pid, SIGKILL);
      }
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      ProcessStatus result{ProcessState::kExited, std::nullopt, std::nullopt};
      if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
      }
      return remember(key, result);
    }
    bool running;
    if (r == 0) {
      running = true;  // our child, still running
    } else {
      // ECHILD: not our child, adopted from an earlier agent. It runs unless
      // it is a zombie waiting for its new parent (start ticks match: above).
      running = stat->state != 'Z' && stat->state != 'X';
    }
    if (!running) {
      return remember(key, ProcessStatus{ProcessState::kExited, std::nullopt, std::nullopt});
    }
    if (const auto it = stopping_.find(key); it != stopping_.end() && Clock::now() >= it->second) {
      signal_member(pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
    return ProcessStatus{ProcessState::kRunning, std::nullopt, std::nullopt};
  }

  void rotate_logs(const MemberProcess& process) override {
    if (process.log_dir.empty() || options_.max_log_bytes == 0) {
      return;
    }
    cap_file(process.log_dir / "stdout.log", options_.max_log_bytes);
    cap_file(process.log_dir / "stderr.log", options_.max_log_bytes);
  }

 private:
  using Key = std::pair<int64_t, uint64_t>;  // pid, start ticks

  // The pid is alive (or an unreaped zombie) and is the process we started.
  static bool is_same_process(const MemberProcess& process) {
    const auto ticks = process_start_ticks(process.pid);
    return ticks && *ticks == process.start_ticks;
  }

  ProcessStatus remember(const Key& key, ProcessStatus status) {
    stopping_.erase(key);
    // Exits are reported again on later polls; the oldest are forgotten
    // beyond a bound (a pid's entries also go when a new member gets it).
    if (reaped_.size() >= kMaxRemembered) {
      reaped_.erase(reaped_.begin());
    }
    reaped_[key] = status;
    return status;
  }

  static constexpr size_t kMaxRemembered = 4096;

  ProcessDriverOptions options_;
  std::mutex mu_;
  std::map<Key, Clock::time_point> stopping_;  // stop deadlines
  std::map<Key, ProcessStatus> reaped_;
};

}  // namespace

std::unique_ptr<Driver> make_process_driver(ProcessDriverOptions options) {
  return std::make_unique<ProcessDriver>(options);
}

std::optional<uint64_t> process_start_ticks(int64_t pid) {
  const auto stat = read_proc_stat(pid);
  if (!stat) {
    return std::nullopt;
  }
  return stat->start_ticks;
}

std::map<std::string, std::string> member_variables(const LaunchSpec& spec, const std::map<std::string, int>& ports) {
  std::map<std::string, std::string> env = spec.env;
  env["TRANCHE_APP"] = spec.app;
  env["TRANCHE_CLUSTER"] = spec.cluster;
  env["TRANCHE_MEMBER"] = spec.member;
  env["TRANCHE_REVISION"] = std::to_string(spec.revision);
  env["VERSION"] = spec.version;
  for (const auto& [name, port] : ports) {
    std::string var = "PORT_";
    for (char c : name) {
      var += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    env[var] = std::to_string(port);
  }
  return env;
}

HookOutcome run_hook(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                     const std::filesystem::path& workdir, const std::filesystem::path& output_file,
                     std::chrono::milliseconds timeout) {
  detail::SpawnRequest request;
  request.argv = argv;
  request.env = detail::base_environment();
  for (const auto& [key, value] : env) {
    request.env[key] = value;
  }
  request.workdir = workdir;
  if (!output_file.empty() && output_file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(output_file.parent_path(), ec);
  }
  request.stdout_path = output_file;
  request.stderr_path = output_file;
  request.new_session = true;  // so that a timeout kills everything the hook started
  auto pid = detail::spawn(request);
  if (!pid) {
    return HookOutcome{-1, "cannot start hook: " + pid.error().message};
  }
  const auto waited = detail::wait_or_kill(*pid, timeout);
  if (waited.timed_out) {
    return HookOutcome{-1, "hook timed out after " + detail::describe_duration(timeout)};
  }
  if (waited.lost) {
    return HookOutcome{-1, "hook exit status lost (reaped elsewhere)"};
  }
  if (WIFEXITED(waited.status)) {
    const int code = WEXITSTATUS(waited.status);
    return HookOutcome{code, "hook exited " + std::to_string(code)};
  }
  const int sig = WIFSIGNALED(waited.status) ? WTERMSIG(waited.status) : 0;
  return HookOutcome{128 + sig, "hook killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")"};
}

}  // namespace tranche::agent
