#include "agent/journal.h"

#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tranche::agent {

namespace {

using nlohmann::json;

constexpr int kFormat = 1;
constexpr const char* kFileName = "journal.json";

// Reads obj[key] into `out` when present and not null; a wrong type throws
// (caught in journal_from_json).
template <class T>
void read(const json& obj, const char* key, T& out) {
  if (const auto it = obj.find(key); it != obj.end() && !it->is_null()) {
    it->get_to(out);
  }
}

const json& object_at(const json& obj, const char* key, const std::string& where) {
  static const json kEmpty = json::object();
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return kEmpty;
  }
  if (!it->is_object()) {
    throw std::runtime_error(where + "." + key + " is not an object");
  }
  return *it;
}

json spec_to_json(const LaunchSpec& spec) {
  return json{{"member", spec.member},     {"app", spec.app},         {"cluster", spec.cluster},
              {"revision", spec.revision}, {"version", spec.version}, {"command", spec.command},
              {"env", spec.env},           {"workdir", spec.workdir}, {"ports", spec.ports}};
}

LaunchSpec spec_from_json(const json& obj) {
  LaunchSpec spec;
  read(obj, "member", spec.member);
  read(obj, "app", spec.app);
  read(obj, "cluster", spec.cluster);
  read(obj, "revision", spec.revision);
  read(obj, "version", spec.version);
  read(obj, "command", spec.command);
  read(obj, "env", spec.env);
  read(obj, "workdir", spec.workdir);
  read(obj, "ports", spec.ports);
  return spec;
}

json process_to_json(const MemberProcess& process) {
  return json{{"member", process.member},
              {"pid", process.pid},
              {"startTicks", process.start_ticks},
              {"ports", process.ports},
              {"logDir", process.log_dir.string()}};
}

MemberProcess process_from_json(const json& obj) {
  MemberProcess process;
  read(obj, "member", process.member);
  read(obj, "pid", process.pid);
  read(obj, "startTicks", process.start_ticks);
  read(obj, "ports", process.ports);
  std::string log_dir;
  read(obj, "logDir", log_dir);
  process.log_dir = log_dir;
  return process;
}

json update_to_json(const PendingUpdate& update) {
  return json{{"command", update.command_id}, {"spec", spec_to_json(update.spec)}, {"health", update.health},
              {"stats", update.stats},        {"graceMs", update.grace_ms},        {"note", update.note}};
}

PendingUpdate update_from_json(const json& obj, const std::string& where) {
  PendingUpdate update;
  read(obj, "command", update.command_id);
  update.spec = spec_from_json(object_at(obj, "spec", where));
  if (const auto it = obj.find("health"); it != obj.end()) {
    update.health = *it;
  }
  if (const auto it = obj.find("stats"); it != obj.end()) {
    update.stats = *it;
  }
  read(obj, "graceMs", update.grace_ms);
  read(obj, "note", update.note);
  return update;
}

json member_to_json(const JournalMember& member) {
  json obj{{"spec", spec_to_json(member.spec)},
           {"health", member.health},
           {"stats", member.stats},
           {"process", member.process ? process_to_json(*member.process) : json(nullptr)},
           {"state", member.state},
           {"exitCode", member.exit_code ? json(*member.exit_code) : json(nullptr)},
           {"update", member.update ? update_to_json(*member.update) : json(nullptr)},
           {"healthy", member.healthy}};
  return obj;
}

JournalMember member_from_json(const json& obj, const std::string& where) {
  JournalMember member;
  member.spec = spec_from_json(object_at(obj, "spec", where));
  if (const auto it = obj.find("health"); it != obj.end()) {
    member.health = *it;
  }
  if (const auto it = obj.find("stats"); it != obj.end()) {
    member.stats = *it;
  }
  if (const auto it = obj.find("process"); it != obj.end() && !it->is_null()) {
    member.process = process_from_json(object_at(obj, "process", where));
  }
  read(obj, "state", member.state);
  if (const auto it = obj.find("exitCode"); it != obj.end() && !it->is_null()) {
    member.exit_code = it->get<int>();
  }
  if (const auto it = obj.find("update"); it != obj.end() && !it->is_null()) {
    member.update = update_from_json(object_at(obj, "update", where), where + ".update");
  }
  read(obj, "healthy", member.healthy);
  return member;
}

json command_to_json(const JournalCommand& command) {
  json obj{{"id", command.id},
           {"type", command.type},
           {"member", command.member},
           {"done", command.done},
           {"resultAcked", command.result_acked}};
  if (command.result) {
    obj["result"] = *command.result;  // present even when null: "a result, which is null"
  }
  return obj;
}

JournalCommand command_from_json(const json& obj) {
  JournalCommand command;
  read(obj, "id", command.id);
  read(obj, "type", command.type);
  read(obj, "member", command.member);
  read(obj, "done", command.done);
  if (const auto it = obj.find("result"); it != obj.end()) {
    command.result = *it;
  }
  read(obj, "resultAcked", command.result_acked);
  return command;
}

bool settled(const JournalCommand& command) { return command.done && command.result_acked; }

// Which commands survive pruning: every unsettled one and the newest `keep`
// settled ones.
std::vector<bool> commands_kept(const std::vector<JournalCommand>& commands, size_t keep) {
  std::vector<bool> kept(commands.size(), true);
  size_t seen = 0;
  for (size_t i = commands.size(); i-- > 0;) {
    if (settled(commands[i]) && ++seen > keep) {
      kept[i] = false;
    }
  }
  return kept;
}

json state_to_json(const JournalState& state, size_t keep_settled) {
  json members = json::object();
  for (const auto& [id, member] : state.members) {
    members[id] = member_to_json(member);
  }
  json commands = json::array();
  const auto kept = commands_kept(state.commands, keep_settled);
  for (size_t i = 0; i < state.commands.size(); ++i) {
    if (kept[i]) {
      commands.push_back(command_to_json(state.commands[i]));
    }
  }
  return json{{"format", kFormat},
              {"hostId", state.host_id},
              {"hostToken", state.host_token},
              {"members", std::move(members)},
              {"commands", std::move(commands)}};
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void prune_commands(JournalState& state, size_t keep) {
  const auto kept = commands_kept(state.commands, keep);
  size_t out = 0;
  for (size_t i = 0; i < state.commands.size(); ++i) {
    if (kept[i]) {
      if (out != i) {
        state.commands[out] = std::move(state.commands[i]);
      }
      ++out;
    }
  }
  state.commands.resize(out);
}

nlohmann::json to_json(const JournalState& state) { return state_to_json(state, SIZE_MAX); }

Result<JournalState> journal_from_json(const nlohmann::json& doc) {
  if (!doc.is_object()) {
    return fail(ErrorCode::kInternal, "journal is not a JSON object");
  }
  try {
    JournalState state;
    if (const auto it = doc.find("format"); it != doc.end() && it->is_number_integer() && it->get<int>() > kFormat) {
      return fail(ErrorCode::kInternal,
                  "journal format " + std::to_string(it->get<int>()) + " is newer than this agent");
    }
    read(doc, "hostId", state.host_id);
    read(doc, "hostToken", state.host_token);
    for (const auto& [id, member] : object_at(doc, "members", "journal").items()) {
      if (!member.is_object()) {
        return fail(ErrorCode::kInternal, "journal: members." + id + " is not an object");
      }
      state.members.emplace(id, member_from_json(member, "members." + id));
    }
    if (const auto it = doc.find("commands"); it != doc.end() && !it->is_null()) {
      if (!it->is_array()) {
        return fail(ErrorCode::kInternal, "journal: commands is not an array");
      }
      for (const auto& command : *it) {
        if (!command.is_object()) {
          return fail(ErrorCode::kInternal, "journal: a command is not an object");
        }
        state.commands.push_back(command_from_json(command));
      }
    }
    return state;
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInternal, std::string("journal: ") + e.what());
  }
}

Journal::Journal(std::filesystem::path state_dir) : dir_(std::move(state_dir)) {}

Result<JournalState> Journal::load() const {
  const auto path = dir_ / kFileName;
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && !ec) {
      return JournalState{};
    }
    return fail(ErrorCode::kInternal, "cannot read journal " + path.string() + ": " + errno_text());
  }
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    return fail(ErrorCode::kInternal, "cannot read journal " + path.string());
  }
  const auto doc = nlohmann::json::parse(text.str(), nullptr, false);
  if (doc.is_discarded()) {
    return fail(ErrorCode::kInternal, "cannot parse journal " + path.string() + ": not valid JSON");
  }
  auto state = journal_from_json(doc);
  if (!state) {
    return fail(ErrorCode::kInternal, "cannot load journal " + path.string() + ": " + state.error().message);
  }
  return state;
}

Status Journal::save(const JournalState& state) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, "cannot create state dir " + dir_.string() + ": " + ec.message());
  }
  return write_file_atomically(dir_ / kFileName, state_to_json(state, kMaxSettledCommands).dump() + "\n", 0600);
}

}  // namespace tranche::agent
