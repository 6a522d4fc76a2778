#include "protocol/messages.h"

#include <gtest/gtest.h>

namespace tranche::protocol {
namespace {

using nlohmann::json;

TEST(Messages, HelloRoundTrips) {
  Hello h;
  h.host_id = "web-1-ab12";
  h.host_token = "ht_x";
  h.hostname = "web-1";
  h.labels = {{"zone", "a"}};
  h.slots = 8;
  h.members = {{"shop/web/1", 3, "Running", 42}};
  auto back = parse_hello(to_json(h));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(back->host_id, h.host_id);
  EXPECT_EQ(back->labels, h.labels);
  ASSERT_EQ(back->members.size(), 1u);
  EXPECT_EQ(back->members[0].pid, 42);
  EXPECT_EQ(back->members[0].revision, 3);
}

TEST(Messages, HelloNeedsAToken) {
  auto bad = parse_hello(json{{"type", "hello"}, {"protocol", 1}, {"hostname", "x"}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("joinToken or a hostToken"), std::string::npos);
}

TEST(Messages, ErrorsNameTheField) {
  auto hb = parse_heartbeat(
      json::parse(R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":"yes"}]})"));
  ASSERT_FALSE(hb.has_value());
  EXPECT_EQ(hb.error().field, "heartbeat.members[0].healthy");
  auto cmd = parse_command(json{{"type", "command"}, {"id", 5}});
  ASSERT_FALSE(cmd.has_value());
  EXPECT_EQ(cmd.error().field, "command.id");
  EXPECT_FALSE(parse_envelope("[1,2]").has_value());
  EXPECT_FALSE(parse_envelope("{\"type\": 3}").has_value());
  EXPECT_FALSE(parse_envelope("not json").has_value());
}

TEST(Messages, HeartbeatStatsAreOptional) {
  Heartbeat hb{
      7, {{"m1", "Running", true, MemberStats{0.5, 3}, 10, {{"http", 8080}}}, {"m2", "Exited", false, {}, {}, {}}}};
  auto back = parse_heartbeat(to_json(hb));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(back->seq, 7u);
  ASSERT_TRUE(back->members[0].stats.has_value());
  EXPECT_EQ(back->members[0].stats->requests_in_flight, 3);
  EXPECT_EQ(back->members[0].ports.at("http"), 8080);
  EXPECT_FALSE(back->members[1].stats.has_value());
}

TEST(Messages, ResultAndEventRoundTrip) {
  auto r = parse_result(to_json(CommandResult{"start:a/b/1", true, 0, "started", json{{"pid", 9}}}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->data["pid"], 9);
  EXPECT_EQ(r->exit_code, 0);
  auto e = parse_event(to_json(AgentEvent{"exited", "a/b/1", 137, "killed"}));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "exited");
  EXPECT_EQ(e->exit_code, 137);
}

}  // namespace
}  // namespace tranche::protocol
