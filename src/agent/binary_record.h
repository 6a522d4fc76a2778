#pragma once
// Which build of tranche this host's agent runs: the durable record of a
// self-upgrade (agent-binary.json in the state dir, replaced atomically).
// Every step of a switch is written here before it is acted on, so that the
// agent, its fallback watchdog and an agent restarted by its supervisor all
// agree on which binary runs, whatever crashed when (README.md, "Self-upgrade").

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/error.h"
#include "common/file_lock.h"
#include "protocol/messages.h"

namespace tranche::agent {

struct AgentBinary {
  std::string version;
  std::filesystem::path path;

  bool operator==(const AgentBinary&) const = default;
};

// A switch in progress: the new binary runs (or is about to) and has not yet
// connected; the previous one is still `current`.
struct BinaryTrial {
  std::string command_id;  // the upgradeAgent command it answers
  AgentBinary binary;
  TimePoint switched_at;
  TimePoint deadline;  // the watchdog falls back when it is passed unconfirmed

  bool operator==(const BinaryTrial&) const = default;
};

struct BinaryRecord {
  AgentBinary current;
  std::optional<AgentBinary> previous;
  std::optional<BinaryTrial> trial;
  // The last switch's outcome, said in every hello until the controller has
  // acknowledged the command's result.
  std::optional<protocol::AgentUpgradeReport> report;

  bool operator==(const BinaryRecord&) const = default;
};

inline constexpr const char* kBinaryRecordFile = "agent-binary.json";

// nullopt when the file does not exist (no upgrade ever began); an error
// when it exists and does not read.
Result<std::optional<BinaryRecord>> load_binary_record(const std::filesystem::path& state_dir);
Status save_binary_record(const std::filesystem::path& state_dir, const BinaryRecord& record);

// The record's own lock (agent-binary.lock), held around every read-decide-
// write of a switch: the trial's confirmation and the watchdog's fallback
// exclude each other, so that a trial confirming at its deadline is either
// confirmed or killed, never confirmed and killed. Waits up to `timeout`.
Result<FileLock> lock_binary_record(const std::filesystem::path& state_dir,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

// ---- transitions (pure) ----------------------------------------------------------

// The switch is about to happen; `record` has no trial.
BinaryRecord begin_trial(BinaryRecord record, BinaryTrial trial);
// The new binary has connected: it becomes current, the old one previous.
BinaryRecord confirm_trial(BinaryRecord record);
// The new binary did not make it: the old one stays current; the report
// says why ("<why>; back on <old>").
BinaryRecord fall_back(BinaryRecord record, const std::string& why);
// The controller has the command's result: the hello stops repeating it.
BinaryRecord forget_report(BinaryRecord record, const std::string& command_id);

// ---- which binary runs at start-up -------------------------------------------------

struct StartupContext {
  std::filesystem::path self;  // the binary this process runs (/proc/self/exe)
  std::string self_version;    // build_version()
  // TRANCHE_AGENT_TRIAL: set by the switch on the new binary's exec, the
  // command id of the trial it is.
  std::string trial_marker;
  // TRANCHE_AGENT_EXEC: set on every other exec of an agent by an agent or
  // its watchdog; such a process runs, whatever the record says (no loops).
  bool exec_marker = false;
  std::function<bool(const std::filesystem::path&)> is_executable;
  std::function<bool(const std::filesystem::path&, const std::filesystem::path&)> same_file;
};

struct StartupChoice {
  // nullopt: this process runs as the agent; else exec that binary.
  std::optional<std::filesystem::path> exec;
  bool is_trial = false;                // this process is the trial the record names
  std::optional<BinaryRecord> write;    // written before acting on the choice
  std::string note;                     // what was decided and why, to log
};

StartupChoice choose_startup_binary(const std::optional<BinaryRecord>& record, const StartupContext& context);

}  // namespace tranche::agent
