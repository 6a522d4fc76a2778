#include "protocol/messages.h"

#include <algorithm>
#include <iterator>

#include "protocol/json_reader.h"

namespace tranche::protocol {

namespace {

using nlohmann::json;

template <class T>
void put_optional(json& j, const char* key, const std::optional<T>& v) {
  if (v) {
    j[key] = *v;
  }
}

// ---- command specs ------------------------------------------------------------------

json endpoint_json(const HttpEndpoint& e) { return {{"port", e.port}, {"path", e.path}}; }

HttpEndpoint read_endpoint(const json& j, const std::string& path, Reader& outer) {
  Reader r(j, path);
  HttpEndpoint e;
  e.port = r.nonempty_str("port");
  if (const json* p = r.raw("path"); p && !p->is_null()) {
    e.path = r.str("path");
  }
  outer.absorb(r.done(0));
  return e;
}

struct ProbeJson {
  json operator()(const HttpEndpoint& e) const { return {{"http", endpoint_json(e)}}; }
  json operator()(const TcpProbe& t) const { return {{"tcp", {{"port", t.port}}}}; }
  json operator()(const ExecProbe& x) const { return {{"exec", x.argv}}; }
};

Result<HealthCheckSpec> read_health(const json& j, const std::string& path) {
  Reader r(j, path);
  HealthCheckSpec h;
  auto present = [&](const char* key) {
    const json* v = r.raw(key);
    return v && !v->is_null() ? v : nullptr;
  };
  const json* http = present("http");
  const json* tcp = present("tcp");
  const json* exec = present("exec");
  const int kinds = (http ? 1 : 0) + (tcp ? 1 : 0) + (exec ? 1 : 0);
  if (r.ok() && kinds != 1) {
    r.fail_at("", kinds == 0 ? "expected one of http, tcp, exec" : "expected only one of http, tcp, exec");
  } else if (http) {
    h.probe = read_endpoint(*http, r.path("http"), r);
  } else if (tcp) {
    Reader t(*tcp, r.path("tcp"));
    h.probe = TcpProbe{t.nonempty_str("port")};
    r.absorb(t.done(0));
  } else if (exec) {
    ExecProbe x{r.string_list("exec", true)};
    if (r.ok() && x.argv.empty()) {
      r.fail_at("exec", "must not be empty");
    }
    h.probe = std::move(x);
  }
  h.interval_seconds = static_cast<int>(r.integer("intervalSeconds", false, 1, kIntMax).value_or(1));
  h.timeout_seconds = static_cast<int>(r.integer("timeoutSeconds", false, 1, kIntMax).value_or(1));
  h.unhealthy_threshold = static_cast<int>(r.integer("unhealthyThreshold", false, 1, kIntMax).value_or(3));
  return r.done(std::move(h));
}

json start_json(const StartSpec& s) {
  return {{"app", s.app},
          {"cluster", s.cluster},
          {"revision", s.revision},
          {"version", s.version},
          {"command", s.command},
          {"env", s.env},
          {"workdir", s.workdir},
          {"ports", s.ports},
          {"health", s.health ? to_json(*s.health) : json(nullptr)},
          {"stats", s.stats ? to_json(*s.stats) : json(nullptr)},
          {"hooks", {{"drain", s.drain_hook}}}};
}

StartSpec read_start(Reader& r) {
  StartSpec s;
  s.app = r.nonempty_str("app");
  s.cluster = r.nonempty_str("cluster");
  s.revision = r.integer("revision", true, 1, kInt64Max).value_or(0);
  s.version = r.str("version");
  s.command = r.string_list("command", true);
  if (r.ok() && s.command.empty()) {
    r.fail_at("command", "must not be empty");
  }
  s.env = r.string_map("env");
  s.workdir = r.str("workdir", false);
  s.ports = r.string_list("ports");
  if (const json* health = r.raw("health"); health && !health->is_null() && r.ok()) {
    auto h = read_health(*health, r.path("health"));
    r.absorb(h);
    if (h) {
      s.health = std::move(*h);
    }
  }
  if (const json* stats = r.raw("stats"); stats && !stats->is_null() && r.ok()) {
    Reader sr(*stats, r.path("stats"));
    if (const json* http = sr.raw("http"); http && !http->is_null()) {
      s.stats = StatsSpec{read_endpoint(*http, sr.path("http"), sr)};
    } else {
      sr.fail_at("http", "is required");
    }
    r.absorb(sr.done(0));
  }
  if (const json* hooks = r.raw("hooks"); hooks && !hooks->is_null() && r.ok()) {
    Reader hr(*hooks, r.path("hooks"));
    s.drain_hook = hr.string_list("drain");
    r.absorb(hr.done(0));
  }
  return s;
}

struct SpecJson {
  json operator()(const StartSpec& s) const { return start_json(s); }
  json operator()(const UpdateSpec& u) const {
    json j = start_json(u.target);
    j["hook"] = u.hook;
    j["graceMs"] = u.grace_ms;
    return j;
  }
  json operator()(const StopSpec& s) const {
    json j = {{"graceMs", s.grace_ms}};
    if (!s.drain_hook.empty()) {
      j["drainHook"] = s.drain_hook;
    }
    return j;
  }
  json operator()(const MaintenanceSpec& m) const { return {{"graceMs", m.grace_ms}, {"hook", m.hook}}; }
  json operator()(const LogsSpec& l) const { return l.hook ? json{{"hook", *l.hook}} : json::object(); }
  json operator()(const AgentUpgradeSpec& u) const {
    return {{"version", u.version},
            {"sha256", u.sha256},
            {"size", u.size},
            {"path", u.path},
            {"fallbackSeconds", u.fallback_seconds}};
  }
};

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

AgentUpgradeSpec read_agent_upgrade(Reader& r) {
  AgentUpgradeSpec u;
  u.version = r.nonempty_str("version");
  u.sha256 = r.str("sha256");
  if (r.ok() && !is_sha256_hex(u.sha256)) {
    r.fail_at("sha256", "expected 64 lowercase hex digits");
  }
  u.size = r.integer("size", true, 1, kInt64Max).value_or(0);
  u.path = r.str("path");
  if (r.ok() && !u.path.starts_with("/")) {
    r.fail_at("path", "expected a URL path starting with /");
  }
  u.fallback_seconds =
      r.integer("fallbackSeconds", false, kFallbackSecondsMin, kFallbackSecondsMax).value_or(60);
  return u;
}

Result<CommandSpec> read_spec(const std::string& type, const json& j, const std::string& path) {
  static const json kEmpty = json::object();
  // A spec-less stop or logs is a spec of defaults, as before.
  Reader r(j.is_null() ? kEmpty : j, path);
  CommandSpec spec;
  if (type == "start") {
    spec = read_start(r);
  } else if (type == "update") {
    UpdateSpec u;
    u.target = read_start(r);
    u.hook = r.string_list("hook");
    u.grace_ms = r.integer("graceMs", false, 0, kGraceMax).value_or(10000);
    spec = std::move(u);
  } else if (type == "stop") {
    StopSpec s;
    s.grace_ms = r.integer("graceMs", false, 0, kGraceMax).value_or(10000);
    s.drain_hook = r.string_list("drainHook");
    spec = std::move(s);
  } else if (type == "maintenance") {
    MaintenanceSpec m;
    m.grace_ms = r.integer("graceMs", false, 0, kGraceMax).value_or(10000);
    m.hook = r.string_list("hook");
    spec = std::move(m);
  } else if (type == "logs") {
    LogsSpec l;
    if (std::string hook = r.str("hook", false); !hook.empty()) {
      if (hook != "update" && hook != "maintenance") {
        r.fail_at("hook", "unknown hook '" + hook + "': expected \"update\" or \"maintenance\"");
      }
      l.hook = std::move(hook);
    }
    spec = std::move(l);
  } else if (type == "upgradeAgent") {
    spec = read_agent_upgrade(r);
  }
  return r.done(std::move(spec));
}

// ---- result data -------------------------------------------------------------------

struct DataJson {
  json operator()(std::monostate) const { return nullptr; }
  json operator()(const ProcessStarted& p) const {
    json j = {{"pid", p.pid}};
    put_optional(j, "ports", p.ports);
    return j;
  }
  json operator()(const LogOutput& l) const { return {{"stdout", l.out}, {"stderr", l.err}}; }
};

ResultData read_data(Reader& result) {
  const json* data = result.raw("data");
  if (!data || data->is_null() || !result.ok()) {
    return std::monostate{};
  }
  Reader r(*data, result.path("data"));
  ResultData out;
  if (data->is_object() && (data->contains("pid") || data->contains("ports"))) {
    ProcessStarted p;
    p.pid = r.integer("pid", true, 1, kPidMax).value_or(0);
    p.ports = r.port_map("ports");
    out = std::move(p);
  } else if (data->is_object() && (data->contains("stdout") || data->contains("stderr"))) {
    out = LogOutput{r.str("stdout", false), r.str("stderr", false)};
  }
  result.absorb(r.done(0));
  return out;
}

struct MessageJson {
  template <class T>
  json operator()(const T& m) const {
    return to_json(m);
  }
};

const char* type_of(const CommandSpec& spec) {
  static constexpr const char* kTypes[] = {"start", "stop", "maintenance", "update", "logs", "upgradeAgent"};
  static_assert(std::size(kTypes) == std::variant_size_v<CommandSpec>);
  return kTypes[spec.index()];
}

}  // namespace

std::string Command::type() const { return type_of(spec); }

json to_json(const Hello& m) {
  json members = json::array();
  for (const auto& mem : m.members) {
    json x = {{"id", mem.id}, {"revision", mem.revision}, {"state", mem.state}};
    put_optional(x, "pid", mem.pid);
    members.push_back(std::move(x));
  }
  json j = {{"type", "hello"},    {"protocol", m.protocol}, {"hostname", m.hostname},
            {"labels", m.labels}, {"slots", m.slots},       {"members", std::move(members)}};
  // Only a range says it: a hello of one version is what protocol 1 wrote.
  if (m.oldest_protocol != m.protocol) j["oldestProtocol"] = m.oldest_protocol;
  if (!m.host_id.empty()) j["hostId"] = m.host_id;
  if (!m.join_token.empty()) j["joinToken"] = m.join_token;
  if (!m.host_token.empty()) j["hostToken"] = m.host_token;
  if (!m.agent_version.empty()) j["agentVersion"] = m.agent_version;
  if (m.upgrade) {
    j["upgrade"] = {{"commandId", m.upgrade->command_id},
                    {"version", m.upgrade->version},
                    {"ok", m.upgrade->ok},
                    {"message", m.upgrade->message}};
  }
  return j;
}

json to_json(const Welcome& m) {
  return {{"type", "welcome"},
          {"hostId", m.host_id},
          {"hostToken", m.host_token},
          {"heartbeatIntervalSeconds", m.heartbeat_interval_seconds},
          {"protocol", m.protocol}};
}

json to_json(const Heartbeat& m) {
  json members = json::array();
  for (const auto& r : m.members) {
    json x = {{"id", r.id}, {"state", r.state}, {"healthy", r.healthy}};
    if (r.stats) {
      x["stats"] = {{"load", r.stats->load}};
      put_optional(x["stats"], "requestsInFlight", r.stats->requests_in_flight);
    }
    put_optional(x, "pid", r.pid);
    if (!r.ports.empty()) {
      x["ports"] = r.ports;
    }
    members.push_back(std::move(x));
  }
  return {{"type", "heartbeat"}, {"seq", m.seq}, {"members", std::move(members)}};
}

json to_json(const CommandSpec& spec) { return std::visit(SpecJson{}, spec); }
json to_json(const HealthCheckSpec& h) {
  json j = std::visit(ProbeJson{}, h.probe);
  j["intervalSeconds"] = h.interval_seconds;
  j["timeoutSeconds"] = h.timeout_seconds;
  j["unhealthyThreshold"] = h.unhealthy_threshold;
  return j;
}
json to_json(const StatsSpec& s) { return {{"http", endpoint_json(s.http)}}; }

json to_json(const Command& m) {
  return {{"type", "command"}, {"id", m.id}, {"command", m.type()}, {"member", m.member}, {"spec", to_json(m.spec)}};
}

SpecText spec_text(const CommandSpec& spec) { return {type_of(spec), to_json(spec).dump()}; }

// The keys in the order nlohmann's object (a std::map) writes them; the
// strings escaped by nlohmann itself.
std::string command_text(std::string_view id, std::string_view member, const SpecText& spec) {
  const std::string quoted_id = json(id).dump();
  const std::string quoted_member = json(member).dump();
  std::string out;
  out.reserve(64 + spec.type.size() + quoted_id.size() + quoted_member.size() + spec.json.size());
  out += R"({"command":")";
  out += spec.type;  // a fixed word: nothing to escape
  out += R"(","id":)";
  out += quoted_id;
  out += R"(,"member":)";
  out += quoted_member;
  out += R"(,"spec":)";
  out += spec.json;
  out += R"(,"type":"command"})";
  return out;
}

json to_json(const Ack& m) { return {{"type", "ack"}, {"id", m.id}}; }

json to_json(const CommandResult& m) {
  json j = {
      {"type", "result"}, {"id", m.id}, {"ok", m.ok}, {"message", m.message}, {"data", std::visit(DataJson{}, m.data)}};
  put_optional(j, "exitCode", m.exit_code);
  return j;
}

json to_json(const AgentEvent& m) {
  json j = {{"type", "event"}, {"event", m.type}, {"member", m.member}, {"message", m.message}};
  put_optional(j, "exitCode", m.exit_code);
  return j;
}

json to_json(const ErrorMessage& m) { return {{"type", "error"}, {"message", m.message}}; }

json to_json(const AgentMessage& m) { return std::visit(MessageJson{}, m); }

Result<Hello> parse_hello(const json& j) {
  Reader r(j, "hello");
  Hello m;
  m.protocol = static_cast<int>(r.integer("protocol", true, kIntMin, kIntMax).value_or(0));
  m.oldest_protocol = static_cast<int>(r.integer("oldestProtocol", false, kIntMin, kIntMax).value_or(m.protocol));
  if (r.ok() && m.oldest_protocol > m.protocol) {
    r.fail_at("oldestProtocol", "must not be above protocol (" + std::to_string(m.protocol) + ")");
  }
  m.host_id = r.str("hostId", false);
  m.join_token = r.str("joinToken", false);
  m.host_token = r.str("hostToken", false);
  m.hostname = r.str("hostname");
  m.labels = r.string_map("labels");
  m.slots = r.integer("slots", false, 1, kInt64Max).value_or(64);
  m.agent_version = r.str("agentVersion", false);
  r.array("members", [&](const json& item, const std::string& path) {
    Reader mr(item, path);
    HelloMember mem{mr.str("id"), mr.integer("revision", false, 0, kInt64Max).value_or(0), mr.str("state"),
                    mr.integer("pid", false, 1, kPidMax)};
    r.absorb(mr.done(0));
    m.members.push_back(std::move(mem));
  });
  if (const json* upgrade = r.raw("upgrade"); upgrade && !upgrade->is_null() && r.ok()) {
    Reader ur(*upgrade, r.path("upgrade"));
    AgentUpgradeReport report;
    report.command_id = ur.nonempty_str("commandId");
    report.version = ur.str("version");
    report.ok = ur.boolean("ok");
    report.message = ur.str("message", false);
    r.absorb(ur.done(0));
    m.upgrade = std::move(report);
  }
  if (r.ok() && m.join_token.empty() && m.host_token.empty()) {
    r.absorb(Error{ErrorCode::kInvalid, "a joinToken or a hostToken is required", "hello"});
  }
  return r.done(std::move(m));
}

Result<Welcome> parse_welcome(const json& j) {
  Reader r(j, "welcome");
  Welcome m;
  m.host_id = r.str("hostId");
  m.host_token = r.str("hostToken");
  m.heartbeat_interval_seconds = r.number("heartbeatIntervalSeconds", true).value_or(2);
  m.protocol = static_cast<int>(r.integer("protocol", true, kIntMin, kIntMax).value_or(0));
  if (r.ok() && m.heartbeat_interval_seconds <= 0) {
    r.fail_at("heartbeatIntervalSeconds", "must be positive");
  }
  return r.done(std::move(m));
}

Result<Heartbeat> parse_heartbeat(const json& j) {
  Reader r(j, "heartbeat");
  Heartbeat m;
  m.seq = r.unsigned_integer("seq", true).value_or(0);
  r.array("members", [&](const json& item, const std::string& path) {
    Reader mr(item, path);
    MemberReport report;
    report.id = mr.str("id");
    report.state = mr.str("state");
    report.healthy = mr.boolean("healthy");
    report.pid = mr.integer("pid", false, 1, kPidMax);
    report.ports = mr.port_map("ports").value_or(std::map<std::string, int>{});
    if (const json* stats = mr.raw("stats"); stats && !stats->is_null() && mr.ok()) {
      Reader sr(*stats, path + ".stats");
      // Whatever the member's stats endpoint said (agent/health.cc): its
      // meaning is the autoscaler's business, not the protocol's.
      report.stats = MemberStats{sr.number("load", true).value_or(0),
                                 sr.integer("requestsInFlight", false, std::numeric_limits<int64_t>::min(), kInt64Max)};
      mr.absorb(sr.done(0));
    }
    r.absorb(mr.done(0));
    m.members.push_back(std::move(report));
  });
  return r.done(std::move(m));
}

Result<CommandHeader> parse_command_header(const json& j) {
  Reader r(j, "command");
  CommandHeader h;
  h.id = r.nonempty_str("id");
  h.type = r.str("command");
  h.member = r.str("member");
  return r.done(std::move(h));
}

Result<Command> parse_command(const json& j) {
  auto header = parse_command_header(j);
  if (!header) {
    return std::unexpected(header.error());
  }
  const std::string& type = header->type;
  if (type != "start" && type != "stop" && type != "maintenance" && type != "update" && type != "logs" &&
      type != "upgradeAgent") {
    return fail(ErrorCode::kInvalid, "unknown command '" + type + "'", "command.command");
  }
  auto spec = read_spec(type, j.contains("spec") ? j["spec"] : json(nullptr), "command.spec");
  if (!spec) {
    return std::unexpected(spec.error());
  }
  return Command{std::move(header->id), std::move(header->member), std::move(*spec)};
}

Result<Ack> parse_ack(const json& j) {
  Reader r(j, "ack");
  Ack m{r.str("id")};
  return r.done(std::move(m));
}

Result<CommandResult> parse_result(const json& j) {
  Reader r(j, "result");
  CommandResult m;
  m.id = r.nonempty_str("id");
  m.ok = r.boolean("ok");
  m.exit_code = r.integer("exitCode", false, kIntMin, kIntMax);
  m.message = r.str("message", false);
  m.data = read_data(r);
  return r.done(std::move(m));
}

Result<AgentEvent> parse_event(const json& j) {
  Reader r(j, "event");
  AgentEvent m;
  m.type = r.str("event");
  m.member = r.str("member");
  m.exit_code = r.integer("exitCode", false, kIntMin, kIntMax);
  m.message = r.str("message", false);
  return r.done(std::move(m));
}

Result<ErrorMessage> parse_error_message(const json& j) {
  Reader r(j, "error");
  ErrorMessage m{r.str("message")};
  return r.done(std::move(m));
}

Result<HealthCheckSpec> parse_health_check(const json& j, const std::string& path) { return read_health(j, path); }

Result<Envelope> parse_envelope(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::kInvalid, "message is not a JSON object");
  }
  return envelope_of(std::move(j));
}

Result<Envelope> envelope_of(json message, const std::string& field) {
  if (!message.is_object()) {
    return fail(ErrorCode::kInvalid, "message is not a JSON object", field);
  }
  auto it = message.find("type");
  if (it == message.end() || !it->is_string()) {
    return fail(ErrorCode::kInvalid, "message has no type", field.empty() ? "type" : field + ".type");
  }
  std::string type = it->get<std::string>();
  return Envelope{std::move(type), std::move(message)};
}

Result<AgentMessage> decode_agent_message(const Envelope& message) {
  const auto& [type, j] = message;
  auto as_message = [](auto parsed) -> Result<AgentMessage> {
    if (!parsed) {
      return std::unexpected(parsed.error());
    }
    return AgentMessage(std::move(*parsed));
  };
  if (type == "heartbeat") {
    return as_message(parse_heartbeat(j));
  }
  if (type == "result") {
    return as_message(parse_result(j));
  }
  if (type == "event") {
    return as_message(parse_event(j));
  }
  if (type == "ack") {
    return as_message(parse_ack(j));
  }
  if (type == "hello") {
    return fail(ErrorCode::kInvalid, "hello only opens a connection", "type");
  }
  return fail(ErrorCode::kInvalid, "unknown message type '" + type + "'", "type");
}

}  // namespace tranche::protocol
