// Which agents a controller talks to: the protocol negotiation and the skew
// policy between builds (protocol/versions.h), every case.

#include "protocol/versions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche::protocol {
namespace {

using ::testing::HasSubstr;

TEST(Versions, ThisBuildSpeaksOneToThree) {
  EXPECT_EQ(kVersion, 3);
  EXPECT_EQ(kOldestVersion, 1);
  EXPECT_EQ(kSpoken, (ProtocolRange{1, 3}));
  EXPECT_EQ(kBatchVersion, 3);
}

TEST(Versions, TheHighestCommonProtocolIsAgreed) {
  EXPECT_EQ(negotiate({1, 3}), 3) << "same range";
  EXPECT_EQ(negotiate({3, 3}), 3);
  EXPECT_EQ(negotiate({1, 2}), 2) << "an agent of the previous build";
  EXPECT_EQ(negotiate({1, 1}), 1) << "an older agent that speaks only protocol 1";
  EXPECT_EQ(negotiate({1, 4}), 3) << "a newer agent that still speaks ours";
  EXPECT_EQ(negotiate({2, 5}), 3);
  EXPECT_EQ(negotiate({1, 1}, {1, 1}), 1) << "a controller of protocol 1 and an agent of 1..2";
  EXPECT_EQ(negotiate({1, 2}, {1, 1}), 1);
}

TEST(Versions, NoCommonProtocolIsRefusedSayingWhichSideIsBehind) {
  auto newer = negotiate({4, 4});
  ASSERT_FALSE(newer.has_value());
  EXPECT_EQ(newer.error().field, "hello.protocol");
  EXPECT_THAT(newer.error().message, HasSubstr("agent protocol version 4 is not supported"));
  EXPECT_THAT(newer.error().message, HasSubstr("this controller speaks versions 1 to 3"));
  EXPECT_THAT(newer.error().message, HasSubstr("upgrade the controller first"));

  auto range = negotiate({4, 5});
  ASSERT_FALSE(range.has_value());
  EXPECT_THAT(range.error().message, HasSubstr("versions 4 to 5"));

  auto older = negotiate({0, 0});
  ASSERT_FALSE(older.has_value());
  EXPECT_THAT(older.error().message, HasSubstr("too old"));
  auto negative = negotiate({-1, -1});
  ASSERT_FALSE(negative.has_value());

  auto old_controller = negotiate({2, 2}, {1, 1});
  ASSERT_FALSE(old_controller.has_value());
  EXPECT_THAT(old_controller.error().message, HasSubstr("this controller speaks version 1;"));
}

TEST(Versions, BuildVersionsParse) {
  EXPECT_EQ(parse_build_version("0.1.0", "f"), (BuildVersion{0, 1, 0}));
  EXPECT_EQ(parse_build_version("0.1.0+g8eef80d-dirty", "f"), (BuildVersion{0, 1, 0}));
  EXPECT_EQ(parse_build_version("12.34.56-rc.1+build.5", "f"), (BuildVersion{12, 34, 56}));
  for (const char* bad : {"", "1", "1.2", "1.2.", "v1.2.3", "1.2.3.4", "1..3", "a.b.c", "1.2.3x", "-1.2.3"}) {
    auto parsed = parse_build_version(bad, "hello.agentVersion");
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error().field, "hello.agentVersion");
    EXPECT_THAT(parsed.error().message, HasSubstr("is not a version MAJOR.MINOR.PATCH"));
  }
}

TEST(Versions, AgentsMayBeUpToTwoMinorVersionsOlder) {
  EXPECT_TRUE(check_skew("0.4.0+g1", "0.4.0+g2").has_value()) << "same; build metadata ignored";
  EXPECT_TRUE(check_skew("0.4.3", "0.4.0").has_value()) << "patch releases are one minor version";
  EXPECT_TRUE(check_skew("0.3.0", "0.4.0").has_value()) << "one older";
  EXPECT_TRUE(check_skew("0.2.9", "0.4.0").has_value()) << "two older";
  EXPECT_TRUE(check_skew("0.4.0-rc.1", "0.4.0").has_value()) << "a pre-release of the same minor";

  auto three = check_skew("0.1.0", "0.4.0");
  ASSERT_FALSE(three.has_value());
  EXPECT_EQ(three.error().field, "hello.agentVersion");
  EXPECT_THAT(three.error().message, HasSubstr("agent 0.1.0, controller 0.4.0"));
  EXPECT_THAT(three.error().message, HasSubstr("3 minor versions older; agents may be at most 2 older"));

  auto major = check_skew("1.9.0", "2.0.0");
  ASSERT_FALSE(major.has_value());
  EXPECT_THAT(major.error().message, HasSubstr("older major version"));
}

TEST(Versions, AgentsAreNeverNewer) {
  auto minor = check_skew("0.2.0+g1", "0.1.0+g1");
  ASSERT_FALSE(minor.has_value());
  EXPECT_EQ(minor.error().field, "hello.agentVersion");
  EXPECT_THAT(minor.error().message, HasSubstr("the agent is newer than its controller"));
  EXPECT_THAT(minor.error().message, HasSubstr("upgrade the controller first"));
  EXPECT_FALSE(check_skew("1.0.0", "0.9.0").has_value()) << "a newer major";
}

TEST(Versions, AnAgentThatDoesNotSayItsVersionIsJudgedByProtocolOnly) {
  EXPECT_TRUE(check_skew("", "0.4.0").has_value());
  auto garbage = check_skew("latest", "0.4.0");
  ASSERT_FALSE(garbage.has_value()) << "one that says something else is refused";
  EXPECT_EQ(garbage.error().field, "hello.agentVersion");
}

}  // namespace
}  // namespace tranche::protocol
