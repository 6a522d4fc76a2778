#include "common/gzip.h"

#include <gtest/gtest.h>

#include <string>

namespace tranche {
namespace {

TEST(Gzip, AClientInflatesWhatWasCompressed) {
  std::string json = "[";
  for (int i = 0; i < 2000; ++i) {
    json += R"({"path": "c)" + std::to_string(i) + R"(", "members": {"count": 100, "available": 100}},)";
  }
  json += "{}]";
  const std::string packed = gzip(json);
  ASSERT_GE(packed.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(packed[0]), 0x1f) << "gzip's magic, not zlib's header";
  EXPECT_EQ(static_cast<unsigned char>(packed[1]), 0x8b);
  EXPECT_LT(packed.size() * 5, json.size()) << "repetitive JSON shrinks by far more than 5x";
  EXPECT_EQ(gunzip(packed, json.size()), json);
  EXPECT_EQ(gunzip(gzip(""), 0), "");
}

TEST(Gzip, WhatIsNotOneWholeBoundedMemberIsAnError) {
  const std::string data(100000, 'a');
  const std::string packed = gzip(data);
  EXPECT_EQ(gunzip(packed, data.size() - 1).error().message, "gzip data inflates to more than 99999 bytes")
      << "a bound against a bomb";
  EXPECT_EQ(gunzip(packed.substr(0, packed.size() / 2), data.size()).error().message, "truncated gzip data");
  EXPECT_EQ(gunzip(packed + "x", data.size()).error().message, "data after the gzip member");
  std::string corrupt = packed;
  corrupt[0] = 'x';
  EXPECT_EQ(gunzip(corrupt, data.size()).error().code, ErrorCode::kInvalid);
  EXPECT_EQ(gunzip("", 10).error().message, "truncated gzip data");
}

TEST(Gzip, AcceptEncodingAdmitsGzipUnlessItsWeightIsZero) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("gzip, deflate, br"));  // browsers, curl --compressed
  EXPECT_TRUE(accepts_gzip("deflate,GZIP"));
  EXPECT_TRUE(accepts_gzip("br;q=1.0, gzip;q=0.8"));
  EXPECT_TRUE(accepts_gzip("x-gzip"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_TRUE(accepts_gzip(" gzip ; q=0.001"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip("deflate, br"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip; q=0.000"));
  EXPECT_FALSE(accepts_gzip("*, gzip;q=0")) << "named explicitly, the coding's own weight wins";
  EXPECT_FALSE(accepts_gzip("*;q=0"));
  EXPECT_FALSE(accepts_gzip("gzipx, xgzip")) << "whole tokens only";
}

}  // namespace
}  // namespace tranche
