#include "agent/self_upgrade.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "agent/spawn.h"
#include "common/build_version.h"

extern char** environ;

namespace tranche::agent {

namespace fs = std::filesystem;

namespace {

bool is_executable(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec);
}

std::string take_env(const char* name) {
  const char* value = std::getenv(name);
  std::string out = value ? value : "";
  ::unsetenv(name);
  return out;
}

}  // namespace

std::vector<std::string> own_argv() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string arg; std::getline(in, arg, '\0');) {
    argv.push_back(arg);
  }
  return argv;
}

fs::path own_binary() {
  std::error_code ec;
  return fs::read_symlink("/proc/self/exe", ec);
}

std::vector<std::pair<std::string, std::string>> agent_environment(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::pair<std::string, std::string>> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const size_t eq = entry.find('=');
    const std::string name = entry.substr(0, eq);
    if (eq == std::string::npos || name == kTrialMarker || name == kExecMarker || name == kWatchdogMarker) {
      continue;
    }
    env.emplace_back(name, entry.substr(eq + 1));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

Error exec_agent(const fs::path& binary, const std::vector<std::string>& argv,
                 const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> env_text;
  for (const auto& [name, value] : env) {
    env_text.push_back(name + "=" + value);
  }
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env_text) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);
  // Sockets (Asio opens them without O_CLOEXEC) and files must not outlive
  // this image: the controller would see the old connection stay open.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(binary.c_str(), args.data(), envp.data());
  const int err = errno;
  return Error{ErrorCode::kUnavailable, "cannot execute " + binary.string() + ": " + std::strerror(err), ""};
}

AgentStartup settle_startup_binary(const fs::path& state_dir) {
  AgentStartup startup;
  StartupContext context;
  context.self = own_binary();
  context.self_version = build_version();
  context.trial_marker = take_env(kTrialMarker);
  context.exec_marker = !take_env(kExecMarker).empty();
  const std::string watchdog = take_env(kWatchdogMarker);
  context.is_executable = is_executable;
  context.same_file = same_file;
  StartupChoice choice;
  {
    auto lock = lock_binary_record(state_dir);
    if (!lock) {
      startup.note = "binary record: " + lock.error().describe() + "; running " + context.self.string();
      return startup;
    }
    auto record = load_binary_record(state_dir);
    if (!record) {
      startup.note = "binary record: " + record.error().describe() + "; running " + context.self.string();
      return startup;
    }
    choice = choose_startup_binary(*record, context);
    if (choice.write) {
      if (auto saved = save_binary_record(state_dir, *choice.write); !saved) {
        startup.note = "binary record: " + saved.error().describe() + "; running " + context.self.string();
        return startup;
      }
    }
  }
  startup.is_trial = choice.is_trial;
  startup.note = choice.note;
  if (choice.is_trial && !watchdog.empty()) {
    startup.watchdog = static_cast<pid_t>(std::atoi(watchdog.c_str()));
  }
  if (choice.exec) {
    const Error failed = exec_agent(*choice.exec, own_argv(), agent_environment({{kExecMarker, "1"}}));
    startup.note += "; " + failed.message + "; running " + context.self.string();
  }
  return startup;
}

int run_agent_watchdog(const WatchdogOptions& options, const std::vector<std::string>& agent_argv) {
  const SystemClock clock;
  auto outcome = watch_trial(options, clock);
  if (!outcome) {
    std::fprintf(stderr, "tranche agent-watchdog: error: %s\n", outcome.error().describe().c_str());
    return 1;
  }
  std::fprintf(stderr, "tranche agent-watchdog: %s\n", outcome->note.c_str());
  if (!outcome->exec) {
    return 0;
  }
  // Nothing else will start the agent: a binary being replaced (ETXTBSY,
  // EACCES while a package manager or a linker writes it) is tried again.
  constexpr int kAttempts = 60;
  for (int attempt = 1;; ++attempt) {
    std::fflush(stderr);
    const Error failed = exec_agent(*outcome->exec, agent_argv, agent_environment({{kExecMarker, "1"}}));
    std::fprintf(stderr, "tranche agent-watchdog: error: %s (attempt %d of %d)\n", failed.message.c_str(), attempt,
                 kAttempts);
    if (attempt == kAttempts) {
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

Status SelfUpgrade::load() {
  auto record = load_binary_record(state_dir_);
  if (!record) {
    return std::unexpected(record.error());
  }
  record_ = std::move(*record);
  return {};
}

std::string SelfUpgrade::trial_command() const {
  return startup_.is_trial && record_ && record_->trial ? record_->trial->command_id : "";
}

std::optional<UpgradeOutcome> SelfUpgrade::settled(const std::string& command_id) const {
  if (trial_command() == command_id) {
    return std::nullopt;
  }
  if (record_ && record_->report && record_->report->command_id == command_id) {
    return UpgradeOutcome{record_->report->ok, record_->report->message};
  }
  return UpgradeOutcome{false, "the agent restarted before switching; still on tranche " + build_version()};
}

Status SelfUpgrade::save(const BinaryRecord& record) {
  if (auto saved = save_binary_record(state_dir_, record); !saved) {
    return saved;
  }
  record_ = record;
  return {};
}

Result<UpgradeOutcome> SelfUpgrade::confirm() {
  const std::string command = trial_command();
  auto lock = lock_binary_record(state_dir_);
  if (!lock) {
    return std::unexpected(lock.error());
  }
  auto record = load_binary_record(state_dir_);
  if (!record) {
    return std::unexpected(record.error());
  }
  if (!*record || !(*record)->trial || (*record)->trial->command_id != command) {
    return fail(ErrorCode::kConflict, "the switch of command " + command + " was settled without this binary");
  }
  const BinaryRecord confirmed = confirm_trial(**record);
  if (auto saved = save(confirmed); !saved) {
    return std::unexpected(saved.error());
  }
  startup_.is_trial = false;
  if (startup_.watchdog > 0) {
    // It leaves once it reads the confirmation; this process is its parent now.
    std::thread([pid = startup_.watchdog] { ::waitpid(pid, nullptr, 0); }).detach();
  }
  prune_versions();
  return UpgradeOutcome{true, confirmed.report->message};
}

void SelfUpgrade::acknowledged(const std::string& command_id) {
  if (!record_ || !record_->report || record_->report->command_id != command_id) {
    return;
  }
  if (auto lock = lock_binary_record(state_dir_)) {
    (void)save(forget_report(*record_, command_id));
  }
}

Error SelfUpgrade::switch_to(const std::string& command_id, const AgentBinary& target, std::chrono::seconds fallback) {
  const fs::path self = own_binary();
  if (!is_executable(self)) {
    return Error{ErrorCode::kUnavailable,
                 "the running binary " + self.string() + " is gone: there would be nothing to fall back to", ""};
  }
  const std::vector<std::string> argv = own_argv();
  const fs::path state_dir = fs::absolute(state_dir_);
  const TimePoint now = clock_.now();
  // What runs now is what a fallback returns to, whatever the record said.
  BinaryRecord base = record_.value_or(BinaryRecord{});
  base.current = AgentBinary{build_version(), self};
  {
    auto lock = lock_binary_record(state_dir_);
    if (!lock) {
      return lock.error();
    }
    if (auto saved = save(begin_trial(base, BinaryTrial{command_id, target, now, now + fallback})); !saved) {
      return saved.error();
    }
  }
  detail::SpawnRequest watchdog;
  watchdog.argv = {self.string(), "agent-watchdog", "--state-dir", state_dir.string(), "--pid",
                   std::to_string(::getpid()), "--command", command_id, "--"};
  watchdog.argv.insert(watchdog.argv.end(), argv.begin(), argv.end());
  for (const auto& [name, value] : agent_environment()) {
    watchdog.env[name] = value;
  }
  // Its messages go where the agent's go; to a file when that cannot be
  // reopened (a socket, as under journald).
  watchdog.stdout_path = watchdog.stderr_path = "/proc/self/fd/2";
  auto spawned = detail::spawn(watchdog);
  if (!spawned) {
    watchdog.stdout_path = watchdog.stderr_path = state_dir / "agent-watchdog.log";
    spawned = detail::spawn(watchdog);
  }
  Error failed = spawned ? exec_agent(target.path, argv,
                                      agent_environment({{kTrialMarker, command_id},
                                                         {kWatchdogMarker, std::to_string(*spawned)}}))
                         : Error{ErrorCode::kUnavailable, "cannot start the watchdog: " + spawned.error().message, ""};
  // Not switched: the record goes back (the watchdog, if started, sees the
  // trial cleared and leaves).
  if (auto lock = lock_binary_record(state_dir_)) {
    (void)save(fall_back(*record_, failed.message));
  }
  if (spawned) {
    std::thread([pid = *spawned] { ::waitpid(pid, nullptr, 0); }).detach();
  }
  return failed;
}

void SelfUpgrade::prune_versions() const {
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(state_dir_ / "versions", ec)) {
    const fs::path binary = dir.path() / "tranche";
    const bool kept = record_ && (same_file(binary, record_->current.path) ||
                                  (record_->previous && same_file(binary, record_->previous->path)));
    if (!kept) {
      fs::remove_all(dir.path(), ec);
    }
  }
}

}  // namespace tranche::agent
