// The upgradeAgent command and the hello's upgrade report: they round-trip,
// take their defaults, and every malformed field is an error naming it.

#include <functional>

#include <gtest/gtest.h>

#include "protocol/messages.h"

namespace tranche::protocol {
namespace {

using nlohmann::json;

const std::string kDigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

json upgrade_command(const json& spec) {
  return {{"type", "command"}, {"id", "upgradeAgent:h1:0.2.0"}, {"command", "upgradeAgent"}, {"member", ""},
          {"spec", spec}};
}

json good_spec() {
  return {{"version", "0.2.0"}, {"sha256", kDigest}, {"size", 1234}, {"path", "/artifacts/sha256/" + kDigest}};
}

TEST(AgentUpgradeMessages, TheCommandRoundTrips) {
  const Command c{"upgradeAgent:h1:0.2.0", "", AgentUpgradeSpec{"0.2.0", kDigest, 1234, "/artifacts/sha256/x", 30}};
  EXPECT_EQ(c.type(), "upgradeAgent");
  const json wire = to_json(c);
  EXPECT_EQ(wire["command"], "upgradeAgent");
  EXPECT_EQ(wire["spec"]["fallbackSeconds"], 30);
  auto back = parse_command(json::parse(wire.dump()));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(*back, c);
}

TEST(AgentUpgradeMessages, FallbackSecondsDefaultsToSixty) {
  auto parsed = parse_command(upgrade_command(good_spec()));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().describe();
  const auto& spec = std::get<AgentUpgradeSpec>(parsed->spec);
  EXPECT_EQ(spec.fallback_seconds, 60);
  EXPECT_EQ(spec.size, 1234);
  EXPECT_EQ(spec.sha256, kDigest);
}

TEST(AgentUpgradeMessages, MalformedSpecsNameTheField) {
  struct Case {
    std::function<void(json&)> change;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](json& s) { s.erase("version"); }, "command.spec.version"},
      {[](json& s) { s["version"] = ""; }, "command.spec.version"},
      {[](json& s) { s.erase("sha256"); }, "command.spec.sha256"},
      {[](json& s) { s["sha256"] = "abc"; }, "command.spec.sha256"},
      {[](json& s) { s["sha256"] = std::string(64, 'A'); }, "command.spec.sha256"},
      {[](json& s) { s["sha256"] = std::string(64, 'g'); }, "command.spec.sha256"},
      {[](json& s) { s.erase("size"); }, "command.spec.size"},
      {[](json& s) { s["size"] = 0; }, "command.spec.size"},
      {[](json& s) { s["size"] = "12"; }, "command.spec.size"},
      {[](json& s) { s.erase("path"); }, "command.spec.path"},
      {[](json& s) { s["path"] = "artifacts/x"; }, "command.spec.path"},
      {[](json& s) { s["fallbackSeconds"] = 4; }, "command.spec.fallbackSeconds"},
      {[](json& s) { s["fallbackSeconds"] = 3601; }, "command.spec.fallbackSeconds"},
      {[](json& s) { s["fallbackSeconds"] = 1.5; }, "command.spec.fallbackSeconds"},
  };
  for (const auto& c : cases) {
    json spec = good_spec();
    c.change(spec);
    auto parsed = parse_command(upgrade_command(spec));
    ASSERT_FALSE(parsed.has_value()) << spec.dump() << " was accepted";
    EXPECT_EQ(parsed.error().field, c.field) << spec.dump() << ": " << parsed.error().describe();
  }
  auto bounds = good_spec();
  bounds["fallbackSeconds"] = 5;
  EXPECT_TRUE(parse_command(upgrade_command(bounds)).has_value());
  bounds["fallbackSeconds"] = 3600;
  EXPECT_TRUE(parse_command(upgrade_command(bounds)).has_value());
}

TEST(AgentUpgradeMessages, TheHelloCarriesAnUpgradeReport) {
  Hello h;
  h.host_id = "web-1-ab12";
  h.host_token = "ht_x";
  h.hostname = "web-1";
  h.agent_version = "0.1.0";
  h.upgrade = AgentUpgradeReport{"upgradeAgent:h1:0.2.0", "0.2.0", false,
                                 "tranche 0.2.0 exited with status 1 1.2 s after the switch; back on 0.1.0"};
  const json wire = to_json(h);
  EXPECT_EQ(wire["upgrade"]["commandId"], "upgradeAgent:h1:0.2.0");
  EXPECT_EQ(wire["upgrade"]["ok"], false);
  auto back = parse_hello(json::parse(wire.dump()));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(*back, h);

  h.upgrade.reset();
  EXPECT_FALSE(to_json(h).contains("upgrade"));
  auto without = parse_hello(to_json(h));
  ASSERT_TRUE(without.has_value());
  EXPECT_FALSE(without->upgrade.has_value());
}

TEST(AgentUpgradeMessages, AMalformedUpgradeReportNamesTheField) {
  json hello = {{"type", "hello"}, {"protocol", 1}, {"hostname", "x"}, {"hostToken", "ht"}};
  hello["upgrade"] = {{"version", "0.2.0"}, {"ok", true}};
  auto bad = parse_hello(hello);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field, "hello.upgrade.commandId");
  hello["upgrade"] = {{"commandId", "c"}, {"version", "0.2.0"}, {"ok", "yes"}};
  bad = parse_hello(hello);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field, "hello.upgrade.ok");
  hello["upgrade"] = "done";
  bad = parse_hello(hello);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field, "hello.upgrade");
}

}  // namespace
}  // namespace tranche::protocol
