// The migration routes (docs/migration.md) without sockets: who may call
// them, the perform body's fields named in its refusals, the 409 that every
// other mutating route gets while a lock holds, and the lock in the
// application's views.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/controller_api.h"

namespace tranche::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kManifest = R"({"application": "shop", "clusters": [{"name": "web",
  "artifact": {"version": "1", "command": ["web"]}}]})";

class MigrationRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    access_ = std::make_unique<AccessControl>(*store_, clock_);
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{});
    api_ = std::make_unique<ControllerApi>(*apps_, *access_, *fleet_, *store_, metrics_);
    admin_ = access_->create_token(Role::kAdmin, std::nullopt, "ops", {"test", "test"}).value().secret_token;
    ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  }

  Response call(const std::string& method, const std::string& path, const std::string& bearer,
                const std::string& body = {}) {
    Request r;
    r.method = method;
    r.path = path;
    r.authorization = "Bearer " + bearer;
    r.content_type = "application/json";
    r.body = body;
    return api_->handle(r).response;
  }

  json error_of(const Response& r) { return json::parse(r.body)["error"]; }

  ManualClock clock_;
  Metrics metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<ControllerApi> api_;
  std::string admin_;
};

TEST_F(MigrationRoutesTest, PerformNamesTheFieldItRefuses) {
  ASSERT_EQ(call("POST", "/api/v1/applications/shop/migration/begin", admin_).status, 200);
  const std::string perform = "/api/v1/applications/shop/migration/perform";
  struct Case {
    std::string body;
    std::string field;
  };
  for (const Case& c : {Case{"{}", "toRevision"}, Case{R"({"toRevision": "1"})", "toRevision"},
                        Case{R"({"toRevision": 0})", "toRevision"}, Case{R"({"toRevision": 1, "member": 3})", "member"},
                        Case{R"({"toRevision": 1, "yes": true})", "yes"},
                        Case{R"({"toRevision": 99999999999999999999})", "toRevision"}}) {
    const Response r = call("POST", perform, admin_, c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    EXPECT_EQ(error_of(r)["field"], c.field) << c.body << ": " << r.body;
  }
  const Response unknown = call("POST", perform, admin_, R"({"toRevision": 4})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(error_of(unknown)["field"], "toRevision");
  const Response same = call("POST", perform, admin_, R"({"toRevision": 1})");
  ASSERT_EQ(same.status, 200) << same.body;
  EXPECT_EQ(json::parse(same.body)["perform"]["finished"], true) << "nothing to move";
}

TEST_F(MigrationRoutesTest, ALockedApplicationRefusesMutatingRoutesAndShowsTheLock) {
  const Response begun = call("POST", "/api/v1/applications/shop/migration/begin", admin_);
  ASSERT_EQ(begun.status, 200) << begun.body;
  EXPECT_EQ(json::parse(begun.body)["lockedBy"], "ops");
  const Response again = call("POST", "/api/v1/applications/shop/migration/begin", admin_);
  EXPECT_EQ(again.status, 409);

  const Response set = call("PUT", "/api/v1/applications/shop/operational-state", admin_, R"({"autohealing": "off"})");
  EXPECT_EQ(set.status, 409);
  EXPECT_THAT(error_of(set)["message"].get<std::string>(), HasSubstr("the migration lock of shop, taken by ops at"));
  EXPECT_EQ(call("DELETE", "/api/v1/applications/shop", admin_).status, 409);
  EXPECT_EQ(call("POST", "/api/v1/applications/shop/rollout/pause", admin_).status, 409);
  EXPECT_EQ(call("GET", "/api/v1/applications/shop", admin_).status, 200) << "reads are never refused";
  EXPECT_EQ(json::parse(call("GET", "/api/v1/applications", admin_).body)["items"][0]["migration"]["lockedBy"], "ops");
  EXPECT_EQ(json::parse(call("GET", "/api/v1/migration", admin_).body)["items"].size(), 1u);

  EXPECT_EQ(call("POST", "/api/v1/applications/shop/migration/complete", admin_).status, 200);
  EXPECT_EQ(call("POST", "/api/v1/applications/shop/migration/cancel", admin_).status, 409) << "not locked any more";
  EXPECT_EQ(call("PUT", "/api/v1/applications/shop/operational-state", admin_, R"({"autohealing": "off"})").status,
            200);
}

TEST_F(MigrationRoutesTest, ThePlatformLockNeedsAnUnscopedAdminAndHoldsNewApplications) {
  const std::string operator_token =
      access_->create_token(Role::kOperator, std::nullopt, "op", {"test", "test"}).value().secret_token;
  const std::string scoped = access_->create_token(Role::kAdmin, "shop", "shop-admin", {"test", "test"}).value().secret_token;
  EXPECT_EQ(call("POST", "/api/v1/migration/begin", operator_token).status, 403);
  EXPECT_EQ(call("POST", "/api/v1/migration/begin", scoped).status, 403);
  ASSERT_EQ(call("POST", "/api/v1/migration/begin", admin_).status, 200);
  const std::string blog = R"({"application": "blog", "clusters": [{"name": "web",
    "artifact": {"version": "1", "command": ["web"]}}]})";
  const Response refused = call("POST", "/api/v1/applications", admin_, blog);
  EXPECT_EQ(refused.status, 409);
  EXPECT_THAT(error_of(refused)["message"].get<std::string>(), HasSubstr("the migration lock of the platform"));
  EXPECT_EQ(call("POST", "/api/v1/applications/shop/migration/begin", operator_token).status, 200)
      << "an application's own lock under the platform's";
  ASSERT_EQ(call("POST", "/api/v1/migration/complete", admin_).status, 200);
  EXPECT_EQ(call("POST", "/api/v1/applications", admin_, blog).status, 201);
}

}  // namespace
}  // namespace tranche::api
