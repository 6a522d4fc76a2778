#include "common/server_url.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

TEST(ServerUrl, SchemeHostAndPort) {
  auto plain = parse_server_url("http://127.0.0.1:7468");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, "7468");
  EXPECT_EQ(plain->authority(), "127.0.0.1:7468");

  auto tls = parse_server_url("https://controller.example/");
  ASSERT_TRUE(tls);
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->host, "controller.example");
  EXPECT_EQ(tls->port, "443");
}

TEST(ServerUrl, IPv6BracketedOrAsControllersWroteIt) {
  auto bracketed = parse_server_url("https://[::1]:7468");
  ASSERT_TRUE(bracketed);
  EXPECT_EQ(bracketed->host, "::1");
  EXPECT_EQ(bracketed->port, "7468");
  EXPECT_EQ(bracketed->authority(), "[::1]:7468");
  auto bare = parse_server_url("http://::1:7468");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->host, "::1");
  EXPECT_EQ(bare->port, "7468");
  EXPECT_EQ(format_server_url(true, "::1", 7468), "https://[::1]:7468");
  EXPECT_EQ(format_server_url(false, "127.0.0.1", 80), "http://127.0.0.1:80");
}

TEST(ServerUrl, WhatIsNotAServerUrl) {
  for (const char* bad : {"ws://127.0.0.1:1", "127.0.0.1:7468", "https://", "http://[::1", "http://h:1/api"}) {
    auto parsed = parse_server_url(bad);
    EXPECT_FALSE(parsed) << bad;
    if (!parsed) {
      EXPECT_EQ(parsed.error().field, "server");
    }
  }
}

TEST(ServerUrl, IpAddressesAreToldFromNames) {
  EXPECT_TRUE(is_ip_address("127.0.0.1"));
  EXPECT_TRUE(is_ip_address("::1"));
  EXPECT_FALSE(is_ip_address("localhost"));
  EXPECT_FALSE(is_ip_address("[::1]"));
}

}  // namespace
}  // namespace tranche
