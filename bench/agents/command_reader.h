#pragma once
// How a simulated host reads the controller's frames cheaply. The
// controller writes every command as protocol::command_text() does, and a
// command's spec is the same text for every member of a cluster at one
// revision; its acks are to_json(Ack).dump(). The reader takes a batch
// frame apart, reads commands and acks by position and decodes each
// distinct spec once (a shard's cache), where a JSON document per message
// was most of the simulator's CPU while 10,000 commands a batch arrived, on
// the cores the controller it measures runs on. A message it does not read
// exactly so goes to protocol::parse_frame, as all did before: what a
// command means is always what parse_command says.

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/messages.h"

namespace tranche::sim {

// A batch frame's messages, each as it would go alone; any other text, or a
// batch this cannot take apart, as one message.
std::vector<std::string_view> frame_messages(std::string_view frame);

// An ack's command id, when `message` is exactly {"id":"ID","type":"ack"}.
std::optional<std::string_view> read_ack(std::string_view message);

class CommandReader {
 public:
  // The command, when `message` is laid out as command_text() writes it and
  // its spec decodes (parse_command, once per distinct spec).
  std::optional<protocol::Command> read(std::string_view message);

 private:
  static constexpr size_t kMaxSpecs = 1024;                       // distinct specs kept; a bench has a few
  std::unordered_map<std::string, protocol::CommandSpec> specs_;  // type + '\n' + spec text -> decoded
};

}  // namespace tranche::sim
