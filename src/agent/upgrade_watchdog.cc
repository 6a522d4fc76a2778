#include "agent/upgrade_watchdog.h"

#include <signal.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace tranche::agent {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// The fields of /proc/PID/stat after "(comm)", which may hold spaces:
// fields[0] is field 3 (state).
std::optional<std::vector<std::string>> stat_fields(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(file, line)) {
    return std::nullopt;
  }
  const size_t close = line.rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) {
    fields.push_back(std::move(f));
  }
  return fields;
}

constexpr size_t kStateField = 0;       // field 3
constexpr size_t kStartTimeField = 19;  // field 22
constexpr size_t kExitCodeField = 49;   // field 52, since Linux 3.5

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace

std::optional<uint64_t> process_start_ticks_of(pid_t pid) {
  const auto fields = stat_fields(pid);
  if (!fields || fields->size() <= kStartTimeField) {
    return std::nullopt;
  }
  return std::stoull((*fields)[kStartTimeField]);
}

TrialProcess observe_process(pid_t pid, uint64_t start_ticks) {
  const auto fields = stat_fields(pid);
  if (!fields || fields->size() <= kStartTimeField || std::stoull((*fields)[kStartTimeField]) != start_ticks) {
    return {false, "ended"};
  }
  if ((*fields)[kStateField] != "Z" && (*fields)[kStateField] != "X") {
    return {true, ""};
  }
  // A zombie: its parent (the supervisor, not us) has not reaped it yet.
  if (fields->size() > kExitCodeField) {
    const int status = std::stoi((*fields)[kExitCodeField]);
    if (WIFEXITED(status)) {
      return {false, "exited with status " + std::to_string(WEXITSTATUS(status))};
    }
    if (WIFSIGNALED(status)) {
      return {false, "was killed by signal " + std::to_string(WTERMSIG(status))};
    }
  }
  return {false, "ended"};
}

WatchDecision decide_watch(const std::optional<BinaryRecord>& record, const std::string& command_id,
                           const TrialProcess& trial, TimePoint now) {
  if (!record || !record->trial || record->trial->command_id != command_id) {
    return {WatchVerdict::kDone, "", false};  // confirmed, or already fallen back by someone else
  }
  const BinaryTrial& t = *record->trial;
  const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(now - t.switched_at);
  if (!trial.alive) {
    return {WatchVerdict::kFallBack,
            "tranche " + t.binary.version + " " + trial.ended + " " + seconds_text(since) +
                " after the switch, before it had connected",
            false};
  }
  if (now >= t.deadline) {
    const auto allowed = std::chrono::duration_cast<std::chrono::seconds>(t.deadline - t.switched_at);
    return {WatchVerdict::kFallBack,
            "tranche " + t.binary.version + " did not connect within " + std::to_string(allowed.count()) +
                " s of the switch",
            true};
  }
  return {WatchVerdict::kWait, "", false};
}

Result<WatchOutcome> watch_trial(const WatchdogOptions& options, const Clock& clock) {
  const auto start_ticks = process_start_ticks_of(options.pid);
  WatchDecision decision;
  while (true) {
    auto record = load_binary_record(options.state_dir);
    if (!record) {
      return std::unexpected(record.error());
    }
    const TrialProcess trial =
        start_ticks ? observe_process(options.pid, *start_ticks) : TrialProcess{false, "ended"};
    decision = decide_watch(*record, options.command_id, trial, clock.now());
    if (decision.verdict == WatchVerdict::kDone) {
      return WatchOutcome{std::nullopt, "the switch of command " + options.command_id + " is settled"};
    }
    if (decision.verdict == WatchVerdict::kFallBack) {
      break;
    }
    std::this_thread::sleep_for(options.poll);
  }
  // Decided, under the record's lock: the trial cannot confirm from here on.
  auto record_lock = lock_binary_record(options.state_dir);
  if (!record_lock) {
    return std::unexpected(record_lock.error());
  }
  auto record = load_binary_record(options.state_dir);
  if (!record) {
    return std::unexpected(record.error());
  }
  if (!*record || !(*record)->trial || (*record)->trial->command_id != options.command_id) {
    return WatchOutcome{std::nullopt, "the switch of command " + options.command_id + " is settled"};
  }
  if (decision.kill && start_ticks) {
    ::kill(options.pid, SIGKILL);
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (observe_process(options.pid, *start_ticks).alive && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(10ms);
    }
  }
  // The agent's lock, free once the trial is gone; an agent its supervisor
  // started meanwhile may hold it: that one falls back by itself at start-up
  // (it waits for the record's lock), so this watchdog leaves it be.
  const auto lock_deadline = std::chrono::steady_clock::now() + 2s;
  auto agent_lock = FileLock::acquire(options.state_dir / "agent.lock");
  while (!agent_lock && std::chrono::steady_clock::now() < lock_deadline) {
    std::this_thread::sleep_for(20ms);
    agent_lock = FileLock::acquire(options.state_dir / "agent.lock");
  }
  if (!agent_lock) {
    return WatchOutcome{std::nullopt, "another agent runs with state dir " + options.state_dir.string() + " (" +
                                          agent_lock.error().message + "); it falls back from command " +
                                          options.command_id + " itself"};
  }
  const BinaryRecord back = fall_back(**record, decision.why);
  if (auto saved = save_binary_record(options.state_dir, back); !saved) {
    return std::unexpected(saved.error());
  }
  // Both locks go with this scope; the agent exec'd next takes its own.
  return WatchOutcome{back.current.path, back.report->message};
}

}  // namespace tranche::agent
