#include "protocol/frame_scanner.h"

#include <charconv>
#include <cstring>
#include <limits>
#include <system_error>

#include "protocol/json_reader.h"

namespace tranche::protocol {

namespace {

// Deeper values (only ever under keys the protocol does not have) go to the
// document decoder.
constexpr int kMaxDepth = 32;

// A number as the document parser holds it: a negative integer is signed,
// a non-negative one unsigned, anything else (a fraction, an exponent, an
// integer beyond 64 bits) a double.
struct Number {
  enum class Kind { kSigned, kUnsigned, kDouble };
  Kind kind = Kind::kDouble;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;

  // The value of an integer field in [min, max]; nullopt for anything the
  // document decoder would refuse.
  std::optional<int64_t> integer(int64_t min, int64_t max) const {
    if (kind == Kind::kSigned && i >= min && i <= max) {
      return i;
    }
    if (kind == Kind::kUnsigned && u <= static_cast<uint64_t>(max) && (min <= 0 || u >= static_cast<uint64_t>(min))) {
      return static_cast<int64_t>(u);
    }
    return std::nullopt;
  }
  double as_double() const {
    switch (kind) {
      case Kind::kSigned:
        return static_cast<double>(i);
      case Kind::kUnsigned:
        return static_cast<double>(u);
      case Kind::kDouble:
        return d;
    }
    return d;
  }
};

// A pull reader over the text. Every function returns false (or nullopt)
// where the text leaves the subset it reads; the scan then gives up.
class Cursor {
 public:
  explicit Cursor(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  // Whether `c` comes next, after whitespace; consumed if so.
  bool eat(char c) {
    skip_space();
    if (p_ != end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool at_end() {
    skip_space();
    return p_ == end_;
  }
  // `null` next: consumed.
  bool null() { return word("null"); }

  std::optional<std::string_view> string() {
    if (!eat('"')) {
      return std::nullopt;
    }
    const char* start = p_;
    for (; p_ != end_; ++p_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        return std::string_view(start, p_++ - start);
      }
      // Escapes and UTF-8 the document parser decodes and checks.
      if (c == '\\' || c < 0x20 || c >= 0x80) {
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  std::optional<bool> boolean() {
    if (word("true")) {
      return true;
    }
    if (word("false")) {
      return false;
    }
    return std::nullopt;
  }

  // A number by JSON's grammar; nullopt also for one the document parser
  // refuses (beyond a double's range).
  std::optional<Number> number() {
    skip_space();
    const char* start = p_;
    const bool negative = p_ != end_ && *p_ == '-';
    if (negative) {
      ++p_;
    }
    if (p_ != end_ && *p_ == '0') {
      ++p_;
    } else if (!digits()) {
      return std::nullopt;
    }
    bool integral = true;
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      integral = false;
      if (!digits()) {
        return std::nullopt;
      }
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      integral = false;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) {
        ++p_;
      }
      if (!digits()) {
        return std::nullopt;
      }
    }
    Number n;
    if (integral && negative && std::from_chars(start, p_, n.i).ec == std::errc()) {
      n.kind = Number::Kind::kSigned;
      return n;
    }
    if (integral && !negative && std::from_chars(start, p_, n.u).ec == std::errc()) {
      n.kind = Number::Kind::kUnsigned;
      return n;
    }
    const auto [end, ec] = std::from_chars(start, p_, n.d);
    if (ec != std::errc() || end != p_) {
      return std::nullopt;
    }
    return n;
  }

  // Calls key_value(key) at each key of an object, the cursor at its value,
  // which key_value reads; false from it gives up.
  template <class F>
  bool object(F key_value) {
    if (!eat('{')) {
      return false;
    }
    if (eat('}')) {
      return true;
    }
    do {
      const auto key = string();
      if (!key || !eat(':') || !key_value(*key)) {
        return false;
      }
    } while (eat(','));
    return eat('}');
  }
  // Calls element() at each element of an array.
  template <class F>
  bool array(F element) {
    if (!eat('[')) {
      return false;
    }
    if (eat(']')) {
      return true;
    }
    do {
      if (!element()) {
        return false;
      }
    } while (eat(','));
    return eat(']');
  }

  // Any value, read by the grammar and dropped: the value of a key the
  // protocol does not have.
  bool skip_value(int depth = 0) {
    skip_space();
    if (p_ == end_ || depth > kMaxDepth) {
      return false;
    }
    switch (*p_) {
      case '{':
        return object([&](std::string_view) { return skip_value(depth + 1); });
      case '[':
        return array([&] { return skip_value(depth + 1); });
      case '"':
        return string().has_value();
      case 't':
      case 'f':
        return boolean().has_value();
      case 'n':
        return null();
      default:
        return number().has_value();
    }
  }

 private:
  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) {
      ++p_;
    }
  }
  bool digits() {
    const char* start = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      ++p_;
    }
    return p_ != start;
  }
  bool word(std::string_view w) {
    skip_space();
    if (static_cast<size_t>(end_ - p_) >= w.size() && std::memcmp(p_, w.data(), w.size()) == 0) {
      p_ += w.size();
      return true;
    }
    return false;
  }

  const char* p_;
  const char* end_;
};

// Marks `bit` in `seen`; false when it already was (a key given twice: the
// document parser keeps the last, the scanner leaves that to it).
bool first_time(unsigned& seen, unsigned bit) {
  if ((seen & bit) != 0) {
    return false;
  }
  seen |= bit;
  return true;
}

bool read_string(Cursor& c, std::string& out) {
  const auto s = c.string();
  if (s) {
    out.assign(*s);
  }
  return s.has_value();
}

// An optional string: null reads as empty.
bool read_optional_string(Cursor& c, std::string& out) { return c.null() || read_string(c, out); }

bool read_integer(Cursor& c, int64_t min, int64_t max, std::optional<int64_t>& out) {
  const auto n = c.number();
  out = n ? n->integer(min, max) : std::nullopt;
  return out.has_value();
}

// An optional integer: null reads as absent.
bool read_optional_integer(Cursor& c, int64_t min, int64_t max, std::optional<int64_t>& out) {
  return c.null() || read_integer(c, min, max, out);
}

// {"http": 8080, ...}: names to 1..65535.
bool read_ports(Cursor& c, std::map<std::string, int>& out) {
  return c.object([&](std::string_view name) {
    std::optional<int64_t> port;
    return read_integer(c, 1, kPortMax, port) && out.emplace(name, static_cast<int>(*port)).second;
  });
}

bool read_stats(Cursor& c, MemberStats& out) {
  enum : unsigned { kLoad = 1, kRequests = 2 };
  unsigned seen = 0;
  const bool read = c.object([&](std::string_view key) {
    if (key == "load") {
      const auto n = c.number();
      out.load = n ? n->as_double() : 0;
      return first_time(seen, kLoad) && n.has_value();
    }
    if (key == "requestsInFlight") {
      return first_time(seen, kRequests) &&
             read_optional_integer(c, std::numeric_limits<int64_t>::min(), kInt64Max, out.requests_in_flight);
    }
    return c.skip_value();
  });
  return read && (seen & kLoad) != 0;
}

// One member of a heartbeat (parse_heartbeat in messages.cc).
bool read_member_report(Cursor& c, MemberReport& out) {
  enum : unsigned { kId = 1, kState = 2, kHealthy = 4, kPid = 8, kPorts = 16, kStats = 32 };
  unsigned seen = 0;
  const bool read = c.object([&](std::string_view key) {
    if (key == "id") {
      return first_time(seen, kId) && read_string(c, out.id);
    }
    if (key == "state") {
      return first_time(seen, kState) && read_string(c, out.state);
    }
    if (key == "healthy") {
      const auto healthy = c.boolean();
      out.healthy = healthy.value_or(false);
      return first_time(seen, kHealthy) && healthy.has_value();
    }
    if (key == "pid") {
      return first_time(seen, kPid) && read_optional_integer(c, 1, kPidMax, out.pid);
    }
    if (key == "ports") {
      return first_time(seen, kPorts) && (c.null() || read_ports(c, out.ports));
    }
    if (key == "stats") {
      return first_time(seen, kStats) && (c.null() || read_stats(c, out.stats.emplace()));
    }
    return c.skip_value();
  });
  constexpr unsigned kRequired = kId | kState | kHealthy;
  return read && (seen & kRequired) == kRequired;
}

// A result's "data" object (read_data in messages.cc): a process when it
// has a pid or ports, output when it has stdout or stderr, else nothing.
bool read_result_data(Cursor& c, ResultData& out) {
  enum : unsigned { kPid = 1, kPorts = 2, kStdout = 4, kStderr = 8 };
  unsigned seen = 0;
  std::optional<int64_t> pid;
  std::optional<std::map<std::string, int>> ports;
  LogOutput output;
  const bool read = c.object([&](std::string_view key) {
    if (key == "pid") {
      return first_time(seen, kPid) && read_integer(c, 1, kPidMax, pid);
    }
    if (key == "ports") {
      return first_time(seen, kPorts) && (c.null() || read_ports(c, ports.emplace()));
    }
    if (key == "stdout") {
      return first_time(seen, kStdout) && read_optional_string(c, output.out);
    }
    if (key == "stderr") {
      return first_time(seen, kStderr) && read_optional_string(c, output.err);
    }
    return c.skip_value();
  });
  if (!read) {
    return false;
  }
  if ((seen & (kPid | kPorts)) != 0) {
    if (!pid) {
      return false;  // the pid is required with ports
    }
    out = ProcessStarted{*pid, std::move(ports)};
  } else if ((seen & (kStdout | kStderr)) != 0) {
    out = std::move(output);
  }
  return true;
}

// Every key any agent message has; the type, read wherever it comes in the
// object (a sender's JSON library may sort the keys), says which apply.
struct MessageFields {
  enum : unsigned {
    kType = 1,
    kId = 2,
    kOk = 4,
    kExitCode = 8,
    kMessage = 16,
    kData = 32,
    kEvent = 64,
    kMember = 128,
    kSeq = 256,
    kMembers = 512,
    kMessages = 1024,
  };
  unsigned seen = 0;
  std::string type;
  std::string id;
  bool ok = false;
  std::optional<int64_t> exit_code;  // within int
  std::string message;
  ResultData data;
  std::string event;
  std::string member;
  uint64_t seq = 0;
  std::vector<MemberReport> members;
  std::vector<AgentMessage> batch;  // "messages"
};

std::optional<int> exit_code(const MessageFields& f) {
  return f.exit_code ? std::optional<int>(static_cast<int>(*f.exit_code)) : std::nullopt;
}

bool read_message(Cursor& c, bool top_level, std::vector<AgentMessage>& out);

bool read_field(Cursor& c, std::string_view key, bool top_level, MessageFields& f) {
  using F = MessageFields;
  const auto once = [&](unsigned bit) { return first_time(f.seen, bit); };
  if (key == "type") {
    return once(F::kType) && read_string(c, f.type);
  }
  if (key == "id") {
    return once(F::kId) && read_string(c, f.id);
  }
  if (key == "ok") {
    const auto ok = c.boolean();
    f.ok = ok.value_or(false);
    return once(F::kOk) && ok.has_value();
  }
  if (key == "exitCode") {
    return once(F::kExitCode) && read_optional_integer(c, kIntMin, kIntMax, f.exit_code);
  }
  if (key == "message") {
    return once(F::kMessage) && read_optional_string(c, f.message);
  }
  if (key == "data") {
    return once(F::kData) && (c.null() || read_result_data(c, f.data));
  }
  if (key == "event") {
    return once(F::kEvent) && read_string(c, f.event);
  }
  if (key == "member") {
    return once(F::kMember) && read_string(c, f.member);
  }
  if (key == "seq") {
    const auto n = c.number();
    f.seq = n ? n->u : 0;
    return once(F::kSeq) && n && n->kind == Number::Kind::kUnsigned;
  }
  if (key == "members") {
    return once(F::kMembers) &&
           (c.null() || c.array([&] { return read_member_report(c, f.members.emplace_back()); }));
  }
  if (key == "messages" && top_level) {
    return once(F::kMessages) && c.array([&] { return read_message(c, false, f.batch); });
  }
  return c.skip_value();
}

// One message (or, at the top, a batch of them) appended to `out`.
bool read_message(Cursor& c, bool top_level, std::vector<AgentMessage>& out) {
  using F = MessageFields;
  MessageFields f;
  if (!c.object([&](std::string_view key) { return read_field(c, key, top_level, f); })) {
    return false;
  }
  const auto has = [&](unsigned bits) { return (f.seen & bits) == bits; };
  if (f.type == "heartbeat" && has(F::kSeq)) {
    out.emplace_back(Heartbeat{f.seq, std::move(f.members)});
  } else if (f.type == "ack" && has(F::kId)) {
    out.emplace_back(Ack{std::move(f.id)});
  } else if (f.type == "result" && has(F::kId | F::kOk) && !f.id.empty()) {
    out.emplace_back(CommandResult{std::move(f.id), f.ok, exit_code(f), std::move(f.message), std::move(f.data)});
  } else if (f.type == "event" && has(F::kEvent | F::kMember)) {
    out.emplace_back(AgentEvent{std::move(f.event), std::move(f.member), exit_code(f), std::move(f.message)});
  } else if (f.type == "batch" && top_level && has(F::kMessages)) {
    out.insert(out.end(), std::make_move_iterator(f.batch.begin()), std::make_move_iterator(f.batch.end()));
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::optional<std::vector<AgentMessage>> scan_agent_frame(std::string_view text) {
  Cursor c(text);
  std::vector<AgentMessage> out;
  if (!read_message(c, true, out) || !c.at_end()) {
    return std::nullopt;
  }
  return out;
}

}  // namespace tranche::protocol
