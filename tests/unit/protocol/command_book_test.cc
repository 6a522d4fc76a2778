// The agent's half of idempotent commands: duplicates and out-of-order
// deliveries are harmless.

#include "agent/command_book.h"

#include <gtest/gtest.h>

namespace tranche::agent {
namespace {

protocol::CommandHeader start(const std::string& member) { return {"start:" + member, "start", member}; }

TEST(CommandBook, FirstDeliveryIsNewThenRunningThenDone) {
  std::vector<JournalCommand> journal;
  CommandBook book(journal);
  EXPECT_EQ(book.admit(start("a/w/1")), CommandBook::Admission::kNew);
  EXPECT_EQ(book.admit(start("a/w/1")), CommandBook::Admission::kRunning) << "redelivered while it runs";
  ASSERT_TRUE(book.complete({"start:a/w/1", true, std::nullopt, "started", protocol::ProcessStarted{5, std::nullopt}})
                  .has_value());
  EXPECT_EQ(book.admit(start("a/w/1")), CommandBook::Admission::kDone);
  EXPECT_EQ(book.find("start:a/w/1")->result->at("data")["pid"], 5) << "the same outcome is sent again";
  EXPECT_EQ(journal.size(), 1u) << "journaled once";
}

TEST(CommandBook, ALateSecondOutcomeIsIgnored) {
  std::vector<JournalCommand> journal;
  CommandBook book(journal);
  book.admit(start("a/w/1"));
  ASSERT_TRUE(book.complete({"start:a/w/1", true, std::nullopt, "started", {}}).has_value());
  EXPECT_FALSE(book.complete({"start:a/w/1", false, std::nullopt, "again", {}}).has_value());
  EXPECT_EQ(book.find("start:a/w/1")->result->at("ok"), true);
  EXPECT_FALSE(book.complete({"unknown", true, std::nullopt, "", {}}).has_value());
}

TEST(CommandBook, ResultsReplayUntilAcknowledgedInAnyOrder) {
  std::vector<JournalCommand> journal;
  CommandBook book(journal);
  for (const char* m : {"a/w/1", "a/w/2", "a/w/3"}) {
    book.admit(start(m));
    book.complete({std::string("start:") + m, true, std::nullopt, "started", {}});
  }
  EXPECT_EQ(book.unacknowledged().size(), 3u);
  EXPECT_TRUE(book.acknowledge("start:a/w/3"));  // out of order
  EXPECT_FALSE(book.acknowledge("start:a/w/3")) << "a duplicate ack changes nothing";
  EXPECT_FALSE(book.acknowledge("start:nope"));
  const auto left = book.unacknowledged();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0]["id"], "start:a/w/1");
  EXPECT_EQ(left[1]["id"], "start:a/w/2");
}

TEST(CommandBook, AnAckBeforeTheResultIsHarmless) {
  std::vector<JournalCommand> journal;
  CommandBook book(journal);
  book.admit(start("a/w/1"));
  EXPECT_FALSE(book.acknowledge("start:a/w/1"));
  ASSERT_TRUE(book.complete({"start:a/w/1", true, std::nullopt, "started", {}}).has_value());
  EXPECT_EQ(book.unacknowledged().size(), 1u) << "still owed to the controller";
}

}  // namespace
}  // namespace tranche::agent
