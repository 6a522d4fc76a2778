#pragma once
// Frames of the agent protocol. A WebSocket frame carries one message or,
// between peers that agreed protocol kBatchVersion (versions.h), a batch:
// {"type": "batch", "messages": [m1, m2, ...]}, each element the message
// as it would go alone, handled in order. A sender batches what queued up
// while its previous frame was being written, so a pass that gives an agent
// 100 commands costs one frame (and one frame of acks back), not 100; a
// quiet connection still sends each message as it comes.

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "protocol/messages.h"

namespace tranche::protocol {

// How large a batch frame grows; a message larger than this goes alone.
// Well within what either side reads (16 MiB).
inline constexpr size_t kBatchBytes = 256 * 1024;

// The next frame to write, taken from the front of `queue` (not empty): its
// first message alone or, with `batch`, that message and as many after it
// as fit in kBatchBytes, in one batch frame.
std::string take_frame(std::deque<std::string>& queue, bool batch);

// The messages of one frame in order, each read or the reason it cannot be:
// a frame that is not a JSON object with a type is one error; a batch gives
// one entry per element, and a bad element's error names it
// ("messages[2].type"). Never throws.
struct Frame {
  bool batch = false;
  std::vector<Result<Envelope>> messages;
};
Frame parse_frame(std::string_view text);

// Each message of an agent's frame decoded (decode_agent_message), in order;
// in a batch, an error's field starts with the message's place
// ("messages[2].result.data.pid").
//
// The frames agents send all the time are read by a scanner without a JSON
// document (frame_scanner.h); the rest, and every one with an error, by
// decode_agent_frame_from_document, the reference both must agree with.
std::vector<Result<AgentMessage>> decode_agent_frame(std::string_view text);
std::vector<Result<AgentMessage>> decode_agent_frame_from_document(std::string_view text);

}  // namespace tranche::protocol
