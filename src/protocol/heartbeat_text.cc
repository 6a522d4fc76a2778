// heartbeat_text (messages.h): the heartbeat, which every agent sends every
// interval, written straight into its string. to_json(Heartbeat) stays the
// reference it must equal as JSON (messages_test.cc).

#include "protocol/messages.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>

namespace tranche::protocol {

namespace {

// JSON's escapes for what must not appear raw in a string; other bytes
// (UTF-8 included) are written as they are.
void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

template <class Number>
void append_number(std::string& out, Number n) {
  char digits[32];
  const auto end = std::to_chars(std::begin(digits), std::end(digits), n).ptr;
  out.append(digits, end);
}

// As nlohmann writes a number it cannot represent in JSON.
void append_double(std::string& out, double d) {
  if (std::isfinite(d)) {
    append_number(out, d);
  } else {
    out += "null";
  }
}

}  // namespace

// The keys in the order to_json's objects (std::maps) write them.
std::string heartbeat_text(const Heartbeat& m) {
  std::string out;
  out.reserve(64 + m.members.size() * 128);
  out += R"({"members":[)";
  for (size_t i = 0; i < m.members.size(); ++i) {
    const MemberReport& r = m.members[i];
    out += i == 0 ? R"({"healthy":)" : R"(,{"healthy":)";
    out += r.healthy ? "true" : "false";
    out += R"(,"id":)";
    append_string(out, r.id);
    if (r.pid) {
      out += R"(,"pid":)";
      append_number(out, *r.pid);
    }
    if (!r.ports.empty()) {
      out += R"(,"ports":{)";
      for (auto it = r.ports.begin(); it != r.ports.end(); ++it) {
        if (it != r.ports.begin()) {
          out += ',';
        }
        append_string(out, it->first);
        out += ':';
        append_number(out, it->second);
      }
      out += '}';
    }
    out += R"(,"state":)";
    append_string(out, r.state);
    if (r.stats) {
      out += R"(,"stats":{"load":)";
      append_double(out, r.stats->load);
      if (r.stats->requests_in_flight) {
        out += R"(,"requestsInFlight":)";
        append_number(out, *r.stats->requests_in_flight);
      }
      out += '}';
    }
    out += '}';
  }
  out += R"(],"seq":)";
  append_number(out, m.seq);
  out += R"(,"type":"heartbeat"})";
  return out;
}

}  // namespace tranche::protocol
