#include "common/time_format.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

using std::chrono::milliseconds;

TEST(Duration, ParsesUnitsAndSums) {
  EXPECT_EQ(parse_duration("5s").value(), milliseconds(5000));
  EXPECT_EQ(parse_duration("2h").value(), milliseconds(7'200'000));
  EXPECT_EQ(parse_duration("1h30m").value(), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("250ms").value(), milliseconds(250));
  EXPECT_EQ(parse_duration("1d").value(), milliseconds(86'400'000));
}

TEST(Duration, RejectsBadInput) {
  for (const char* bad : {"", "5", "s", "-5s", "0s", "5x", "1h30", "abc"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Duration, FormatReadsBack) {
  for (int64_t ms : {250, 5000, 5'400'000, 90'061'001}) {
    const auto text = format_duration(milliseconds(ms));
    EXPECT_EQ(parse_duration(text).value(), milliseconds(ms)) << text;
  }
  EXPECT_EQ(format_duration(milliseconds(5'400'000)), "1h30m");
}

TEST(Rfc3339, RoundTripsMilliseconds) {
  const TimePoint t = from_unix_millis(1'795'000'123'456);
  const std::string text = format_rfc3339(t);
  EXPECT_EQ(text, "2026-11-18T11:08:43.456Z");
  EXPECT_EQ(parse_rfc3339(text).value(), t);
  EXPECT_FALSE(parse_rfc3339("2026-11-18 09:22:03").has_value());
}

}  // namespace
}  // namespace tranche
