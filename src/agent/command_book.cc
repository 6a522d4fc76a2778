#include "agent/command_book.h"

namespace tranche::agent {

CommandBook::Admission CommandBook::admit(const protocol::CommandHeader& command) {
  if (const JournalCommand* seen = find(command.id)) {
    return seen->result ? Admission::kDone : Admission::kRunning;
  }
  commands_.push_back(JournalCommand{command.id, command.type, command.member});
  return Admission::kNew;
}

std::optional<nlohmann::json> CommandBook::complete(const protocol::CommandResult& result) {
  JournalCommand* c = find_mutable(result.id);
  if (!c || c->result) {
    return std::nullopt;
  }
  c->done = true;
  c->result = protocol::to_json(result);
  return c->result;
}

bool CommandBook::acknowledge(const std::string& id) {
  JournalCommand* c = find_mutable(id);
  if (!c || !c->result || c->result_acked) {
    return false;
  }
  c->result_acked = true;
  return true;
}

const JournalCommand* CommandBook::find(const std::string& id) const {
  for (const auto& c : commands_) {
    if (c.id == id) {
      return &c;
    }
  }
  return nullptr;
}

JournalCommand* CommandBook::find_mutable(const std::string& id) {
  return const_cast<JournalCommand*>(std::as_const(*this).find(id));
}

std::vector<nlohmann::json> CommandBook::unacknowledged() const {
  std::vector<nlohmann::json> out;
  for (const auto& c : commands_) {
    if (c.result && !c.result_acked) {
      out.push_back(*c.result);
    }
  }
  return out;
}

}  // namespace tranche::agent
