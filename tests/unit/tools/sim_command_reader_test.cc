// The agent simulator's frame reader (bench/agents/command_reader.h): where
// it reads a command or an ack by position, it reads what parse_command and
// parse_ack read from the document; where the text is laid out otherwise,
// it leaves the message to the document decoder.

#include "command_reader.h"

#include <gtest/gtest.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "protocol/frames.h"

namespace tranche::sim {
namespace {

protocol::UpdateSpec update_spec() {
  protocol::UpdateSpec spec;
  spec.target.app = "shop";
  spec.target.cluster = "web";
  spec.target.revision = 2;
  spec.target.version = "2.0.0";
  spec.target.command = {"sh", "-c", "echo \"a, b}\" && serve"};  // escapes, a comma and a brace inside a string
  spec.target.env = {{"MODE", "x"}};
  spec.target.ports = {"main"};
  spec.hook = {"./update"};
  return spec;
}

protocol::Command from_document(const std::string& text) {
  return protocol::parse_command(nlohmann::json::parse(text)).value();
}

TEST(SimCommandReader, ReadsACommandAsTheDocumentDecoderDoesOnceAndFromItsCachedSpecAfter) {
  const protocol::SpecText spec = protocol::spec_text(update_spec());
  CommandReader reader;
  for (const std::string member : {"shop/web/1", "shop/web/2"}) {
    const std::string text = protocol::command_text("update:" + member + ":2", member, spec);
    const auto read = reader.read(text);
    ASSERT_TRUE(read.has_value()) << text;
    EXPECT_EQ(*read, from_document(text));
  }
}

TEST(SimCommandReader, LeavesToTheDocumentDecoderWhatItDoesNotReadExactly) {
  const protocol::SpecText spec = protocol::spec_text(update_spec());
  CommandReader reader;
  EXPECT_FALSE(reader.read(protocol::command_text("update:a\"b:2", "shop/web/1", spec))) << "an escape in the id";
  EXPECT_FALSE(reader.read(protocol::command_text("update:shop/web/1:2", "shop/we\\b/1", spec)));
  EXPECT_FALSE(reader.read(R"({"type":"command","command":"update","id":"u","member":"m","spec":{}})"));
  EXPECT_FALSE(reader.read(R"({"command":"update","id":"u","member":"m","spec":{"bad":1},"type":"command"})"))
      << "a spec parse_command refuses";
  EXPECT_FALSE(reader.read(R"({"command":"update","id":"u","member":"m","spec":{)")) << "cut short";
}

TEST(SimCommandReader, ReadsAnAckOnlyInTheLayoutTheControllerWrites) {
  EXPECT_EQ(read_ack(protocol::to_json(protocol::Ack{"update:shop/web/1:2"}).dump()), "update:shop/web/1:2");
  EXPECT_FALSE(read_ack(R"({"type":"ack","id":"x"})"));
  EXPECT_FALSE(read_ack(R"({"id":"a\"b","type":"ack"})"));
  EXPECT_FALSE(read_ack(R"({"id":"x","type":"ack"} )"));
}

TEST(SimCommandReader, TakesABatchFrameApartIntoItsMessages) {
  const protocol::SpecText spec = protocol::spec_text(update_spec());
  const std::deque<std::string> sent = {protocol::command_text("update:shop/web/1:2", "shop/web/1", spec),
                                        protocol::to_json(protocol::Ack{"x"}).dump(),
                                        R"({"message":"a \"quoted\" ], {brace}","type":"error"})"};
  std::deque<std::string> queue = sent;
  const std::string frame = protocol::take_frame(queue, true);
  const auto messages = frame_messages(frame);
  ASSERT_EQ(messages.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(messages[i], sent[i]);
  }
  EXPECT_EQ(frame_messages(sent[0]), std::vector<std::string_view>{sent[0]}) << "a message alone";
  const std::string cut = frame.substr(0, frame.size() - 10) + "]}";
  EXPECT_EQ(frame_messages(cut), std::vector<std::string_view>{cut}) << "unbalanced: left whole to parse_frame";
}

}  // namespace
}  // namespace tranche::sim
