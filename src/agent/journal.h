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

struct JournalMember {
  LaunchSpec spec;
  nlohmann::json health;                 // the cluster's health block, as the controller sent it
  nlohmann::json stats;                  // the cluster's stats block, or null
  std::optional<MemberProcess> process;  // nullopt before start / after stop
  std::string state;                     // the agent's view: Starting | Running | Stopping | Exited | Stopped
  std::optional<int> exit_code;
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
