#include "command_reader.h"

#include <nlohmann/json.hpp>

namespace tranche::sim {

namespace {

constexpr std::string_view kBatchOpen = R"({"type":"batch","messages":[)";  // protocol/frames.cc
constexpr std::string_view kBatchClose = "]}";

// Consumes `prefix` from the front of `text`.
bool take(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) {
    return false;
  }
  text.remove_prefix(prefix.size());
  return true;
}

// A string's characters up to its closing quote, consumed with it; none
// when it has an escape (the document decoder reads those).
std::optional<std::string_view> take_plain_string(std::string_view& text) {
  const size_t end = text.find('"');
  if (end == std::string_view::npos || text.substr(0, end).find('\\') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view s = text.substr(0, end);
  text.remove_prefix(end + 1);
  return s;
}

}  // namespace

std::vector<std::string_view> frame_messages(std::string_view frame) {
  if (!frame.starts_with(kBatchOpen) || !frame.ends_with(kBatchClose)) {
    return {frame};
  }
  const std::string_view list = frame.substr(kBatchOpen.size(), frame.size() - kBatchOpen.size() - kBatchClose.size());
  std::vector<std::string_view> messages;
  int depth = 0;
  bool in_string = false;
  size_t start = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ',' && depth == 0) {
      messages.push_back(list.substr(start, i - start));
      start = i + 1;
    }
    if (depth < 0) {
      return {frame};
    }
  }
  if (depth != 0 || in_string || start >= list.size()) {
    return {frame};
  }
  messages.push_back(list.substr(start));
  return messages;
}

std::optional<std::string_view> read_ack(std::string_view message) {
  if (!take(message, R"({"id":")")) {
    return std::nullopt;
  }
  auto id = take_plain_string(message);
  return id && message == R"(,"type":"ack"})" ? id : std::nullopt;
}

// {"command":"TYPE","id":"ID","member":"MEMBER","spec":SPEC,"type":"command"}
std::optional<protocol::Command> CommandReader::read(std::string_view message) {
  const std::string_view whole = message;
  constexpr std::string_view kEnd = R"(,"type":"command"})";
  if (!take(message, R"({"command":")") || !message.ends_with(kEnd)) {
    return std::nullopt;
  }
  const auto type = take_plain_string(message);
  std::optional<std::string_view> id;
  std::optional<std::string_view> member;
  if (!type || !take(message, R"(,"id":")") || !(id = take_plain_string(message)) || !take(message, R"(,"member":")") ||
      !(member = take_plain_string(message)) || !take(message, R"(,"spec":)")) {
    return std::nullopt;
  }
  const std::string_view spec = message.substr(0, message.size() - kEnd.size());
  std::string key;
  key.reserve(type->size() + 1 + spec.size());
  key.append(*type).append(1, '\n').append(spec);
  auto known = specs_.find(key);
  if (known == specs_.end()) {
    const nlohmann::json document = nlohmann::json::parse(whole, nullptr, false);
    auto command = protocol::parse_command(document);
    if (document.is_discarded() || !command) {
      return std::nullopt;
    }
    if (specs_.size() >= kMaxSpecs) {
      specs_.clear();
    }
    known = specs_.emplace(std::move(key), command->spec).first;
  }
  return protocol::Command{std::string(*id), std::string(*member), known->second};
}

}  // namespace tranche::sim
