#include "protocol/frames.h"

#include "protocol/frame_scanner.h"

namespace tranche::protocol {

namespace {

constexpr std::string_view kBatchOpen = R"({"type":"batch","messages":[)";
constexpr std::string_view kBatchClose = "]}";

}  // namespace

std::string take_frame(std::deque<std::string>& queue, bool batch) {
  std::string first = std::move(queue.front());
  queue.pop_front();
  // How many of the next messages join it, and the frame's size with them.
  size_t size = kBatchOpen.size() + first.size() + kBatchClose.size();
  size_t joining = 0;
  while (batch && joining < queue.size() && size + 1 + queue[joining].size() <= kBatchBytes) {
    size += 1 + queue[joining].size();
    ++joining;
  }
  if (joining == 0) {
    return first;
  }
  std::string frame;
  frame.reserve(size);
  frame += kBatchOpen;
  frame += first;
  for (size_t i = 0; i < joining; ++i) {
    frame += ',';
    frame += queue.front();
    queue.pop_front();
  }
  frame += kBatchClose;
  return frame;
}

Frame parse_frame(std::string_view text) {
  Frame out;
  auto frame = parse_envelope(text);
  if (!frame || frame->first != "batch") {
    out.messages.push_back(std::move(frame));
    return out;
  }
  out.batch = true;
  auto messages = frame->second.find("messages");
  if (messages == frame->second.end() || !messages->is_array()) {
    out.messages.push_back(fail(ErrorCode::kInvalid, "a batch holds an array of messages", "messages"));
    return out;
  }
  out.messages.reserve(messages->size());
  for (size_t i = 0; i < messages->size(); ++i) {
    const std::string field = "messages[" + std::to_string(i) + "]";
    auto message = envelope_of(std::move((*messages)[i]), field);
    if (message && message->first == "batch") {
      out.messages.push_back(fail(ErrorCode::kInvalid, "a batch holds messages, not batches", field + ".type"));
    } else {
      out.messages.push_back(std::move(message));
    }
  }
  return out;
}

std::vector<Result<AgentMessage>> decode_agent_frame(std::string_view text) {
  if (auto scanned = scan_agent_frame(text)) {
    return {std::make_move_iterator(scanned->begin()), std::make_move_iterator(scanned->end())};
  }
  return decode_agent_frame_from_document(text);
}

std::vector<Result<AgentMessage>> decode_agent_frame_from_document(std::string_view text) {
  Frame frame = parse_frame(text);
  std::vector<Result<AgentMessage>> out;
  out.reserve(frame.messages.size());
  for (size_t i = 0; i < frame.messages.size(); ++i) {
    if (!frame.messages[i]) {
      out.push_back(std::unexpected(std::move(frame.messages[i].error())));
      continue;
    }
    auto decoded = decode_agent_message(*frame.messages[i]);
    if (!decoded && frame.batch) {
      Error& e = decoded.error();
      e.field = "messages[" + std::to_string(i) + "]" + (e.field.empty() ? "" : "." + e.field);
    }
    out.push_back(std::move(decoded));
  }
  return out;
}

}  // namespace tranche::protocol
