#pragma once
// How an agent runs a member. The process driver is the only implementation
// today; a container driver (Docker Engine API) would be another.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace tranche::agent {

// Everything needed to start one member; comes from the controller.
struct LaunchSpec {
  std::string member;  // "web/3"
  std::string app;
  std::string cluster;
  int64_t revision = 0;
  std::string version;
  std::vector<std::string> command;  // argv; ${PORT_X}, ${VERSION} and ${TRANCHE_*} are expanded
  std::map<std::string, std::string> env;
  std::string workdir;             // empty: the member's own directory under the state dir (start()'s log_dir)
  std::vector<std::string> ports;  // names; one free port is allocated per name
};

// A started member as the journal remembers it. `start_ticks` (field 22 of
// /proc/PID/stat) tells a re-used pid from the member's own process.
struct MemberProcess {
  std::string member;
  int64_t pid = 0;
  uint64_t start_ticks = 0;
  std::map<std::string, int> ports;
  std::filesystem::path log_dir;  // stdout.log, stderr.log
};

enum class ProcessState { kRunning, kExited };

struct ProcessStatus {
  ProcessState state = ProcessState::kRunning;
  // Known when the process was our child; nullopt when it died while another
  // agent incarnation owned it.
  std::optional<int> exit_code;
  std::optional<int> signal;
};

// The newest process started for a member, recorded in its log dir by the
// process itself before it runs: an agent killed between starting a
// process and journaling it finds it there after its restart.
inline constexpr const char* kSpawnRecord = "pid";

class Driver {
 public:
  virtual ~Driver() = default;

  // Allocates ports, expands the command, starts the process in its own
  // session with stdout/stderr in size-capped files under `log_dir`. Its
  // environment is explicit, never the agent's: the agent's PATH, then the
  // spec's `env`, then TRANCHE_APP, TRANCHE_CLUSTER, TRANCHE_MEMBER,
  // TRANCHE_REVISION, VERSION and one PORT_<NAME> per port. Before the
  // program runs, its pid is in `log_dir`/kSpawnRecord.
  virtual Result<MemberProcess> start(const LaunchSpec& spec, const std::filesystem::path& log_dir) = 0;

  // Sends SIGTERM now; poll() sends SIGKILL once `grace` has passed.
  virtual void begin_stop(const MemberProcess& process, std::chrono::milliseconds grace) = 0;

  // Non-blocking. Reaps our children; for adopted processes checks that the
  // pid still runs with the same start_ticks.
  virtual ProcessStatus poll(const MemberProcess& process) = 0;

  // Caps every member's log files (called periodically).
  virtual void rotate_logs(const MemberProcess& process) = 0;
};

struct ProcessDriverOptions {
  uint64_t max_log_bytes = 10 * 1024 * 1024;  // per file; the older half is dropped beyond it
};

std::unique_ptr<Driver> make_process_driver(ProcessDriverOptions options = {});

// Who a member is, as its process and its hooks see it: the spec's `env`,
// then TRANCHE_APP, TRANCHE_CLUSTER, TRANCHE_MEMBER, TRANCHE_REVISION,
// VERSION and one PORT_<NAME> per port (a port's name upper-cased, '-' as
// '_').
std::map<std::string, std::string> member_variables(const LaunchSpec& spec, const std::map<std::string, int>& ports);

// Runs a hook (argv) to completion with the agent's PATH and `env` as its
// whole environment (the member's, built by the caller), output appended
// to `output_file`, killed after `timeout`. Blocking: call off the agent's
// event loop.
struct HookOutcome {
  int exit_code = -1;  // -1: could not start or killed by timeout
  std::string message;
};
HookOutcome run_hook(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                     const std::filesystem::path& workdir, const std::filesystem::path& output_file,
                     std::chrono::milliseconds timeout);

// The start time of a pid in clock ticks since boot; nullopt if it is gone.
std::optional<uint64_t> process_start_ticks(int64_t pid);

}  // namespace tranche::agent
