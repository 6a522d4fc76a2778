#pragma once
// The agent's side of a self-upgrade (README.md, "Self-upgrade"): which
// binary runs at start-up, the switch to a staged binary (record the trial,
// start the fallback watchdog, exec the new binary in the same pid), the
// trial's confirmation once connected, and the outcome each upgradeAgent
// command is answered with. The download is agent.cc's (artifact_download.h),
// the staging agent_binary_stage.h's, the watchdog upgrade_watchdog.h's.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "agent/binary_record.h"
#include "agent/upgrade_watchdog.h"
#include "common/clock.h"
#include "common/error.h"
#include "protocol/messages.h"

namespace tranche::agent {

// Environment markers of an agent exec'd by an agent or its watchdog
// (binary_record.h, StartupContext); removed at start-up, so that members and
// later execs never see them.
inline constexpr const char* kTrialMarker = "TRANCHE_AGENT_TRIAL";
inline constexpr const char* kExecMarker = "TRANCHE_AGENT_EXEC";
// With the trial marker: the watchdog's pid, which the trial (its parent
// after the exec) reaps once it has left.
inline constexpr const char* kWatchdogMarker = "TRANCHE_AGENT_WATCHDOG";

// This process's command line, as started (/proc/self/cmdline), and binary.
std::vector<std::string> own_argv();
std::filesystem::path own_binary();

// This environment without the markers, plus `extra`.
std::vector<std::pair<std::string, std::string>> agent_environment(
    const std::vector<std::pair<std::string, std::string>>& extra = {});

// Replaces this process with `binary` run with `argv` and `env`; every
// descriptor but 0..2 is closed on the exec. Returns only when it failed.
Error exec_agent(const std::filesystem::path& binary, const std::vector<std::string>& argv,
                 const std::vector<std::pair<std::string, std::string>>& env);

struct AgentStartup {
  bool is_trial = false;  // this process is the new binary of an unconfirmed switch
  pid_t watchdog = 0;     // the trial's watchdog, to reap
  std::string note;       // what was decided, to log; empty when nothing was
};

// At start-up, holding the agent's lock: reads the binary record and the
// markers (and removes them from the environment), writes the record when
// the choice changes it, and execs another binary when the record says so
// (then it does not return). Whatever fails, this process runs: the agent
// comes back on one of its binaries, never on none.
AgentStartup settle_startup_binary(const std::filesystem::path& state_dir);

// `tranche agent-watchdog` (hidden): watches the switch of
// `options.command_id`; on a fallback, execs the binary the record went back
// to as the agent, with `agent_argv` (the agent's own command line). The
// exit status when there is nothing to exec: 0 settled, 1 failed.
int run_agent_watchdog(const WatchdogOptions& options, const std::vector<std::string>& agent_argv);

struct UpgradeOutcome {
  bool ok = false;
  std::string message;
};

class SelfUpgrade {
 public:
  SelfUpgrade(std::filesystem::path state_dir, const Clock& clock, AgentStartup startup)
      : state_dir_(std::move(state_dir)), clock_(clock), startup_(std::move(startup)) {}

  Status load();

  // What the hello says of the last switch, until its result is acknowledged.
  std::optional<protocol::AgentUpgradeReport> report() const { return record_ ? record_->report : std::nullopt; }
  // The command this process answers once confirmed; empty when not on trial.
  std::string trial_command() const;

  // The outcome of an upgradeAgent command the journal has not answered, at
  // start-up; nullopt when it is this process's trial (answered on confirm).
  std::optional<UpgradeOutcome> settled(const std::string& command_id) const;

  // The trial has connected, had its welcome and sent a heartbeat: it becomes
  // current (record written first); returns the command's outcome.
  Result<UpgradeOutcome> confirm();

  // The controller has the result of `command_id`.
  void acknowledged(const std::string& command_id);

  // Switches to `target` (staged): records the trial, starts the watchdog (the
  // running binary, `tranche agent-watchdog`), execs `target` with this
  // process's arguments. Returns only when that failed, the record undone.
  Error switch_to(const std::string& command_id, const AgentBinary& target, std::chrono::seconds fallback);

  // Whether a switch is recorded and unsettled (an upgrade is refused then).
  bool switching() const { return record_ && record_->trial.has_value(); }

 private:
  Status save(const BinaryRecord& record);
  // Removes staged versions that are neither current nor previous.
  void prune_versions() const;

  std::filesystem::path state_dir_;
  const Clock& clock_;
  AgentStartup startup_;
  std::optional<BinaryRecord> record_;
};

}  // namespace tranche::agent
