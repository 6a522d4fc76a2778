#pragma once
// Internal to the agent (process_driver.cc, health.cc): starting a program
// with fork+exec from a multi-threaded process, and waiting for it with a
// timeout. Not part of the driver's interface.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace tranche::agent::detail {

using Environment = std::map<std::string, std::string>;

// Where a program's name is looked up when the agent itself has no PATH.
inline constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// What every program the agent starts (member, hook, exec probe) takes from
// the agent's environment: PATH alone, so that it finds the programs the
// agent finds on this host (kDefaultPath when the agent has none). Nothing
// else: the agent's environment may hold secrets such as TRANCHE_TOKEN
// (quality.md, "Security"); a member's other variables come from its spec.
Environment base_environment();

struct SpawnRequest {
  std::vector<std::string> argv;      // argv[0] is resolved through PATH of `env` when it has no '/'
  Environment env;                    // the child's complete environment
  std::filesystem::path workdir;      // empty: the agent's own
  std::filesystem::path stdout_path;  // opened for appending (created 0644); empty: /dev/null
  std::filesystem::path stderr_path;  // likewise; equal to stdout_path: both share one descriptor
  bool new_session = true;            // setsid(): own session and process group (pgid == pid)
  // When set, the child writes its pid here (decimal) before exec: a record
  // of the spawn that outlives an agent killed before it journaled the pid.
  std::filesystem::path pid_file;
};

// Starts the program. Every failure to get it running (program not found or
// not executable, missing workdir, unopenable output file) is an error here,
// never a child that exits at once: the child reports a failed chdir/exec
// through a close-on-exec pipe. The message names the failing thing and the
// errno text, e.g. "'nope': No such file or directory".
Result<pid_t> spawn(const SpawnRequest& request);

struct WaitResult {
  bool timed_out = false;
  bool lost = false;  // reaped by someone else (e.g. SIGCHLD ignored): status unknown
  int status = 0;     // as from waitpid
};

// Waits for the child `pid` to end. Once `timeout` has passed, SIGKILLs its
// process group (and the pid itself) and reaps it.
WaitResult wait_or_kill(pid_t pid, std::chrono::milliseconds timeout);

// "30s", "1500ms".
std::string describe_duration(std::chrono::milliseconds duration);

}  // namespace tranche::agent::detail
