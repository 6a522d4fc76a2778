#pragma once
// The fast path of decode_agent_frame (frames.h). Agents send heartbeats,
// acks, results and events all the time, most of them in batches: at
// 100,000 members building a JSON document for each frame before reading it
// was a fifth of the controller's CPU during a rollout. The scanner reads
// those messages in one pass over the text into their typed form, with no
// document in between.
//
// It reads a strict subset of JSON and only messages that decode without an
// error: strings without escapes or non-ASCII bytes, each known key at
// most once, numbers that fit their field. On anything else it gives up,
// and decode_agent_frame reads the frame with the document decoder, which
// takes every JSON text and names the field of an error. So the scanner
// never decides what a frame means: where it reads one, the document
// decoder reads the same (tests/unit/protocol/frame_scanner_test.cc and the
// protocol fuzzer keep that true).

#include <optional>
#include <string_view>
#include <vector>

#include "protocol/messages.h"

namespace tranche::protocol {

// The messages of one frame in order, or nullopt: not a frame it reads.
std::optional<std::vector<AgentMessage>> scan_agent_frame(std::string_view text);

}  // namespace tranche::protocol
