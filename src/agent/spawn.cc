#include "agent/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>

namespace tranche::agent::detail {

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) { return std::strerror(err); }

// A file descriptor closed on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

// Opens with O_CLOEXEC and moves the descriptor to >= 3, so that dup2 onto
// 0..2 in the child never clobbers another of the descriptors it needs.
Result<Fd> open_high(const std::filesystem::path& path, int flags, mode_t mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    return fail(ErrorCode::kInternal, "cannot open '" + path.string() + "': " + errno_text(err));
  }
  if (fd >= 3) {
    return Fd(fd);
  }
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  ::close(fd);
  if (high < 0) {
    return fail(ErrorCode::kInternal, "cannot open '" + path.string() + "': " + errno_text(err));
  }
  return Fd(high);
}

Result<Fd> open_output(const std::filesystem::path& path) {
  if (path.empty()) {
    return open_high("/dev/null", O_WRONLY, 0);
  }
  return open_high(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// execvp's search, but through the PATH the child will have rather than the
// agent's own (glibc's execvpe searches the caller's PATH).
Result<std::string> resolve_program(const std::string& name, const Environment& env,
                                    const std::filesystem::path& workdir) {
  if (name.empty()) {
    return fail(ErrorCode::kInvalid, "empty program name");
  }
  if (name.find('/') != std::string::npos) {
    return name;  // relative names resolve against the workdir, after chdir
  }
  const auto it = env.find("PATH");
  const std::string path = it != env.end() ? it->second : kDefaultPath;
  bool denied = false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    if (colon == std::string::npos) {
      colon = path.size();
    }
    std::filesystem::path dir = path.substr(start, colon - start);
    start = colon + 1;
    if (dir.empty()) {
      dir = ".";
    }
    if (dir.is_relative() && !workdir.empty()) {
      dir = workdir / dir;
    }
    const std::string candidate = (dir / name).string();
    if (is_executable_file(candidate)) {
      return candidate;
    }
    if (::access(candidate.c_str(), F_OK) == 0) {
      denied = true;
    }
  }
  if (denied) {
    return fail(ErrorCode::kNotFound, "'" + name + "': " + errno_text(EACCES));
  }
  return fail(ErrorCode::kNotFound, "'" + name + "': not found in PATH (" + path + ")");
}

// What the child writes to the error pipe when it cannot exec.
struct ChildFailure {
  int stage = 0;
  int err = 0;
};
enum Stage : int { kStageSetsid = 1, kStageDup = 2, kStageChdir = 3, kStageExec = 4, kStagePidFile = 5 };

// Everything below runs in the forked child of a possibly multi-threaded
// process: async-signal-safe calls only, no allocation.
[[noreturn]] void child_fail(int pipe_fd, int stage) {
  const ChildFailure failure{stage, errno};
  ssize_t n;
  do {
    n = ::write(pipe_fd, &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  ::_exit(127);
}

bool write_pid(int fd, pid_t pid) {
  char digits[24];
  size_t n = sizeof digits;
  do {
    digits[--n] = static_cast<char>('0' + pid % 10);
    pid /= 10;
  } while (pid > 0);
  return ::write(fd, digits + n, sizeof digits - n) == static_cast<ssize_t>(sizeof digits - n);
}

void close_other_fds(int keep) {
  // close_range exists since Linux 5.9; where it does not, the descriptors
  // that leak are the ones the agent opened without O_CLOEXEC.
  if (keep > 3) {
    ::close_range(3, static_cast<unsigned>(keep - 1), 0);
  }
  ::close_range(static_cast<unsigned>(keep + 1), ~0U, 0);
}

}  // namespace

Environment base_environment() {
  const char* path = std::getenv("PATH");
  return Environment{{"PATH", path != nullptr ? path : kDefaultPath}};
}

Result<pid_t> spawn(const SpawnRequest& request) {
  if (request.argv.empty()) {
    return fail(ErrorCode::kInvalid, "empty command");
  }
  if (!request.workdir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(request.workdir, ec)) {
      return fail(ErrorCode::kNotFound, "workdir '" + request.workdir.string() + "' is not a directory");
    }
  }
  auto program = resolve_program(request.argv[0], request.env, request.workdir);
  if (!program) {
    return std::unexpected(program.error());
  }

  // Everything the child needs is prepared here: it may not allocate.
  std::vector<std::string> env_strings;
  env_strings.reserve(request.env.size());
  for (const auto& [key, value] : request.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      continue;
    }
    env_strings.push_back(key + "=" + value);
  }
  std::vector<char*> envp;
  for (auto& item : env_strings) {
    envp.push_back(item.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> args = request.argv;
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  // execvp's fallback for a file without a #! line: run it with /bin/sh.
  std::string sh = "/bin/sh";
  std::vector<char*> sh_argv{sh.data(), program->data()};
  for (size_t i = 1; i < args.size(); ++i) {
    sh_argv.push_back(args[i].data());
  }
  sh_argv.push_back(nullptr);
  const std::string workdir = request.workdir.string();

  auto in = open_high("/dev/null", O_RDONLY, 0);
  if (!in) {
    return std::unexpected(in.error());
  }
  auto out = open_output(request.stdout_path);
  if (!out) {
    return std::unexpected(out.error());
  }
  Fd err_file;
  if (request.stderr_path != request.stdout_path) {
    auto opened = open_output(request.stderr_path);
    if (!opened) {
      return std::unexpected(opened.error());
    }
    err_file = std::move(*opened);
  }
  const int err_fd = err_file.get() >= 0 ? err_file.get() : out->get();
  Fd pid_file;
  if (!request.pid_file.empty()) {
    pid_file = Fd(::open(request.pid_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (pid_file.get() < 0) {
      const int err = errno;
      return fail(ErrorCode::kInternal, "pid file " + request.pid_file.string() + ": " + errno_text(err));
    }
  }

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    const int err = errno;
    return fail(ErrorCode::kInternal, "pipe: " + errno_text(err));
  }
  Fd pipe_read(pipe_fds[0]);
  Fd pipe_write(pipe_fds[1]);
  if (pipe_write.get() < 3) {  // keep it clear of 0..2, which dup2 overwrites below
    const int high = ::fcntl(pipe_write.get(), F_DUPFD_CLOEXEC, 3);
    if (high < 0) {
      const int err = errno;
      return fail(ErrorCode::kInternal, "fcntl: " + errno_text(err));
    }
    pipe_write = Fd(high);
  }

  sigset_t empty_mask;
  sigemptyset(&empty_mask);

  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    return fail(ErrorCode::kInternal, "fork: " + errno_text(err));
  }
  if (pid == 0) {
    const int pw = pipe_write.get();
    // Signals the agent ignores or blocks must not stay so for the program.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      ::sigaction(sig, &dfl, nullptr);
    }
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    if (request.new_session && ::setsid() < 0) {
      child_fail(pw, kStageSetsid);
    }
    if (pid_file.get() >= 0 && !write_pid(pid_file.get(), ::getpid())) {
      child_fail(pw, kStagePidFile);
    }
    if (::dup2(in->get(), 0) < 0 || ::dup2(out->get(), 1) < 0 || ::dup2(err_fd, 2) < 0) {
      child_fail(pw, kStageDup);
    }
    close_other_fds(pw);
    if (!workdir.empty() && ::chdir(workdir.c_str()) != 0) {
      child_fail(pw, kStageChdir);
    }
    ::execve(program->c_str(), argv.data(), envp.data());
    if (errno == ENOEXEC) {
      ::execve(sh.c_str(), sh_argv.data(), envp.data());
    }
    child_fail(pw, kStageExec);
  }

  pipe_write.reset();
  ChildFailure failure;
  size_t got = 0;
  while (got < sizeof failure) {
    const ssize_t n = ::read(pipe_read.get(), reinterpret_cast<char*>(&failure) + got, sizeof failure - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (got == 0) {
    return pid;  // EOF: the exec succeeded and closed the pipe
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got < sizeof failure) {
    return fail(ErrorCode::kInternal, "'" + request.argv[0] + "': the child failed before exec");
  }
  const std::string cause = errno_text(failure.err);
  switch (failure.stage) {
    case kStageChdir:
      return fail(ErrorCode::kNotFound, "workdir '" + workdir + "': " + cause);
    case kStageExec:
      return fail(ErrorCode::kNotFound, "'" + *program + "': " + cause);
    case kStageSetsid:
      return fail(ErrorCode::kInternal, "setsid: " + cause);
    case kStagePidFile:
      return fail(ErrorCode::kInternal, "pid file " + request.pid_file.string() + ": " + cause);
    default:
      return fail(ErrorCode::kInternal, "redirecting output: " + cause);
  }
}

WaitResult wait_or_kill(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  // A pidfd wakes us when the child ends; without one (old kernel), we poll.
  // (glibc 2.36's <sys/pidfd.h> lacks extern "C", hence the raw syscall.)
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  auto sleep_for = std::chrono::milliseconds(1);
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WaitResult{false, false, status};
    }
    if (r < 0 && errno != EINTR) {
      return WaitResult{false, true, 0};  // not our child (reaped elsewhere)
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      break;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    if (pidfd.get() >= 0) {
      pollfd pfd{pidfd.get(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    } else {
      std::this_thread::sleep_for(std::min(sleep_for, left));
      sleep_for = std::min(sleep_for * 2, std::chrono::milliseconds(20));
    }
  }
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WaitResult{true, false, status};
}

std::string describe_duration(std::chrono::milliseconds duration) {
  if (duration.count() % 1000 == 0) {
    return std::to_string(duration.count() / 1000) + "s";
  }
  return std::to_string(duration.count()) + "ms";
}

}  // namespace tranche::agent::detail
