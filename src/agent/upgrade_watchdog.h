#pragma once
// The fallback watchdog of an agent self-upgrade (`tranche agent-watchdog`,
// a hidden mode of the previous binary, started by the agent just before it
// execs the new one). It outlives the exec, and waits for the trial's
// outcome in the binary record: confirmed (or cleared) -> it leaves; the
// agent's pid ended, or the deadline passed unconfirmed -> it kills the trial
// if still alive, writes the record back to the previous binary with the
// reason, and the caller execs that binary as the agent.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "agent/binary_record.h"
#include "common/clock.h"
#include "common/error.h"

namespace tranche::agent {

// What the watchdog sees of the trial agent's pid.
struct TrialProcess {
  bool alive = true;
  // Once it has ended: "exited with status 1", "was killed by signal 9", or
  // "ended" when it was already reaped by its parent (the watchdog is not it).
  std::string ended;
};

enum class WatchVerdict { kWait, kDone, kFallBack };

struct WatchDecision {
  WatchVerdict verdict = WatchVerdict::kWait;
  std::string why;    // kFallBack: the reason the report gives
  bool kill = false;  // kFallBack: the trial still runs and must be killed first
};

// Pure: the record as it is now, the trial's pid, the time.
WatchDecision decide_watch(const std::optional<BinaryRecord>& record, const std::string& command_id,
                           const TrialProcess& trial, TimePoint now);

// /proc/PID/stat, compared with the process's start time taken when the
// watch began (a pid reused since is not the agent): alive, or how it ended
// (a zombie still tells its exit status).
TrialProcess observe_process(pid_t pid, uint64_t start_ticks);
// The start time of `pid` in clock ticks since boot; nullopt when it is gone.
std::optional<uint64_t> process_start_ticks_of(pid_t pid);

struct WatchdogOptions {
  std::filesystem::path state_dir;
  pid_t pid = 0;  // the agent's, the same before and after its exec
  std::string command_id;
  std::chrono::milliseconds poll{100};
};

struct WatchOutcome {
  std::optional<std::filesystem::path> exec;  // the binary to run as the agent now; nullopt: nothing to do
  std::string note;                           // what happened, to log
};

// Polls until decided. On a fallback, writes the record under the agent's
// lock (released again before returning: the exec'd agent takes it), so
// that an agent its supervisor started meanwhile and this watchdog never
// both fall back; when such an agent holds the lock, it has decided.
Result<WatchOutcome> watch_trial(const WatchdogOptions& options, const Clock& clock);

}  // namespace tranche::agent
