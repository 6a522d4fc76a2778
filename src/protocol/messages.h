#pragma once
// Messages of the agent protocol (interfaces.md, "Agent protocol"). On the
// wire each is a JSON object with a "type"; in memory each is a typed struct,
// decoded once where it comes in:
//
// - the controller decodes every frame an agent sends with
//   decode_agent_frame() (frames.h) into AgentMessages, at its WebSocket edge, and
//   the engine sees only the typed form;
// - the agent decodes every command with parse_command() into a Command
//   whose spec is a typed StartSpec, StopSpec, ... before acting on it.
//
// Parsing never throws. Its errors name the offending field with the
// message's path ("result.data.pid", "command.spec.health.http.port"), so
// that a rejection says what was wrong. Keys a parser does not know are
// ignored (a newer peer may send more); a known key of the wrong type or out
// of range is an error. to_json writes exactly what the previous, untyped
// build wrote, so controllers and agents of either build understand each
// other (tests/unit/protocol/messages_test.cc keeps that true).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "protocol/versions.h"

namespace tranche::protocol {

// ---- the connection ------------------------------------------------------------

struct HelloMember {
  std::string id;
  int64_t revision = 0;
  // The agent's view: Running | Updating | Maintenance | Restarting |
  // Stopping | Exited (agent/journal.h says what each means).
  std::string state;
  std::optional<int64_t> pid;

  bool operator==(const HelloMember&) const = default;
};

// What an agent says in its hello after an upgradeAgent switch: the new
// binary once it is confirmed (ok), or the previous one after it fell back
// (not ok, the reason). Wire: "upgrade": {"commandId", "version", "ok",
// "message"}.
struct AgentUpgradeReport {
  std::string command_id;
  std::string version;  // the version the command asked for
  bool ok = false;
  std::string message;

  bool operator==(const AgentUpgradeReport&) const = default;
};

struct Hello {
  // The range of protocol versions the agent speaks (versions.h):
  // "oldestProtocol" (absent: the same as "protocol") to "protocol".
  int protocol = kVersion;
  int oldest_protocol = kOldestVersion;
  std::string host_id;     // empty on first join
  std::string join_token;  // first join
  std::string host_token;  // later connections
  std::string hostname;
  std::map<std::string, std::string> labels;
  int64_t slots = 64;
  std::vector<HelloMember> members;
  std::string agent_version;  // its build; empty from agents that do not say
  std::optional<AgentUpgradeReport> upgrade;  // "upgrade", after a self-upgrade

  bool operator==(const Hello&) const = default;
};

struct Welcome {
  std::string host_id;
  std::string host_token;
  double heartbeat_interval_seconds = 2;
  int protocol = kVersion;

  bool operator==(const Welcome&) const = default;
};

struct ErrorMessage {
  std::string message;

  bool operator==(const ErrorMessage&) const = default;
};

// ---- agent to controller ---------------------------------------------------------

struct MemberStats {
  double load = 0;  // as the member's stats endpoint reports it
  std::optional<int64_t> requests_in_flight;

  bool operator==(const MemberStats&) const = default;
};

struct MemberReport {
  std::string id;
  std::string state;
  bool healthy = false;
  std::optional<MemberStats> stats;
  std::optional<int64_t> pid;
  std::map<std::string, int> ports;  // name -> 1..65535

  bool operator==(const MemberReport&) const = default;
};

struct Heartbeat {
  uint64_t seq = 0;
  std::vector<MemberReport> members;

  bool operator==(const Heartbeat&) const = default;
};

// The process a command started: the data of a successful start, update or
// maintenance result, {"pid": N, "ports": {"http": 8080}}.
struct ProcessStarted {
  int64_t pid = 0;  // 1..2^31-1
  // Absent: the ports the controller knows stay as they are.
  std::optional<std::map<std::string, int>> ports;

  bool operator==(const ProcessStarted&) const = default;
};

// A member's (or a hook's) output: the data of a logs result,
// {"stdout": "...", "stderr": "..."}.
struct LogOutput {
  std::string out;  // "stdout"
  std::string err;  // "stderr"

  bool operator==(const LogOutput&) const = default;
};

// A result's "data": null (nothing to say), a process or log output. An
// object with neither a pid nor output reads as null (a newer agent's).
using ResultData = std::variant<std::monostate, ProcessStarted, LogOutput>;

struct CommandResult {
  std::string id;
  bool ok = false;
  std::optional<int> exit_code;
  std::string message;
  ResultData data;

  const ProcessStarted* process() const { return std::get_if<ProcessStarted>(&data); }
  const LogOutput* logs() const { return std::get_if<LogOutput>(&data); }

  bool operator==(const CommandResult&) const = default;
};

struct AgentEvent {
  std::string type;  // exited | healthy | unhealthy | resumed
  std::string member;
  std::optional<int> exit_code;
  std::string message;

  bool operator==(const AgentEvent&) const = default;
};

struct Ack {
  std::string id;

  bool operator==(const Ack&) const = default;
};

// Everything an agent sends after its hello.
using AgentMessage = std::variant<Heartbeat, CommandResult, AgentEvent, Ack>;

// A message's type and the whole message, as parse_envelope() reads it.
using Envelope = std::pair<std::string, nlohmann::json>;

// One message of an agent, decoded: never throws; the error names the field
// ("type" for an unknown type, "result.data.pid", ...).
Result<AgentMessage> decode_agent_message(const Envelope& message);

// ---- controller to agent: commands --------------------------------------------

// An HTTP endpoint on one of the member's declared ports.
struct HttpEndpoint {
  std::string port;  // a port name
  std::string path = "/";

  bool operator==(const HttpEndpoint&) const = default;
};
struct TcpProbe {
  std::string port;  // a port name

  bool operator==(const TcpProbe&) const = default;
};
struct ExecProbe {
  std::vector<std::string> argv;  // not empty

  bool operator==(const ExecProbe&) const = default;
};

// The cluster's health check: {"http": {"port", "path"}} | {"tcp": {"port"}}
// | {"exec": [argv]}, with "intervalSeconds", "timeoutSeconds" and
// "unhealthyThreshold" (each at least 1).
struct HealthCheckSpec {
  std::variant<HttpEndpoint, TcpProbe, ExecProbe> probe;
  int interval_seconds = 1;
  int timeout_seconds = 1;
  int unhealthy_threshold = 3;

  bool operator==(const HealthCheckSpec&) const = default;
};

// The cluster's stats endpoint (for autoscaling): {"http": {"port", "path"}}.
struct StatsSpec {
  HttpEndpoint http;

  bool operator==(const StatsSpec&) const = default;
};

// `start`: everything an agent needs to run a member of the cluster's
// current template. Wire: {"app", "cluster", "revision", "version",
// "command", "env", "workdir", "ports", "health", "stats", "hooks":
// {"drain"}}; app, cluster, revision, version and command are required.
struct StartSpec {
  std::string app;
  std::string cluster;
  int64_t revision = 0;  // at least 1
  std::string version;
  std::vector<std::string> command;  // argv, not empty
  std::map<std::string, std::string> env;
  std::string workdir;             // empty: the agent's default
  std::vector<std::string> ports;  // names; the agent allocates one port each
  std::optional<HealthCheckSpec> health;
  std::optional<StatsSpec> stats;
  std::vector<std::string> drain_hook;  // "hooks": {"drain": argv}

  bool operator==(const StartSpec&) const = default;
};

// `update` (updates.md, "method: in-place"): the new template's start spec
// plus the update hook and the stop grace, flat in one object.
struct UpdateSpec {
  StartSpec target;
  std::vector<std::string> hook;  // may be empty
  int64_t grace_ms = 10000;

  bool operator==(const UpdateSpec&) const = default;
};

// `stop`: {"graceMs", "drainHook"?}; the drain hook runs first when given.
struct StopSpec {
  int64_t grace_ms = 10000;
  std::vector<std::string> drain_hook;

  bool operator==(const StopSpec&) const = default;
};

// `maintenance`: {"graceMs", "hook"}.
struct MaintenanceSpec {
  int64_t grace_ms = 10000;
  std::vector<std::string> hook;  // may be empty

  bool operator==(const MaintenanceSpec&) const = default;
};

// `logs`: {} for the member's output, {"hook": "update"|"maintenance"} for
// that hook's.
struct LogsSpec {
  std::optional<std::string> hook;

  bool operator==(const LogsSpec&) const = default;
};

// `upgradeAgent` (updates.md, "Upgrading Tranche itself"): the agent
// downloads its new binary with GET <server><path> and its host token,
// checks its size and sha256, stages it and switches to it; if the new
// binary is not connected within fallbackSeconds the host goes back to the
// previous one by itself. The command's member is empty (it is the host's).
// Wire: {"version", "sha256", "size", "path", "fallbackSeconds"}.
struct AgentUpgradeSpec {
  std::string version;           // not empty
  std::string sha256;            // 64 lowercase hex digits
  int64_t size = 0;              // bytes, at least 1
  std::string path;              // "/artifacts/sha256/<hex>": starts with "/"
  int64_t fallback_seconds = 60;  // 5..3600

  bool operator==(const AgentUpgradeSpec&) const = default;
};

inline constexpr int64_t kFallbackSecondsMin = 5;
inline constexpr int64_t kFallbackSecondsMax = 3600;

using CommandSpec = std::variant<StartSpec, StopSpec, MaintenanceSpec, UpdateSpec, LogsSpec, AgentUpgradeSpec>;

// What every command has, whatever its spec: enough to journal it and to
// answer it, also when its spec does not decode.
struct CommandHeader {
  std::string id;
  std::string type;  // start | stop | maintenance | update | logs | upgradeAgent, or what a newer controller sends
  std::string member;

  bool operator==(const CommandHeader&) const = default;
};

// Wire: {"type": "command", "id", "command": TYPE, "member", "spec"}; idempotent by id.
struct Command {
  std::string id;
  std::string member;
  CommandSpec spec;

  // "start", "stop", ...: the wire's "command", from the spec's alternative.
  std::string type() const;
  CommandHeader header() const { return {id, type(), member}; }

  bool operator==(const Command&) const = default;
};

// ---- serialising and parsing -----------------------------------------------------

nlohmann::json to_json(const Hello& m);
nlohmann::json to_json(const Welcome& m);
nlohmann::json to_json(const Heartbeat& m);
nlohmann::json to_json(const Command& m);
nlohmann::json to_json(const Ack& m);
nlohmann::json to_json(const CommandResult& m);
nlohmann::json to_json(const AgentEvent& m);
nlohmann::json to_json(const ErrorMessage& m);
nlohmann::json to_json(const AgentMessage& m);
// A heartbeat's text, written straight into the string: the same JSON as
// to_json(m).dump() (a whole-valued load may read "1" for "1.0"), without
// the document, which cost an agent of 100 members more than encoding.
std::string heartbeat_text(const Heartbeat& m);
// A command's spec alone, as it goes in the command's "spec".
nlohmann::json to_json(const CommandSpec& spec);

// A command's spec as JSON text, with the command's wire type: made once for
// the many members of a cluster at one revision, whose specs are the same.
struct SpecText {
  std::string type;  // "start", "stop", ...
  std::string json;  // to_json(spec).dump()
};
SpecText spec_text(const CommandSpec& spec);
// Byte for byte to_json(Command{id, member, spec}).dump(), from the spec's
// text: a batch of 10,000 commands costs 10,000 joins, not 10,000 documents.
std::string command_text(std::string_view id, std::string_view member, const SpecText& spec);
// The blocks of a start spec, as the agent journals them.
nlohmann::json to_json(const HealthCheckSpec& health);
nlohmann::json to_json(const StatsSpec& stats);

Result<Hello> parse_hello(const nlohmann::json& j);
Result<Welcome> parse_welcome(const nlohmann::json& j);
Result<Heartbeat> parse_heartbeat(const nlohmann::json& j);
// The whole command, its spec decoded by the "command" type; an unknown type
// is an error ("command.command").
Result<Command> parse_command(const nlohmann::json& j);
// Only the id, type and member of a command: what the agent needs to answer
// one whose spec does not decode.
Result<CommandHeader> parse_command_header(const nlohmann::json& j);
Result<Ack> parse_ack(const nlohmann::json& j);
Result<CommandResult> parse_result(const nlohmann::json& j);
Result<AgentEvent> parse_event(const nlohmann::json& j);
Result<ErrorMessage> parse_error_message(const nlohmann::json& j);
// The blocks of a start spec as the agent journals them ("health" is the
// field path errors start with).
Result<HealthCheckSpec> parse_health_check(const nlohmann::json& j, const std::string& path = "health");

// The "type" of a message text, or an error when it is not a JSON object
// with a string type.
Result<Envelope> parse_envelope(std::string_view text);
// The same of a message already parsed; `field` names it in the error.
Result<Envelope> envelope_of(nlohmann::json message, const std::string& field = "");

}  // namespace tranche::protocol
