#pragma once
// The agent's side of "commands and results are idempotent by id": every
// command is journaled before it is acted on, a redelivered command gets
// the outcome it already had (or nothing while it runs), and results are
// replayed until the controller acknowledges them.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/journal.h"
#include "protocol/messages.h"

namespace tranche::agent {

class CommandBook {
 public:
  explicit CommandBook(std::vector<JournalCommand>& commands) : commands_(commands) {}

  enum class Admission { kNew, kRunning, kDone };
  // kNew records the command (the caller saves the journal before acting).
  // Takes the header only: a command whose spec does not decode is journaled
  // and answered (with a failed result) like any other.
  Admission admit(const protocol::CommandHeader& command);

  // Records the outcome and returns the result message to send; nullopt when
  // the id is unknown or already has an outcome (a late duplicate).
  std::optional<nlohmann::json> complete(const protocol::CommandResult& result);

  // The controller has the result; true when this changed anything.
  bool acknowledge(const std::string& id);

  const JournalCommand* find(const std::string& id) const;
  // Results to send again after a reconnect, oldest first.
  std::vector<nlohmann::json> unacknowledged() const;

 private:
  JournalCommand* find_mutable(const std::string& id);
  std::vector<JournalCommand>& commands_;
};

}  // namespace tranche::agent
