#include "lb/haproxy_protocol.h"

#include <algorithm>
#include <charconv>
#include <map>

namespace tranche::lb::haproxy {

namespace {

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

bool is_identifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == ':';
}

std::unexpected<Error> refused(std::string_view command, std::string_view answer) {
  const std::string words = brief(answer);
  return fail(ErrorCode::kUnavailable, "HAProxy answered '" + std::string(command) + "' with " +
                                           (words.empty() ? std::string("nothing") : "'" + words + "'"));
}

std::unexpected<Error> malformed(std::string_view command, std::string_view why) {
  return fail(ErrorCode::kUnavailable,
              "HAProxy's answer to '" + std::string(command) + "' is not a complete stat dump: " + std::string(why));
}

// "UP 1/3" -> true for prefix "UP": the word alone, or followed by a space.
bool is_word(std::string_view status, std::string_view word) {
  return status == word || (status.starts_with(word) && status.size() > word.size() && status[word.size()] == ' ');
}

}  // namespace

Status check_identifier(std::string_view name, std::string_view what) {
  if (!name.empty() && std::ranges::all_of(name, is_identifier_char)) {
    return {};
  }
  return fail(ErrorCode::kInvalid, "'" + std::string(name) + "' is not a valid HAProxy " + std::string(what) +
                                       " name (letters, digits, '-', '_', '.' and ':')");
}

Status check_answer(Reply reply, std::string_view command, std::string_view answer) {
  const std::string_view words = trim(answer);
  bool ok = false;
  switch (reply) {
    case Reply::kAddServer:
      ok = words.empty() || words == "New server registered.";
      break;
    case Reply::kDeleteServer:
      ok = words == "Server deleted.";
      break;
    case Reply::kSilent:
      ok = words.empty();
      break;
  }
  if (ok) {
    return {};
  }
  return refused(command, answer);
}

std::string brief(std::string_view answer) {
  const std::string_view words = trim(answer);
  const size_t newline = words.find('\n');
  if (newline == std::string_view::npos) {
    return std::string(words);
  }
  return std::string(trim(words.substr(0, newline))) + " (...)";
}

std::optional<ServerState> parse_server_status(std::string_view status) {
  if (status == "no check" || is_word(status, "UP")) {
    return ServerState::kUp;
  }
  if (is_word(status, "DOWN")) {
    return ServerState::kDown;
  }
  if (is_word(status, "DRAIN") || is_word(status, "NOLB")) {
    return ServerState::kDrain;
  }
  if (is_word(status, "MAINT")) {
    return ServerState::kMaintenance;
  }
  return std::nullopt;
}

std::optional<std::vector<std::string>> split_csv_line(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c != '"') {
        fields.back() += c;
      } else if (i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  if (quoted) {
    return std::nullopt;
  }
  return fields;
}

Result<std::vector<ServerInfo>> parse_show_stat(std::string_view command, std::string_view answer,
                                                std::string_view backend) {
  if (!answer.starts_with("# ")) {
    return refused(command, answer);
  }
  if (!answer.ends_with("\n\n")) {
    return malformed(command, "it does not end with an empty line (cut short?)");
  }
  // Lines between the header and the closing empty line.
  std::vector<std::string_view> lines;
  const std::string_view body = answer.substr(2, answer.size() - 3);
  for (size_t start = 0; start < body.size();) {
    const size_t end = body.find('\n', start);
    lines.push_back(body.substr(start, end - start));
    start = end + 1;
  }

  const auto header = split_csv_line(lines.front());
  if (!header) {
    return malformed(command, "unreadable header");
  }
  std::map<std::string, size_t, std::less<>> column;
  for (size_t i = 0; i < header->size(); ++i) {
    column.emplace((*header)[i], i);
  }
  const auto index_of = [&](std::string_view name) -> std::optional<size_t> {
    const auto it = column.find(name);
    return it == column.end() ? std::nullopt : std::optional(it->second);
  };
  const auto pxname = index_of("pxname");
  const auto svname = index_of("svname");
  const auto scur = index_of("scur");
  const auto status = index_of("status");
  const auto addr = index_of("addr");
  if (!pxname || !svname || !scur || !status || !addr) {
    return malformed(command, "the header lacks one of pxname, svname, scur, status, addr");
  }

  std::vector<ServerInfo> servers;
  bool backend_seen = false;
  for (size_t n = 1; n < lines.size(); ++n) {
    const auto fields = split_csv_line(lines[n]);
    if (!fields || fields->size() != header->size()) {
      return malformed(command, "line " + std::to_string(n + 1) + " does not have the header's " +
                                    std::to_string(header->size()) + " fields");
    }
    const auto& row = *fields;
    if (row[*pxname] != backend) {
      continue;
    }
    if (row[*svname] == "BACKEND") {
      backend_seen = true;
      continue;
    }
    if (row[*svname] == "FRONTEND") {
      continue;
    }
    ServerInfo server;
    server.name = row[*svname];
    server.status = row[*status];
    server.address = row[*addr];
    const auto state = parse_server_status(server.status);
    if (!state) {
      return malformed(command, "unknown status '" + server.status + "' of server " + server.name);
    }
    server.state = *state;
    const std::string& sessions = row[*scur];
    const auto [end, ec] = std::from_chars(sessions.data(), sessions.data() + sessions.size(), server.sessions);
    if (ec != std::errc() || end != sessions.data() + sessions.size() || server.sessions < 0) {
      return malformed(command, "scur '" + sessions + "' of server " + server.name + " is not a count");
    }
    servers.push_back(std::move(server));
  }
  if (!backend_seen) {
    return fail(ErrorCode::kUnavailable,
                "HAProxy has no backend '" + std::string(backend) + "' (answer to '" + std::string(command) + "')");
  }
  return servers;
}

}  // namespace tranche::lb::haproxy
