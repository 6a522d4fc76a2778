// Batch frames (protocol/frames.h): what a sender puts in one frame, and
// every shape of frame a receiver reads, malformed ones as errors that name
// the message, never an exception.

#include "protocol/frames.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche::protocol {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string ack(const std::string& id) { return to_json(Ack{id}).dump(); }

TEST(Frames, WithoutBatchesEachMessageIsAFrameOfItsOwn) {
  std::deque<std::string> queue{ack("a"), ack("b")};
  EXPECT_EQ(take_frame(queue, false), ack("a"));
  EXPECT_EQ(take_frame(queue, false), ack("b"));
  EXPECT_TRUE(queue.empty());
}

TEST(Frames, ALoneMessageGoesAsItselfEvenWhenBatchesAreAgreed) {
  std::deque<std::string> queue{ack("a")};
  EXPECT_EQ(take_frame(queue, true), ack("a"));
}

TEST(Frames, WhatIsQueuedGoesInOneBatchInOrder) {
  std::deque<std::string> queue{ack("a"), ack("b"), ack("c")};
  const std::string text = take_frame(queue, true);
  EXPECT_TRUE(queue.empty());
  const json frame = json::parse(text);
  EXPECT_EQ(frame["type"], "batch");
  EXPECT_EQ(frame["messages"], (json{json::parse(ack("a")), json::parse(ack("b")), json::parse(ack("c"))}));

  const Frame read = parse_frame(text);
  EXPECT_TRUE(read.batch);
  ASSERT_EQ(read.messages.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(read.messages[i]);
    EXPECT_EQ(read.messages[i]->first, "ack");
  }
  auto decoded = decode_agent_frame(text);
  ASSERT_EQ(decoded.size(), 3u);
  EXPECT_EQ(std::get<Ack>(*decoded[0]).id, "a");
  EXPECT_EQ(std::get<Ack>(*decoded[2]).id, "c");
}

TEST(Frames, ABatchStopsAtItsSizeAndTheRestGoesInTheNextFrame) {
  const std::string big(kBatchBytes / 3, 'x');
  std::deque<std::string> queue;
  for (int i = 0; i < 5; ++i) {
    queue.push_back(ack(big + std::to_string(i)));
  }
  const std::string first = take_frame(queue, true);
  EXPECT_LE(first.size(), kBatchBytes);
  EXPECT_EQ(parse_frame(first).messages.size(), 2u);
  EXPECT_EQ(queue.size(), 3u);
  // A message larger than a batch goes alone.
  std::deque<std::string> huge{ack(std::string(kBatchBytes, 'y')), ack("next")};
  EXPECT_FALSE(parse_frame(take_frame(huge, true)).batch);
  EXPECT_EQ(take_frame(huge, true), ack("next"));
}

TEST(Frames, ASingleMessageFrameReadsAsBefore) {
  const Frame read = parse_frame(ack("a"));
  EXPECT_FALSE(read.batch);
  ASSERT_EQ(read.messages.size(), 1u);
  ASSERT_TRUE(read.messages[0]);
  EXPECT_EQ(read.messages[0]->second["id"], "a");
}

TEST(Frames, EveryMalformedShapeIsAnErrorNamingItsPlace) {
  struct Case {
    const char* text;
    size_t messages;  // entries read
    size_t bad;       // the entry that is an error
    const char* field;
    const char* says;
  };
  const Case cases[] = {
      {"not json", 1, 0, "", "not a JSON object"},
      {"[1, 2]", 1, 0, "", "not a JSON object"},
      {R"({"messages": []})", 1, 0, "type", "no type"},
      {R"({"type": "batch"})", 1, 0, "messages", "an array of messages"},
      {R"({"type": "batch", "messages": {"type": "ack"}})", 1, 0, "messages", "an array of messages"},
      {R"({"type": "batch", "messages": [{"type": "ack", "id": "a"}, 7]})", 2, 1, "messages[1]", "not a JSON object"},
      {R"({"type": "batch", "messages": [{"id": "a"}]})", 1, 0, "messages[0].type", "no type"},
      {R"({"type": "batch", "messages": [{"type": 5}]})", 1, 0, "messages[0].type", "no type"},
      {R"({"type": "batch", "messages": [{"type": "batch", "messages": []}]})", 1, 0, "messages[0].type",
       "not batches"},
  };
  for (const auto& c : cases) {
    Frame read;
    EXPECT_NO_THROW(read = parse_frame(c.text)) << c.text;
    ASSERT_EQ(read.messages.size(), c.messages) << c.text;
    ASSERT_FALSE(read.messages[c.bad].has_value()) << c.text;
    EXPECT_EQ(read.messages[c.bad].error().field, c.field) << c.text;
    EXPECT_THAT(read.messages[c.bad].error().message, HasSubstr(c.says)) << c.text;
  }
  EXPECT_TRUE(parse_frame(R"({"type": "batch", "messages": []})").messages.empty()) << "an empty batch is nothing";
}

TEST(Frames, AnAgentsBatchDecodesEachMessageAndNamesTheBadOnes) {
  const std::string text = R"({"type": "batch", "messages": [
      {"type": "ack", "id": "start:a/b/1"},
      {"type": "result", "id": "x", "ok": true, "data": {"pid": "many"}},
      {"type": "hello"},
      {"type": "event", "event": "healthy", "member": "a/b/1"}]})";
  auto decoded = decode_agent_frame(text);
  ASSERT_EQ(decoded.size(), 4u);
  ASSERT_TRUE(decoded[0]);
  EXPECT_EQ(std::get<Ack>(*decoded[0]).id, "start:a/b/1");
  ASSERT_FALSE(decoded[1]);
  EXPECT_EQ(decoded[1].error().field, "messages[1].result.data.pid");
  ASSERT_FALSE(decoded[2]);
  EXPECT_EQ(decoded[2].error().field, "messages[2].type");
  EXPECT_THAT(decoded[2].error().message, HasSubstr("hello only opens a connection"));
  ASSERT_TRUE(decoded[3]) << decoded[3].error().describe();
  EXPECT_EQ(std::get<AgentEvent>(*decoded[3]).member, "a/b/1");
}

}  // namespace
}  // namespace tranche::protocol
