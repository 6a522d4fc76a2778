// The scanner that reads agents' common frames without a JSON document
// (protocol/frame_scanner.h): it reads what agents write, and wherever it
// reads a frame, the document decoder (the reference) reads the same; on
// every other shape it gives up and leaves the frame to that decoder.

#include "protocol/frame_scanner.h"

#include <random>

#include <gtest/gtest.h>

#include "protocol/frames.h"

namespace tranche::protocol {
namespace {

using nlohmann::json;

// What the document decoder makes of a frame, when every message decodes.
std::optional<std::vector<AgentMessage>> reference(std::string_view text) {
  std::vector<AgentMessage> out;
  for (auto& message : decode_agent_frame_from_document(text)) {
    if (!message) {
      return std::nullopt;
    }
    out.push_back(std::move(*message));
  }
  return out;
}

// A decoded frame as text, errors included, to compare two decoders.
std::vector<std::string> described(const std::vector<Result<AgentMessage>>& frame) {
  std::vector<std::string> out;
  for (const auto& message : frame) {
    out.push_back(message ? to_json(*message).dump() : "error " + message.error().describe());
  }
  return out;
}

Heartbeat heartbeat() {
  Heartbeat hb;
  hb.seq = 7;
  hb.members.push_back({"web/api/1", "Running", true, MemberStats{0.25, 3}, 4242, {{"http", 8080}, {"admin", 9090}}});
  hb.members.push_back({"web/api/2", "Updating", false, std::nullopt, std::nullopt, {}});
  hb.members.push_back({"web/api/3", "Running", true, MemberStats{1e-3, std::nullopt}, 1, {}});
  hb.members.push_back({"web/api/4", "Exited", false, MemberStats{-12.5, -9}, 2147483647, {{"p", 65535}}});
  return hb;
}

std::vector<AgentMessage> agent_messages() {
  return {
      heartbeat(),
      Heartbeat{18446744073709551615u, {}},
      Ack{"start:web/api/1:3"},
      Ack{""},
      CommandResult{"update:web/api/1:4", true, std::nullopt, "", ProcessStarted{31337, {{{"http", 8081}}}}},
      CommandResult{"maintenance:web/api/2:1", true, std::nullopt, "", ProcessStarted{7, std::nullopt}},
      CommandResult{"stop:web/api/3:2", false, -2147483648, "the drain hook failed", std::monostate{}},
      CommandResult{"logs:web/api/1:9", true, 0, "", LogOutput{"started", "no warnings"}},
      AgentEvent{"exited", "web/api/4", 137, "killed"},
      AgentEvent{"resumed", "web/api/2", std::nullopt, ""},
  };
}

TEST(FrameScanner, ReadsEveryAgentMessageAsWrittenAloneAndInABatch) {
  const std::vector<AgentMessage> messages = agent_messages();
  std::deque<std::string> queue;
  for (const AgentMessage& m : messages) {
    const std::string text = to_json(m).dump();
    const auto scanned = scan_agent_frame(text);
    ASSERT_TRUE(scanned) << text;
    EXPECT_EQ(*scanned, std::vector<AgentMessage>{m}) << text;
    queue.push_back(text);
  }
  const std::string batch = take_frame(queue, true);
  ASSERT_TRUE(queue.empty());
  const auto scanned = scan_agent_frame(batch);
  ASSERT_TRUE(scanned);
  EXPECT_EQ(*scanned, messages);
  EXPECT_EQ(reference(batch), scanned);
}

TEST(FrameScanner, ReadsKeysInAnyOrderWithWhitespaceAndSkipsKeysItDoesNotKnow) {
  const std::string text = R"( { "type" : "batch",
    "messages" : [
      {"type": "heartbeat", "seq": 3, "future": [1, {"a": null}, -0.5e-3, true, "x"],
       "members": [{"healthy": false, "state": "Running", "id": "a/b/1", "stats": {"x": {}, "load": 2},
                    "pid": null, "ports": null}]},
      {"data": null, "id": "stop:a/b/1:1", "message": null, "exitCode": null, "ok": true, "type": "result"},
      {"type": "ack", "id": "x", "extra": false}
    ], "sender": "an agent from the future" }
  )";
  const auto scanned = scan_agent_frame(text);
  ASSERT_TRUE(scanned);
  EXPECT_EQ(reference(text), scanned);
  ASSERT_EQ(scanned->size(), 3u);
  const auto& hb = std::get<Heartbeat>((*scanned)[0]);
  ASSERT_EQ(hb.members.size(), 1u);
  EXPECT_EQ(hb.members[0].stats, (MemberStats{2, std::nullopt}));
  EXPECT_EQ(std::get<CommandResult>((*scanned)[1]).data, ResultData{});
}

TEST(FrameScanner, ReadsAnEmptyBatchAsNoMessages) {
  const auto scanned = scan_agent_frame(R"({"type":"batch","messages":[]})");
  ASSERT_TRUE(scanned);
  EXPECT_TRUE(scanned->empty());
}

// Each shape the scanner leaves to the document decoder: text outside its
// subset of JSON, and messages that do not decode (the decoder names their
// field).
TEST(FrameScanner, LeavesEveryOtherShapeToTheDocumentDecoder) {
  const char* const texts[] = {
      "",
      "[]",
      "\xEF\xBB\xBF{\"type\":\"ack\",\"id\":\"a\"}",         // a byte-order mark
      R"({"type":"ack","id":"a\"b"})",                       // an escape
      "{\"type\":\"ack\",\"id\":\"caf\xC3\xA9\"}",           // non-ASCII
      R"({"type":"ack","id":"a","id":"b"})",                 // a key twice
      R"({"type":"ack","id":"a"} x)",                        // text after the message
      R"({"type":"ack","id":"a")",                           // cut short
      R"({"type":"ack","id":"a","x":1e400})",                // beyond a double, where the parser refuses it
      R"({"type":"ack","id":"a","x":01})",                   // not JSON's grammar
      R"({"type":"ack","id":"a","x":tru})",                  //
      R"({"type":"ack"})",                                   // a required field missing
      R"({"type":"ack","id":null})",                         //
      R"({"type":"hello","hostname":"h"})",                  // not after the hello
      R"({"type":"gossip"})",                                // an unknown type
      R"({"type":"batch"})",                                 // a batch without messages
      R"({"type":"batch","messages":[{"type":"batch","messages":[]}]})",  // a batch in a batch
      R"({"type":"batch","messages":[{"type":"ack","id":"a"},{"type":"ack"}]})",  // one bad message
      R"({"type":"heartbeat"})",                             // no seq
      R"({"type":"heartbeat","seq":-0})",                    // a negative seq
      R"({"type":"heartbeat","seq":1.0})",                   //
      R"({"type":"heartbeat","seq":18446744073709551616})",  // beyond 64 bits
      R"({"type":"heartbeat","seq":1,"members":{}})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running"}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":1}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"pid":0}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"pid":2147483648}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"ports":{"a":0}}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"ports":{"a":1,"a":2}}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"stats":{}}]})",
      R"({"type":"heartbeat","seq":1,"members":[{"id":"m","state":"Running","healthy":true,"stats":{"load":"1"}}]})",
      R"({"type":"result","id":"","ok":true})",              // an empty id
      R"({"type":"result","id":"a","ok":true,"exitCode":2147483648})",
      R"({"type":"result","id":"a","ok":true,"data":7})",
      R"({"type":"result","id":"a","ok":true,"data":{"ports":{"http":80}}})",  // ports without a pid
      R"({"type":"result","id":"a","ok":true,"data":{"pid":null}})",
      R"({"type":"event","event":"exited"})",
  };
  for (const char* text : texts) {
    EXPECT_FALSE(scan_agent_frame(text)) << text;
    EXPECT_EQ(described(decode_agent_frame(text)), described(decode_agent_frame_from_document(text))) << text;
  }
}

TEST(FrameScanner, GivesUpOnValuesNestedBeyondItsDepth) {
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  const std::string text = R"({"type":"ack","id":"a","x":)" + deep + "}";
  EXPECT_FALSE(scan_agent_frame(text));
  EXPECT_EQ(described(decode_agent_frame(text)), described(decode_agent_frame_from_document(text)));
}

// Random edits of real frames: wherever the scanner reads one, the document
// decoder reads it without an error and to the same messages. The count of
// frames it read keeps the test honest (edits that leave a frame readable
// are common: a digit, a letter in a string).
TEST(FrameScanner, AgreesWithTheDocumentDecoderOnEditedFrames) {
  std::deque<std::string> queue;
  for (const AgentMessage& m : agent_messages()) {
    queue.push_back(to_json(m).dump());
  }
  const std::string batch = take_frame(queue, true);
  constexpr std::string_view kAlphabet = "{}[]:,\"\\ 0123456789-+.eEtrufalsn\x80xyz";
  std::mt19937 random(20261205);
  int read = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = batch;
    for (int edits = 1 + static_cast<int>(random() % 3); edits > 0; --edits) {
      const size_t at = random() % text.size();
      const char c = kAlphabet[random() % kAlphabet.size()];
      switch (random() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
      }
    }
    const auto scanned = scan_agent_frame(text);
    if (scanned) {
      ++read;
      ASSERT_EQ(reference(text), scanned) << text;
    }
  }
  EXPECT_GT(read, 1000);
}

}  // namespace
}  // namespace tranche::protocol
