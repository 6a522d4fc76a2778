#include "api/log_format.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace tranche::api {
namespace {

TEST(LogFormat, IsTextOrJson) {
  EXPECT_EQ(parse_log_format("text").value(), LogFormat::kText);
  EXPECT_EQ(parse_log_format("json").value(), LogFormat::kJson);
  for (const char* bad : {"", "JSON", "xml", "json "}) {
    auto parsed = parse_log_format(bad);
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error().field, "logFormat");
    EXPECT_NE(parsed.error().message.find("expected text or json"), std::string::npos) << parsed.error().message;
  }
}

TEST(LogFormat, AJsonLineIsOneObjectWithTimeLevelAndMessage) {
  const auto time = parse_rfc3339("2026-12-05T04:38:36.436Z").value();
  const std::string line = json_log_line(time, "warning", "member shop/web/1 \"quoted\"\n\tand a \x01 control");
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line, whatever the message holds";
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["time"], "2026-12-05T04:38:36.436Z");
  EXPECT_EQ(parsed["level"], "warning");
  EXPECT_EQ(parsed["message"], "member shop/web/1 \"quoted\"\n\tand a \x01 control");
}

TEST(LogFormat, BytesThatAreNotUtf8AreReplacedSoTheLineStillParses) {
  const std::string line = json_log_line(std::chrono::system_clock::time_point{}, "info", "agent said \xff\xfe!");
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["message"], "agent said \xEF\xBF\xBD\xEF\xBF\xBD!") << "U+FFFD for each bad byte";
}

}  // namespace
}  // namespace tranche::api
