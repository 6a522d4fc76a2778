#pragma once
// Messages of the agent protocol. Each is a JSON object with a "type".

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tranche::protocol {

// The version this build speaks; a controller accepts this one and the one before.
inline constexpr int kVersion = 1;

struct HelloMember {
  std::string id;
  int64_t revision = 0;
  // The agent's view: Running | Updating | Maintenance | Restarting |
  // Stopping | Exited (agent/journal.h says what each means).
  std::string state;
  std::optional<int64_t> pid;
};

struct Hello {
  int protocol = kVersion;
  std::string host_id;     // empty on first join
  std::string join_token;  // first join
  std::string host_token;  // later connections
  std::string hostname;
  std::map<std::string, std::string> labels;
  int64_t slots = 64;
  std::vector<HelloMember> members;
};

struct Welcome {
  std::string host_id;
  std::string host_token;
  double heartbeat_interval_seconds = 2;
  int protocol = kVersion;
};

struct MemberStats {
  double load = 0;
  std::optional<int64_t> requests_in_flight;
};

struct MemberReport {
  std::string id;
  std::string state;
  bool healthy = false;
  std::optional<MemberStats> stats;
  std::optional<int64_t> pid;
  std::map<std::string, int> ports;
};

struct Heartbeat {
  uint64_t seq = 0;
  std::vector<MemberReport> members;
};

struct Command {
  std::string id;
  // start | stop | maintenance | update | logs. On the wire the field is
  // "command" (the message's "type" is "command"). update: spec holds a
  // start spec for the new template plus "hook" (argv) and "graceMs".
  std::string type;
  std::string member;
  nlohmann::json spec = nlohmann::json::object();
};

struct Ack {
  std::string id;
};

struct CommandResult {
  std::string id;
  bool ok = false;
  std::optional<int> exit_code;
  std::string message;
  nlohmann::json data = nullptr;  // e.g. pid and ports of a started member, log text
};

struct AgentEvent {
  std::string type;  // exited | healthy | unhealthy | resumed
  std::string member;
  std::optional<int> exit_code;
  std::string message;
};

struct ErrorMessage {
  std::string message;
};

nlohmann::json to_json(const Hello& m);
nlohmann::json to_json(const Welcome& m);
nlohmann::json to_json(const Heartbeat& m);
nlohmann::json to_json(const Command& m);
nlohmann::json to_json(const Ack& m);
nlohmann::json to_json(const CommandResult& m);
nlohmann::json to_json(const AgentEvent& m);
nlohmann::json to_json(const ErrorMessage& m);

Result<Hello> parse_hello(const nlohmann::json& j);
Result<Welcome> parse_welcome(const nlohmann::json& j);
Result<Heartbeat> parse_heartbeat(const nlohmann::json& j);
Result<Command> parse_command(const nlohmann::json& j);
Result<Ack> parse_ack(const nlohmann::json& j);
Result<CommandResult> parse_result(const nlohmann::json& j);
Result<AgentEvent> parse_event(const nlohmann::json& j);

// The "type" of a message text, or an error when it is not a JSON object
// with a string type.
Result<std::pair<std::string, nlohmann::json>> parse_envelope(std::string_view text);

}  // namespace tranche::protocol
