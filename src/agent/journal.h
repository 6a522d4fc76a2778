#pragma once
// The agent's durable memory: its identity, the members it runs and the
// commands it has taken. Saved whole and atomically (temp file, fsync,
// rename, fsync of the directory), so an agent killed at any instant finds
// either the old or the new journal, never a torn one.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/driver.h"
#include "common/error.h"

namespace tranche::agent {

// An in-place update under way (updates.md, "method: in-place"). Journaled
// before its hook starts, so that an agent restarted at any instant neither
// runs the hook twice nor forgets to restart the member and answer.
struct PendingUpdate {
  std::string command_id;  // the update command to answer
  LaunchSpec spec;         // the new template: becomes the member's own once its process runs
  nlohmann::json health;
  nlohmann::json stats;
  int64_t grace_ms = 10000;  // for stopping the old process
  std::string note;          // how the hook ended, once it has; reported in the result
};

struct JournalMember {
  LaunchSpec spec;
  nlohmann::json health;                 // the cluster's health block, as the controller sent it
  nlohmann::json stats;                  // the cluster's stats block, or null
  std::optional<MemberProcess> process;  // nullopt before start / after stop
  // The agent's view: Running | Updating (update hook running) | Maintenance
  // (maintenance hook running) | Restarting (old process stopping, to start
  // again after a hook) | Stopping | Exited.
  std::string state;
  std::optional<int> exit_code;
  std::optional<PendingUpdate> update;
  // The last health verdict of the running process. Journaled so that an
  // agent restarted under a healthy member keeps reporting it healthy until
  // its own checks fail beyond the threshold, instead of reporting it
  // unhealthy (and the controller failing it) before the first probe.
  bool healthy = false;
};

struct JournalCommand {
  std::string id;
  std::string type;
  std::string member;
  bool done = false;
  // The result to report, kept until the controller has acknowledged it.
  std::optional<nlohmann::json> result;
  bool result_acked = false;
};

struct JournalState {
  std::string host_id;
  std::string host_token;
  std::map<std::string, JournalMember> members;
  std::vector<JournalCommand> commands;  // newest last; acknowledged ones pruned beyond a bound
};

// Settled commands (done, result acknowledged) kept: the newest this many.
// Unsettled ones are never pruned.
inline constexpr size_t kMaxSettledCommands = 1000;

// Drops all but the newest `keep` settled commands, in order. Journal::save
// writes the pruned list whatever the caller holds; calling this on the
// in-memory state keeps that bounded too.
void prune_commands(JournalState& state, size_t keep = kMaxSettledCommands);

class Journal {
 public:
  explicit Journal(std::filesystem::path state_dir);
  // A missing journal is an empty state; a corrupt one is an error.
  Result<JournalState> load() const;
  // Writes journal.json (mode 0600: it holds the host token) via
  // journal.json.tmp; settled commands beyond kMaxSettledCommands are left out.
  Status save(const JournalState& state) const;
  const std::filesystem::path& state_dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

// Every field, every command (no pruning). Missing keys read as defaults;
// keys of the wrong type are an error.
nlohmann::json to_json(const JournalState& state);
Result<JournalState> journal_from_json(const nlohmann::json& doc);

}  // namespace tranche::agent
