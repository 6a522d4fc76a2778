// The artifact store (engine/artifacts.h) and its routes with the agent
// upgrade's (api/controller_api_upgrades.cc), without sockets: an upload
// written piece by piece, a digest that does not match, a name given twice,
// names that are not names, the limit, the sweep at start, who may
// download, and the upgrade request's fields named in its refusals.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "api/controller_api.h"
#include "common/secrets.h"
#include "engine/artifacts.h"

namespace tranche::api {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class UpgradeRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tranche-artifacts-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    access_ = std::make_unique<AccessControl>(*store_, clock_);
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{});
    open_artifacts(1 << 20);
    admin_ = token(Role::kAdmin, std::nullopt);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void open_artifacts(int64_t max_bytes) {
    artifacts_ = std::make_unique<ArtifactStore>(*store_, clock_, dir_ / "artifacts", max_bytes);
    ASSERT_TRUE(artifacts_->open());
    api_ = std::make_unique<ControllerApi>(*apps_, *access_, *fleet_, *store_, metrics_);
    api_->serve_upgrades(*artifacts_);
  }

  std::string token(Role role, std::optional<std::string> app) {
    return access_->create_token(role, std::move(app), "", {"test", "test"}).value().secret_token;
  }

  Response call(const std::string& method, const std::string& target, const std::string& bearer,
                const std::string& body = {}) {
    Request r;
    r.method = method;
    const size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) {
      r.query = parse_query(target.substr(q + 1));
    }
    r.authorization = "Bearer " + bearer;
    r.body = body;
    return api_->handle(r).response;
  }

  static json body(const Response& r) { return json::parse(r.body, nullptr, false); }

  std::vector<fs::path> files(const std::string& sub) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_ / "artifacts" / sub)) {
      out.push_back(e.path());
    }
    return out;
  }

  fs::path dir_;
  ManualClock clock_;
  Metrics metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<ControllerApi> api_;
  std::string admin_;
};

TEST_F(UpgradeRoutesTest, AnUploadWrittenInPiecesIsKeptUnderItsDigestAndServed) {
  const std::string content(200'000, 'z');
  auto upload = artifacts_->begin_upload("tranche-agent", "0.2.0", sha256_hex(content), content.size(),
                                         Caller{"ops", "POST"});
  ASSERT_TRUE(upload);
  for (size_t i = 0; i < content.size(); i += 4096) {
    ASSERT_TRUE((*upload)->write(std::string_view(content).substr(i, 4096)));
  }
  EXPECT_EQ(files("tmp").size(), 1u) << "written to a temp file as it arrives";
  auto pushed = (*upload)->finish();
  ASSERT_TRUE(pushed) << pushed.error().describe();
  EXPECT_TRUE(pushed->created);
  EXPECT_EQ(pushed->record.size, 200'000);
  EXPECT_TRUE(files("tmp").empty());
  EXPECT_EQ(read(dir_ / "artifacts" / "sha256" / sha256_hex(content)), content);

  const Response file = call("GET", "/api/v1/artifacts/sha256/" + sha256_hex(content), admin_);
  EXPECT_EQ(file.status, 200);
  EXPECT_EQ(file.file_path, (dir_ / "artifacts" / "sha256" / sha256_hex(content)).string());
  const json listed = body(call("GET", "/api/v1/artifacts", admin_));
  ASSERT_EQ(listed["items"].size(), 1u);
  EXPECT_EQ(listed["items"][0]["sha256"], sha256_hex(content));
  EXPECT_EQ(body(call("GET", "/api/v1/artifacts/tranche-agent/0.2.0", admin_))["size"], 200'000);
}

TEST_F(UpgradeRoutesTest, ADigestMismatchKeepsNothing) {
  const Response r = call("POST", "/api/v1/artifacts/hello/1.0.0?sha256=" + std::string(64, '0'), admin_, "abc");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body(r)["error"]["field"], "sha256");
  EXPECT_THAT(body(r)["error"]["message"].get<std::string>(), HasSubstr("nothing kept"));
  EXPECT_TRUE(files("tmp").empty());
  EXPECT_TRUE(files("sha256").empty());
  EXPECT_EQ(call("GET", "/api/v1/artifacts/hello/1.0.0", admin_).status, 404);
}

TEST_F(UpgradeRoutesTest, AVersionNamesOneContentForGood) {
  EXPECT_EQ(call("POST", "/api/v1/artifacts/hello/1.0.0", admin_, "one").status, 201);
  const Response same = call("POST", "/api/v1/artifacts/hello/1.0.0", admin_, "one");
  EXPECT_EQ(same.status, 200);
  EXPECT_EQ(body(same)["created"], false);
  const Response other = call("POST", "/api/v1/artifacts/hello/1.0.0", admin_, "two");
  EXPECT_EQ(other.status, 409);
  EXPECT_THAT(body(other)["error"]["message"].get<std::string>(), HasSubstr("names one content for good"));
  // Refused before the body when the announced digest already differs.
  auto early = artifacts_->begin_upload("hello", "1.0.0", sha256_hex("two"), 3, Caller{"ops", "POST"});
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::kConflict);
  EXPECT_EQ(files("sha256").size(), 1u);
  EXPECT_TRUE(files("tmp").empty());
}

TEST_F(UpgradeRoutesTest, NamesAndVersionsThatAreNotAreRefusedNamingTheField) {
  for (const std::string target :
       {"/api/v1/artifacts/..%2Fetc/1.0", "/api/v1/artifacts/sha256/1.0", "/api/v1/artifacts/Hello/1.0"}) {
    const Response r = call("POST", target, admin_, "x");
    EXPECT_EQ(r.status / 100, 4) << target;
    EXPECT_EQ(body(r)["error"]["field"], "name") << target << " " << r.body;
  }
  for (const std::string target : {"/api/v1/artifacts/hello/..%2F..%2Fx", "/api/v1/artifacts/hello/.hidden"}) {
    const Response r = call("POST", target, admin_, "x");
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_EQ(body(r)["error"]["field"], "version") << target << " " << r.body;
  }
  EXPECT_TRUE(files("sha256").empty());
  EXPECT_EQ(body(call("GET", "/api/v1/artifacts/sha256/xyz", admin_))["error"]["field"], "digest");
}

TEST_F(UpgradeRoutesTest, BeyondTheLimitIsRefusedAndLeavesNothing) {
  open_artifacts(10);
  auto announced = artifacts_->begin_upload("hello", "1.0.0", std::nullopt, 11, Caller{"ops", "POST"});
  ASSERT_FALSE(announced);
  EXPECT_EQ(announced.error().code, ErrorCode::kTooLarge);
  auto upload = artifacts_->begin_upload("hello", "1.0.0", std::nullopt, std::nullopt, Caller{"ops", "POST"});
  ASSERT_TRUE(upload);
  ASSERT_TRUE((*upload)->write("123456"));
  auto over = (*upload)->write("78901");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kTooLarge);
  EXPECT_THAT(over.error().message, HasSubstr("artifactMaxBytes"));
  EXPECT_TRUE(files("tmp").empty());
}

TEST_F(UpgradeRoutesTest, OpeningSweepsWhatAnInterruptedUploadLeft) {
  ASSERT_EQ(call("POST", "/api/v1/artifacts/hello/1.0.0", admin_, "kept").status, 201);
  std::ofstream(dir_ / "artifacts" / "tmp" / "0123.part") << "half";
  std::ofstream(dir_ / "artifacts" / "sha256" / std::string(64, 'e')) << "renamed, never named";
  open_artifacts(1 << 20);
  EXPECT_TRUE(files("tmp").empty());
  ASSERT_EQ(files("sha256").size(), 1u);
  EXPECT_EQ(files("sha256")[0].filename(), sha256_hex("kept"));
}

TEST_F(UpgradeRoutesTest, WhoMayPushAndDownload) {
  ASSERT_EQ(call("POST", "/api/v1/artifacts/hello/1.0.0", admin_, "bits").status, 201);
  const std::string target = "/api/v1/artifacts/sha256/" + sha256_hex("bits");
  EXPECT_EQ(call("GET", target, token(Role::kViewer, std::nullopt)).status, 403);
  EXPECT_EQ(call("GET", target, token(Role::kOperator, "shop")).status, 403);
  EXPECT_EQ(call("GET", target, token(Role::kOperator, std::nullopt)).status, 200);
  EXPECT_EQ(call("GET", target, "ht_unknown").status, 401);
  EXPECT_EQ(call("POST", "/api/v1/artifacts/hello/2.0.0", token(Role::kViewer, std::nullopt), "x").status, 403);
  EXPECT_EQ(call("POST", "/api/v1/artifacts/hello/2.0.0", token(Role::kOperator, "shop"), "x").status, 403);
  EXPECT_EQ(call("GET", "/api/v1/artifacts", token(Role::kViewer, "shop")).status, 200);
  // Deleting the last name removes the file.
  EXPECT_EQ(call("DELETE", "/api/v1/artifacts/hello/1.0.0", admin_).status, 200);
  EXPECT_TRUE(files("sha256").empty());
  EXPECT_EQ(call("GET", target, admin_).status, 404);
}

TEST_F(UpgradeRoutesTest, TheUpgradeRequestNamesTheFieldItRefuses) {
  ASSERT_EQ(call("POST", "/api/v1/artifacts/tranche-agent/0.1.0", admin_, "agent").status, 201);
  const json good = {{"version", "0.1.0"}, {"artifact", {{"name", "tranche-agent"}, {"version", "0.1.0"}}}};
  struct Case {
    json change;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {{{"colour", "blue"}}, "colour"},
           {{{"version", 3}}, "version"},
           {{{"version", "../x"}}, "version"},
           {{{"artifact", nullptr}}, "artifact"},
           {{{"artifact", "abc"}}, "artifact"},
           {{{"artifact", std::string(64, 'f')}}, "artifact"},
           {{{"artifact", {{"name", "tranche-agent"}, {"version", "9.9.9"}}}}, "artifact"},
           {{{"maxUnavailable", 0}}, "maxUnavailable"},
           {{{"fallbackSeconds", 4}}, "fallbackSeconds"},
           {{{"fallbackSeconds", 3601}}, "fallbackSeconds"},
           {{{"hosts", 7}}, "hosts"},
           {{{"hosts", "zone"}}, "hosts"},
       }) {
    json request = good;
    request.update(c.change);
    if (c.change.contains("artifact") && c.change["artifact"].is_null()) {
      request.erase("artifact");
    }
    const Response r = call("POST", "/api/v1/agents/upgrade", admin_, request.dump());
    EXPECT_EQ(r.status / 100, 4) << request.dump() << " " << r.body;
    EXPECT_EQ(body(r)["error"]["field"], c.field) << request.dump() << " " << r.body;
  }
  // Well-formed: refused only for want of the platform's lock.
  const Response locked = call("POST", "/api/v1/agents/upgrade", admin_, good.dump());
  EXPECT_EQ(locked.status, 409) << locked.body;
  EXPECT_EQ(call("POST", "/api/v1/agents/upgrade", token(Role::kOperator, std::nullopt), good.dump()).status, 403);
  EXPECT_EQ(call("GET", "/api/v1/agents/upgrade", admin_).status, 404);
}

}  // namespace
}  // namespace tranche::api
