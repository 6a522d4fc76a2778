#include "api/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace tranche::api {
namespace {

// What a client does with the answer: zlib's inflate, told to expect gzip.
std::string gunzip(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char chunk[4096];
  int status = Z_OK;
  while (status == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    status = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  EXPECT_EQ(status, Z_STREAM_END) << "a whole gzip member";
  inflateEnd(&z);
  return out;
}

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
  EXPECT_EQ(gunzip(packed), json);
  EXPECT_EQ(gunzip(gzip("")), "");
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
}  // namespace tranche::api
