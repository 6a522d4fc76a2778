#include "protocol/messages.h"

namespace tranche::protocol {

namespace {

using nlohmann::json;

// Reads fields of one object, remembering the first problem so that a parse
// function reads straight through and reports once.
class Reader {
 public:
  Reader(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {
    if (!j_.is_object()) {
      fail_at("", "expected an object");
    }
  }

  std::string str(const char* key, bool required = true) {
    const json* v = find(key, required);
    if (v && !v->is_string()) {
      fail_at(key, "expected a string");
      return {};
    }
    return v ? v->get<std::string>() : std::string();
  }
  template <class T>
  std::optional<T> number(const char* key, bool required = false) {
    const json* v = find(key, required);
    if (!v || v->is_null()) {
      return std::nullopt;
    }
    if (!v->is_number()) {
      fail_at(key, "expected a number");
      return std::nullopt;
    }
    return v->get<T>();
  }
  bool boolean(const char* key) {
    const json* v = find(key, true);
    if (v && !v->is_boolean()) {
      fail_at(key, "expected true or false");
      return false;
    }
    return v && v->get<bool>();
  }
  std::map<std::string, std::string> string_map(const char* key) {
    std::map<std::string, std::string> out;
    const json* v = find(key, false);
    if (!v || v->is_null()) {
      return out;
    }
    if (!v->is_object()) {
      fail_at(key, "expected an object");
      return out;
    }
    for (const auto& [k, value] : v->items()) {
      if (!value.is_string()) {
        fail_at(std::string(key) + "." + k, "expected a string");
        return out;
      }
      out[k] = value.get<std::string>();
    }
    return out;
  }
  std::map<std::string, int> port_map(const char* key) {
    std::map<std::string, int> out;
    const json* v = find(key, false);
    if (v && v->is_object()) {
      for (const auto& [k, value] : v->items()) {
        if (!value.is_number_integer()) {
          fail_at(std::string(key) + "." + k, "expected a port number");
          return out;
        }
        out[k] = value.get<int>();
      }
    } else if (v && !v->is_null()) {
      fail_at(key, "expected an object");
    }
    return out;
  }
  // Calls `each(item_json, path)` for every element of an optional array.
  template <class F>
  void array(const char* key, F each) {
    const json* v = find(key, false);
    if (!v || v->is_null()) {
      return;
    }
    if (!v->is_array()) {
      fail_at(key, "expected an array");
      return;
    }
    for (size_t i = 0; i < v->size() && !error_; ++i) {
      each((*v)[i], prefix_ + "." + key + "[" + std::to_string(i) + "]");
    }
  }
  const json* raw(const char* key) { return find(key, false); }

  void absorb(const Error& e) {
    if (!error_) {
      error_ = e;
    }
  }
  template <class T>
  Result<T> done(T value) {
    if (error_) {
      return std::unexpected(*error_);
    }
    return value;
  }

 private:
  const json* find(const char* key, bool required) {
    if (error_ || !j_.is_object()) {
      return nullptr;
    }
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) {
        fail_at(key, "is required");
      }
      return nullptr;
    }
    return &*it;
  }
  void fail_at(const std::string& key, const std::string& message) {
    if (!error_) {
      error_ = Error{ErrorCode::kInvalid, message, key.empty() ? prefix_ : prefix_ + "." + key};
    }
  }

  const json& j_;
  std::string prefix_;
  std::optional<Error> error_;
};

template <class T>
void put_optional(json& j, const char* key, const std::optional<T>& v) {
  if (v) {
    j[key] = *v;
  }
}

}  // namespace

json to_json(const Hello& m) {
  json members = json::array();
  for (const auto& mem : m.members) {
    json x = {{"id", mem.id}, {"revision", mem.revision}, {"state", mem.state}};
    put_optional(x, "pid", mem.pid);
    members.push_back(std::move(x));
  }
  json j = {{"type", "hello"},    {"protocol", m.protocol}, {"hostname", m.hostname},
            {"labels", m.labels}, {"slots", m.slots},       {"members", members}};
  if (!m.host_id.empty()) j["hostId"] = m.host_id;
  if (!m.join_token.empty()) j["joinToken"] = m.join_token;
  if (!m.host_token.empty()) j["hostToken"] = m.host_token;
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
  return {{"type", "heartbeat"}, {"seq", m.seq}, {"members", members}};
}

json to_json(const Command& m) {
  return {{"type", "command"}, {"id", m.id}, {"command", m.type}, {"member", m.member}, {"spec", m.spec}};
}

json to_json(const Ack& m) { return {{"type", "ack"}, {"id", m.id}}; }

json to_json(const CommandResult& m) {
  json j = {{"type", "result"}, {"id", m.id}, {"ok", m.ok}, {"message", m.message}, {"data", m.data}};
  put_optional(j, "exitCode", m.exit_code);
  return j;
}

json to_json(const AgentEvent& m) {
  json j = {{"type", "event"}, {"event", m.type}, {"member", m.member}, {"message", m.message}};
  put_optional(j, "exitCode", m.exit_code);
  return j;
}

json to_json(const ErrorMessage& m) { return {{"type", "error"}, {"message", m.message}}; }

Result<Hello> parse_hello(const json& j) {
  Reader r(j, "hello");
  Hello m;
  m.protocol = r.number<int>("protocol", true).value_or(0);
  m.host_id = r.str("hostId", false);
  m.join_token = r.str("joinToken", false);
  m.host_token = r.str("hostToken", false);
  m.hostname = r.str("hostname");
  m.labels = r.string_map("labels");
  m.slots = r.number<int64_t>("slots").value_or(64);
  r.array("members", [&](const json& item, const std::string& path) {
    Reader mr(item, path);
    HelloMember mem{mr.str("id"), mr.number<int64_t>("revision").value_or(0), mr.str("state"),
                    mr.number<int64_t>("pid")};
    if (auto e = mr.done(0); !e) {
      r.absorb(e.error());
    }
    m.members.push_back(std::move(mem));
  });
  if (m.join_token.empty() && m.host_token.empty()) {
    r.absorb(Error{ErrorCode::kInvalid, "a joinToken or a hostToken is required", "hello"});
  }
  if (m.slots < 1) {
    r.absorb(Error{ErrorCode::kInvalid, "must be at least 1", "hello.slots"});
  }
  return r.done(std::move(m));
}

Result<Welcome> parse_welcome(const json& j) {
  Reader r(j, "welcome");
  Welcome m;
  m.host_id = r.str("hostId");
  m.host_token = r.str("hostToken");
  m.heartbeat_interval_seconds = r.number<double>("heartbeatIntervalSeconds", true).value_or(2);
  m.protocol = r.number<int>("protocol", true).value_or(0);
  if (m.heartbeat_interval_seconds <= 0) {
    r.absorb(Error{ErrorCode::kInvalid, "must be positive", "welcome.heartbeatIntervalSeconds"});
  }
  return r.done(std::move(m));
}

Result<Heartbeat> parse_heartbeat(const json& j) {
  Reader r(j, "heartbeat");
  Heartbeat m;
  m.seq = r.number<uint64_t>("seq", true).value_or(0);
  r.array("members", [&](const json& item, const std::string& path) {
    Reader mr(item, path);
    MemberReport report;
    report.id = mr.str("id");
    report.state = mr.str("state");
    report.healthy = mr.boolean("healthy");
    report.pid = mr.number<int64_t>("pid");
    report.ports = mr.port_map("ports");
    if (const json* stats = mr.raw("stats"); stats && !stats->is_null()) {
      Reader sr(*stats, path + ".stats");
      report.stats = MemberStats{sr.number<double>("load", true).value_or(0), sr.number<int64_t>("requestsInFlight")};
      if (auto e = sr.done(0); !e) {
        r.absorb(e.error());
      }
    }
    if (auto e = mr.done(0); !e) {
      r.absorb(e.error());
    }
    m.members.push_back(std::move(report));
  });
  return r.done(std::move(m));
}

Result<Command> parse_command(const json& j) {
  Reader r(j, "command");
  Command m;
  m.id = r.str("id");
  m.type = r.str("command");
  m.member = r.str("member");
  if (const json* spec = r.raw("spec"); spec && spec->is_object()) {
    m.spec = *spec;
  }
  return r.done(std::move(m));
}

Result<Ack> parse_ack(const json& j) {
  Reader r(j, "ack");
  Ack m{r.str("id")};
  return r.done(std::move(m));
}

Result<CommandResult> parse_result(const json& j) {
  Reader r(j, "result");
  CommandResult m;
  m.id = r.str("id");
  m.ok = r.boolean("ok");
  m.exit_code = r.number<int>("exitCode");
  m.message = r.str("message", false);
  if (const json* data = r.raw("data")) {
    m.data = *data;
  }
  return r.done(std::move(m));
}

Result<AgentEvent> parse_event(const json& j) {
  Reader r(j, "event");
  AgentEvent m;
  m.type = r.str("event");
  m.member = r.str("member");
  m.exit_code = r.number<int>("exitCode");
  m.message = r.str("message", false);
  return r.done(std::move(m));
}

Result<std::pair<std::string, json>> parse_envelope(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::kInvalid, "message is not a JSON object");
  }
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) {
    return fail(ErrorCode::kInvalid, "message has no type", "type");
  }
  std::string type = it->get<std::string>();
  return std::pair{std::move(type), std::move(j)};
}

}  // namespace tranche::protocol
