#include "lb/load_balancer.h"

#include <gtest/gtest.h>

#include "lb/haproxy_protocol.h"
#include "lb/haproxy_runtime.h"

namespace tranche::lb {
namespace {

TEST(ServerName, ReplacesSlashesOfAMemberId) {
  EXPECT_EQ(server_name_for("shop/web/3").value(), "shop_web_3");
  EXPECT_EQ(server_name_for("shop/backend/db/12").value(), "shop_backend_db_12");
  EXPECT_EQ(server_name_for("a-1/b-2/0").value(), "a-1_b-2_0");
}

TEST(ServerName, IsAValidHaproxyIdentifier) {
  const auto name = server_name_for("shop/backend/db/12");
  ASSERT_TRUE(name.has_value());
  EXPECT_TRUE(haproxy::check_identifier(*name, "server").has_value());
}

TEST(ServerName, RejectsWhatIsNoMemberId) {
  for (const char* bad :
       {"", "shop", "shop/3", "shop/web", "shop/web/x", "shop/web/3a", "shop/web/-3", "/shop/web/3", "shop/web/3/",
        "shop//web/3", "Shop/web/3", "shop/web_1/3", "shop/we b/3", "shop/web;x/3", "shop/web/3\n"}) {
    const auto name = server_name_for(bad);
    ASSERT_FALSE(name.has_value()) << "'" << bad << "' gave " << *name;
    EXPECT_EQ(name.error().code, ErrorCode::kInvalid);
    EXPECT_NE(name.error().message.find(bad), std::string::npos) << name.error().message;
  }
}

TEST(ServerName, DistinctMembersGetDistinctNames) {
  // Names of the model hold no '_', so '/' -> '_' loses nothing.
  EXPECT_NE(server_name_for("a/b-c/1").value(), server_name_for("a-b/c/1").value());
  EXPECT_NE(server_name_for("shop/web/1").value(), server_name_for("shop/web/11").value());
}

TEST(Addresses, PrintAsIpColonPort) { EXPECT_EQ(to_string(ServerAddress{"127.0.0.1", 8080}), "127.0.0.1:8080"); }

TEST(States, HaveHaproxysWordsForAdminStates) {
  EXPECT_EQ(to_string(AdminState::kReady), "ready");
  EXPECT_EQ(to_string(AdminState::kDrain), "drain");
  EXPECT_EQ(to_string(AdminState::kMaintenance), "maint");
  EXPECT_EQ(to_string(ServerState::kUp), "up");
  EXPECT_EQ(to_string(ServerState::kDown), "down");
  EXPECT_EQ(to_string(ServerState::kDrain), "drain");
  EXPECT_EQ(to_string(ServerState::kMaintenance), "maintenance");
}

TEST(HaproxyEndpoint, PathsAreUnixSockets) {
  for (const char* path : {"/run/haproxy/admin.sock", "./admin.sock", "run/admin.sock"}) {
    const auto endpoint = parse_haproxy_endpoint(path);
    ASSERT_TRUE(endpoint.has_value()) << path << ": " << endpoint.error().message;
    EXPECT_EQ(endpoint->unix_path, path);
    EXPECT_EQ(to_string(*endpoint), path);
  }
}

TEST(HaproxyEndpoint, Ipv4AndPortIsTcp) {
  const auto endpoint = parse_haproxy_endpoint("127.0.0.1:9999");
  ASSERT_TRUE(endpoint.has_value()) << endpoint.error().message;
  EXPECT_TRUE(endpoint->unix_path.empty());
  EXPECT_EQ(endpoint->tcp.ip, "127.0.0.1");
  EXPECT_EQ(endpoint->tcp.port, 9999);
  EXPECT_EQ(to_string(*endpoint), "127.0.0.1:9999");
}

TEST(HaproxyEndpoint, RejectsAnythingElse) {
  const std::string too_long = "/" + std::string(200, 'a');
  for (const std::string& bad :
       {std::string(), std::string("admin.sock"), std::string("127.0.0.1"), std::string("127.0.0.1:"),
        std::string(":9999"), std::string("127.0.0.1:0"), std::string("127.0.0.1:65536"), std::string("127.0.0.1:9x"),
        std::string("localhost:9999"), std::string("127.1:9999"), std::string("[::1]:9999"), too_long}) {
    const auto endpoint = parse_haproxy_endpoint(bad);
    ASSERT_FALSE(endpoint.has_value()) << bad;
    EXPECT_EQ(endpoint.error().code, ErrorCode::kInvalid);
  }
}

}  // namespace
}  // namespace tranche::lb
