#include "api/controller_api.h"

#include "api/console_files.h"
#include "common/gzip.h"
#include "engine/events.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace tranche::api {
namespace {

using nlohmann::json;

constexpr const char* kManifest = R"({"application": "shop", "clusters": [{"name": "web",
  "artifact": {"version": "1", "command": ["web"]}}]})";

class ControllerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    access_ = std::make_unique<AccessControl>(*store_, clock_);
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{});
    api_ = std::make_unique<ControllerApi>(*apps_, *access_, *fleet_, *store_, metrics_);
    admin_ = token(Role::kAdmin, std::nullopt);
  }

  std::string token(Role role, std::optional<std::string> app) {
    return access_->create_token(role, std::move(app), "", {"test", "test"}).value().secret_token;
  }

  Response call(const std::string& method, const std::string& target, const std::string& bearer,
                const std::string& body = {}, bool accepts_gzip = false) {
    Request r;
    r.accepts_gzip = accepts_gzip;
    r.method = method;
    const size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) {
      r.query = parse_query(target.substr(q + 1));
    }
    if (!bearer.empty()) {
      r.authorization = "Bearer " + bearer;
    }
    r.content_type = "application/json";
    r.body = body;
    RouteResult result = api_->handle(r);
    if (result.deferred) {  // answered later (logs): here, the answer comes at once or not at all
      std::optional<Response> later;
      result.deferred([&](Response response) { later = std::move(response); });
      EXPECT_TRUE(later.has_value()) << target << " was not answered";
      return later.value_or(Response{0, "", ""});
    }
    return result.response;
  }

  ManualClock clock_;
  Metrics metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<ControllerApi> api_;
  std::string admin_;
};

TEST_F(ControllerApiTest, HealthNeedsNoToken) {
  EXPECT_EQ(call("GET", "/healthz", "").status, 200);
  EXPECT_EQ(call("GET", "/readyz", "").status, 200);
  api_->set_ready(false);
  EXPECT_EQ(call("GET", "/readyz", "").status, 503);
  EXPECT_EQ(call("GET", "/metrics", "").status, 200);
}

// A store that fails what the reconciler reads every pass is not ready,
// even though its event seq (one meta row) still reads.
TEST(ControllerApiReadiness, NotReadyWhileTheStoreFails) {
  std::string dir = (std::filesystem::temp_directory_path() / "tranche-api-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/tranche.db";
  {
    ManualClock clock;
    Metrics metrics;
    auto store = open_sqlite_store({path}).value();
    AccessControl access(*store, clock);
    ApplicationService apps(*store, clock);
    Fleet fleet(*store, clock, FleetOptions{});
    ControllerApi api(apps, access, fleet, *store, metrics);
    auto readyz = [&] {
      Request r;
      r.method = "GET";
      r.path = "/readyz";
      return api.handle(r).response.status;
    };
    EXPECT_EQ(readyz(), 200);
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(other, "DROP TABLE applications", nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(other);
    sqlite3_close(other);
    ASSERT_TRUE(store->last_event_seq().has_value());
    ASSERT_FALSE(store->list_applications().has_value());
    EXPECT_EQ(readyz(), 503);
  }
  std::filesystem::remove_all(dir);
}

TEST_F(ControllerApiTest, EverythingElseNeedsAValidToken) {
  const Response r = call("GET", "/api/v1/applications", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "unauthenticated");
  EXPECT_EQ(call("GET", "/version", "tt_x_y").status, 401);
  const json version = json::parse(call("GET", "/version", admin_).body);
  EXPECT_EQ(version["protocol"], protocol::kVersion);
  EXPECT_EQ(version["schema"], current_schema_version());
}

TEST_F(ControllerApiTest, ApplyAnswersCreatedThenOk) {
  EXPECT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  const Response again = call("POST", "/api/v1/applications", admin_, kManifest);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(json::parse(again.body)["changed"], false);
}

// The fleet acts on an accepted write at once (the controller runs a pass
// within milliseconds), not at its next tick; reads and refusals ask nothing.
TEST_F(ControllerApiTest, AnAcceptedWriteAsksTheFleetForAPassAndAReadOrARefusalDoesNot) {
  EXPECT_EQ(call("GET", "/api/v1/applications", admin_).status, 200);
  EXPECT_FALSE(fleet_->take_pass_request());
  EXPECT_EQ(call("POST", "/api/v1/applications", "", kManifest).status, 401);
  EXPECT_EQ(call("POST", "/api/v1/applications", admin_, R"({"application": "shop", "clusters": 3})").status, 422);
  EXPECT_FALSE(fleet_->take_pass_request());
  EXPECT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  EXPECT_TRUE(fleet_->take_pass_request());
  EXPECT_FALSE(fleet_->take_pass_request()) << "one request, taken once";
}

// Issue 14, defect 8: unauthenticated calls wrote an fsynced audit row each,
// with their whole path (200 x 7 KB paths: +1.4 MB).
TEST_F(ControllerApiTest, RefusalsCannotFillTheAuditLog) {
  const size_t before = store_->list_audit(1000).value().size();
  const std::string long_path = "/api/v1/applications/" + std::string(7000, 'x');
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(call("POST", long_path, "").status, 401);
    EXPECT_EQ(call("POST", long_path, "tt_wrong").status, 401);
  }
  EXPECT_EQ(store_->list_audit(1000).value().size(), before) << "no row for a caller without a valid token";

  const std::string viewer = token(Role::kViewer, std::nullopt);
  EXPECT_EQ(call("POST", long_path + "/rollout/pause", viewer).status, 403);
  const auto rows = store_->list_audit(1).value();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_LT(rows.back().action.size(), 300u) << "a refused caller's path is cut";
  EXPECT_NE(rows.back().action.find("bytes)"), std::string::npos) << rows.back().action;
  EXPECT_NE(rows.back().result.find("403"), std::string::npos);
}

TEST_F(ControllerApiTest, InvalidManifestIs422WithField) {
  const Response r = call("POST", "/api/v1/applications", admin_, R"({"application": "shop", "clusters": 3})");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(json::parse(r.body)["error"]["field"], "clusters");
  const Response broken = call("POST", "/api/v1/applications", admin_, "{not json");
  EXPECT_EQ(broken.status, 400);
  // Refused mutating calls are audited too.
  EXPECT_NE(store_->list_audit(1).value().back().result.find("400"), std::string::npos);
}

TEST_F(ControllerApiTest, RolesAreEnforced) {
  const std::string viewer = token(Role::kViewer, std::nullopt);
  EXPECT_EQ(call("POST", "/api/v1/applications", viewer, kManifest).status, 403);
  EXPECT_EQ(call("GET", "/api/v1/applications", viewer).status, 200);
  const std::string op = token(Role::kOperator, std::nullopt);
  EXPECT_EQ(call("POST", "/api/v1/applications", op, kManifest).status, 201);
  EXPECT_EQ(call("POST", "/api/v1/tokens", op, R"({"role": "viewer"})").status, 403);
  EXPECT_EQ(call("POST", "/api/v1/tokens", admin_, R"({"role": "viewer"})").status, 201);
  EXPECT_EQ(call("POST", "/api/v1/tokens", admin_, R"({"role": "root"})").status, 400);
}

TEST_F(ControllerApiTest, ScopedTokensSeeOnlyTheirApplication) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  const std::string other = token(Role::kAdmin, std::string("other"));
  EXPECT_EQ(call("GET", "/api/v1/applications/shop", other).status, 404);
  EXPECT_EQ(call("GET", "/api/v1/applications/shop/revisions", other).status, 404);
  EXPECT_EQ(call("POST", "/api/v1/applications", other, kManifest).status, 404);
  EXPECT_TRUE(json::parse(call("GET", "/api/v1/applications", other).body)["items"].empty());
  EXPECT_TRUE(json::parse(call("GET", "/api/v1/events", other).body)["items"].empty());
  const std::string mine = token(Role::kViewer, std::string("shop"));
  EXPECT_EQ(call("GET", "/api/v1/applications/shop", mine).status, 200);
  EXPECT_FALSE(json::parse(call("GET", "/api/v1/events", mine).body)["items"].empty());
}

// quality.md: a token never creates a token above its own role or outside
// its own scope. An admin token scoped to one application minted unscoped
// admin tokens, i.e. got the whole controller.
TEST_F(ControllerApiTest, ScopedAdminCreatesTokensOfItsApplicationOnly) {
  const std::string scoped = token(Role::kAdmin, std::string("shop"));
  for (const char* body : {R"({"role": "admin"})", R"({"role": "viewer"})"}) {
    const Response r = call("POST", "/api/v1/tokens", scoped, body);
    EXPECT_EQ(r.status, 403) << body << " " << r.body;
    EXPECT_FALSE(json::parse(r.body).contains("token")) << body;
    EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("scoped to application 'shop'"),
              std::string::npos)
        << r.body;
  }
  const Response elsewhere = call("POST", "/api/v1/tokens", scoped, R"({"role": "viewer", "app": "other"})");
  EXPECT_EQ(elsewhere.status, 404) << "another application is hidden, not forbidden";
  EXPECT_EQ(json::parse(elsewhere.body)["error"]["message"], "application 'other' not found");
  EXPECT_NE(store_->list_audit(1).value().back().result.find("404"), std::string::npos) << "refusals are audited";

  const Response own = call("POST", "/api/v1/tokens", scoped, R"({"role": "operator", "app": "shop"})");
  ASSERT_EQ(own.status, 201) << own.body;
  EXPECT_EQ(json::parse(own.body)["app"], "shop");
  auto minted = access_->authenticate(json::parse(own.body)["token"].get<std::string>());
  ASSERT_TRUE(minted.has_value());
  EXPECT_EQ(minted->app, "shop");
  EXPECT_EQ(minted->role, Role::kOperator);

  const Response unscoped = call("POST", "/api/v1/tokens", admin_, R"({"role": "admin"})");
  ASSERT_EQ(unscoped.status, 201) << "an unscoped admin still may";
  EXPECT_TRUE(json::parse(unscoped.body)["app"].is_null());
}

// Draining a host affects every application on it: an unscoped admin only.
TEST_F(ControllerApiTest, HostOperationsNeedAnUnscopedAdmin) {
  HostRecord host;
  host.id = "h1";
  host.hostname = "one";
  host.state = "Ready";
  WriteBatch batch;
  batch.mutations.push_back(PutHost{host});
  ASSERT_TRUE(store_->commit(batch).has_value());
  ASSERT_TRUE(fleet_->load().has_value());
  auto state = [&] { return json::parse(call("GET", "/api/v1/hosts", admin_).body)["items"][0]["state"]; };

  const std::string scoped = token(Role::kAdmin, std::string("shop"));
  for (const char* action : {"drain", "undrain"}) {
    const Response r = call("POST", std::string("/api/v1/hosts/h1/") + action, scoped);
    EXPECT_EQ(r.status, 403) << action << " " << r.body;
    EXPECT_EQ(state(), "Ready") << action;
  }
  EXPECT_EQ(call("POST", "/api/v1/hosts/h1/drain", admin_).status, 200);
  EXPECT_EQ(state(), "Draining");
  EXPECT_EQ(call("POST", "/api/v1/hosts/h1/undrain", scoped).status, 403);
  EXPECT_EQ(state(), "Draining");
  EXPECT_EQ(call("POST", "/api/v1/hosts/h1/undrain", admin_).status, 200);
  EXPECT_EQ(state(), "Ready");
}

// A host is shared, its members are not: a scoped token counts only its
// own application's.
TEST_F(ControllerApiTest, HostsShowAScopedTokenOnlyItsOwnMembers) {
  WriteBatch batch;
  batch.mutations.push_back(PutHost{HostRecord{.id = "h1", .hostname = "one", .state = "Ready"}});
  for (const char* app : {"shop", "other", "other"}) {
    MemberRecord m;
    m.app = app;
    m.cluster = "web";
    m.ordinal = static_cast<int64_t>(batch.mutations.size());
    m.id = m.app + "/web/" + std::to_string(m.ordinal);
    m.host = "h1";
    m.state = "Active";
    batch.mutations.push_back(PutMember{m});
  }
  ASSERT_TRUE(store_->commit(batch).has_value());
  ASSERT_TRUE(fleet_->load().has_value());
  auto members_on_h1 = [&](const std::string& token) {
    return json::parse(call("GET", "/api/v1/hosts", token).body)["items"][0]["members"].get<int>();
  };
  EXPECT_EQ(members_on_h1(admin_), 3);
  EXPECT_EQ(members_on_h1(token(Role::kViewer, std::string("shop"))), 1);
  EXPECT_EQ(members_on_h1(token(Role::kViewer, std::string("nothing"))), 0);
}

TEST_F(ControllerApiTest, MemberIdsWithSlashesRoute) {
  EXPECT_EQ(call("GET", "/api/v1/members/shop/web/3", admin_).status, 404);
  const Response logs = call("GET", "/api/v1/members/shop/web/3/logs", admin_);
  EXPECT_EQ(logs.status, 404);
  EXPECT_NE(json::parse(logs.body)["error"]["message"].get<std::string>().find("shop/web/3"), std::string::npos);
  EXPECT_EQ(call("GET", "/api/v1/members?app=shop", admin_).status, 200);
  EXPECT_EQ(call("GET", "/api/v1/hosts", admin_).status, 200);
  EXPECT_EQ(call("POST", "/api/v1/hosts/h1/drain", token(Role::kOperator, std::nullopt)).status, 403);
}

TEST_F(ControllerApiTest, UnknownPathsAndMethods) {
  EXPECT_EQ(call("GET", "/api/v1/nothing", admin_).status, 404);
  EXPECT_EQ(call("PATCH", "/api/v1/applications", admin_).status, 400);
  EXPECT_EQ(call("GET", "/api/v1/applications/shop/revisions/x", admin_).status, 400);
}

// A key given twice in a body is refused, naming it (nlohmann kept the last
// one: {"autoscaling": "off", "autoscaling": "on"} set "on"), on every route
// that reads a JSON body; nothing changes.
TEST_F(ControllerApiTest, DuplicateKeysInABodyAreRefused) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  const struct {
    const char* method;
    const char* path;
    const char* body;
    const char* key;
  } cases[] = {
      {"PUT", "/api/v1/applications/shop/operational-state", R"({"autoscaling": "off", "autoscaling": "on"})",
       "autoscaling"},
      {"POST", "/api/v1/applications/shop/rollout/undo", R"({"toRevision": 1, "toRevision": 1})", "toRevision"},
      {"POST", "/api/v1/tokens", R"({"role": "viewer", "name": "a", "name": "b"})", "name"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const Response r = call(c.method, c.path, admin_, c.body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["message"],
              std::string("body: invalid JSON: duplicate key '") + c.key + "'");
  }
  const json events = json::parse(call("GET", "/api/v1/events", admin_).body);
  EXPECT_EQ(events["items"].size(), 1u) << "only the apply: " << events.dump();
}

// Revisions beyond int64 cannot exist: refused naming the field and the
// number as given (GET answered "has no revision -1").
TEST_F(ControllerApiTest, RevisionsBeyondTheirRangeAreRefusedAsGiven) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  const Response get = call("GET", "/api/v1/applications/shop/revisions/18446744073709551615", admin_);
  EXPECT_EQ(get.status, 400) << get.body;
  EXPECT_EQ(json::parse(get.body)["error"],
            (json{{"code", "invalid"},
                  {"message", "revision 18446744073709551615 is out of range: revisions go from 1 to "
                              "9223372036854775807"},
                  {"field", "revision"}}));
  const Response last = call("GET", "/api/v1/applications/shop/revisions/9223372036854775807", admin_);
  EXPECT_EQ(last.status, 404) << last.body;
  EXPECT_NE(last.body.find("has no revision 9223372036854775807"), std::string::npos) << last.body;

  const Response undo =
      call("POST", "/api/v1/applications/shop/rollout/undo", admin_, R"({"toRevision": 18446744073709551615})");
  EXPECT_EQ(undo.status, 400) << undo.body;
  EXPECT_EQ(json::parse(undo.body)["error"]["message"],
            "toRevision 18446744073709551615 is out of range: revisions go from 1 to 9223372036854775807");
  EXPECT_EQ(json::parse(undo.body)["error"]["field"], "toRevision");
}

TEST_F(ControllerApiTest, EventsPageBySeq) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  ASSERT_EQ(call("PUT", "/api/v1/applications/shop/operational-state", admin_, R"({"autoscaling": "off"})").status,
            200);
  const json all = json::parse(call("GET", "/api/v1/events", admin_).body);
  ASSERT_EQ(all["items"].size(), 2u);
  const json after = json::parse(call("GET", "/api/v1/events?since=1", admin_).body);
  ASSERT_EQ(after["items"].size(), 1u);
  EXPECT_EQ(after["items"][0]["seq"], 2);
  EXPECT_EQ(after["items"][0]["type"], "OperationalStateChanged");
  EXPECT_EQ(after["items"][0]["to"], "off");
  EXPECT_EQ(call("GET", "/api/v1/events?since=-1", admin_).status, 400);
}

// GET /applications/{app}: the tree with each cluster's counts from the
// fleet and the newest events; no member list (GET /members pages those).
TEST_F(ControllerApiTest, TheApplicationsViewCountsItsMembersAndShowsItsNewestEvents) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  WriteBatch batch;
  for (int i = 1; i <= 3; ++i) {
    MemberRecord m{.id = "shop/web/" + std::to_string(i), .app = "shop", .cluster = "web", .ordinal = i,
                   .state = i < 3 ? "Active" : "Starting", .revision = 1};
    batch.mutations.push_back(PutMember{m});
  }
  ASSERT_TRUE(store_->commit(batch).has_value());
  ASSERT_TRUE(fleet_->load().has_value());
  for (int i = 0; i < 12; ++i) {  // 13 events in all
    const std::string body = std::string(R"({"autoscaling": ")") + (i % 2 ? "on" : "off") + R"("})";
    ASSERT_EQ(call("PUT", "/api/v1/applications/shop/operational-state", admin_, body).status, 200);
  }
  const Response r = call("GET", "/api/v1/applications/shop", admin_);
  ASSERT_EQ(r.status, 200) << r.body;
  const json doc = json::parse(r.body);
  const json& web = doc["tree"][1];
  ASSERT_EQ(web["path"], "web");
  EXPECT_FALSE(web["members"].contains("items")) << "counts, not members";
  EXPECT_EQ(web["members"]["desired"], 1);
  EXPECT_EQ(web["members"]["count"], 3);
  EXPECT_EQ(web["members"]["states"], (json{{"Active", 2}, {"Starting", 1}}));
  EXPECT_EQ(web["members"]["available"], 2);
  EXPECT_EQ(web["members"]["revisions"], (json{{"1", 3}}));
  EXPECT_EQ(web["autoscaling"]["effective"], "on") << "the application's last value, inherited";
  EXPECT_EQ(web["autoscaling"]["source"], "");
  EXPECT_EQ(web["load"]["state"], "normal");
  const json& recent = doc["recentEvents"];
  ASSERT_EQ(recent.size(), 10u);
  EXPECT_EQ(recent.back()["seq"], store_->last_event_seq().value()) << "the newest last";
  for (size_t i = 1; i < recent.size(); ++i) {
    EXPECT_EQ(recent[i]["seq"].get<uint64_t>(), recent[i - 1]["seq"].get<uint64_t>() + 1);
  }
}

// The view is kept between events: rendered again once an event is
// committed, or once its lifetime passed (what no event announces).
TEST_F(ControllerApiTest, ReadViewsAreRenderedAgainAfterAnEventOrTheirLifetime) {
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  auto add_member = [&](int i) {  // written without an event, as a health change would be
    MemberRecord m{.id = "shop/web/" + std::to_string(i), .app = "shop", .cluster = "web", .ordinal = i,
                   .state = "Active", .revision = 1};
    ASSERT_TRUE(store_->commit(WriteBatch{.mutations = {PutMember{m}}}).has_value());
    ASSERT_TRUE(fleet_->load().has_value());
  };
  auto view = [&] { return json::parse(call("GET", "/api/v1/applications/shop", admin_).body)["tree"][1]; };
  add_member(1);
  EXPECT_EQ(view()["members"]["count"], 1);
  auto listed = [&] { return json::parse(call("GET", "/api/v1/members?app=shop", admin_).body)["items"].size(); };
  EXPECT_EQ(listed(), 1u);
  add_member(2);
  EXPECT_EQ(view()["members"]["count"], 1) << "kept: no event since";
  EXPECT_EQ(listed(), 1u) << "kept: no event since";
  EXPECT_EQ(json::parse(call("GET", "/api/v1/members?app=shop&limit=5", admin_).body)["items"].size(), 2u)
      << "another page is another answer";
  clock_.advance(ControllerApi::kViewLifetime);
  EXPECT_EQ(view()["members"]["count"], 2) << "rendered again once its lifetime passed";
  EXPECT_EQ(listed(), 2u);
  add_member(3);
  ASSERT_EQ(call("PUT", "/api/v1/applications/shop/operational-state", admin_, R"({"autoscaling": "off"})").status,
            200);
  const json web = view();
  EXPECT_EQ(web["members"]["count"], 3) << "rendered again after an event";
  EXPECT_EQ(web["autoscaling"]["effective"], "off");
  EXPECT_EQ(call("GET", "/api/v1/applications/none", admin_).status, 404);
}

std::optional<std::string> header(const Response& r, const std::string& name) {
  for (const auto& [field, value] : r.headers) {
    if (field == name) {
      return value;
    }
  }
  return std::nullopt;
}

TEST_F(ControllerApiTest, ALargeViewIsGivenGzippedToACallerThatAcceptsIt) {
  json manifest{{"application", "big"}, {"clusters", json::array()}};
  for (int i = 0; i < 80; ++i) {
    manifest["clusters"].push_back(
        {{"name", "c" + std::to_string(i)}, {"artifact", {{"version", "1"}, {"command", {"web"}}}}});
  }
  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, manifest.dump()).status, 201);
  const Response plain = call("GET", "/api/v1/applications/big", admin_);
  ASSERT_EQ(plain.status, 200) << plain.body;
  ASSERT_GT(plain.body.size(), ViewCache::kGzipAbove) << "large enough to be kept compressed";
  EXPECT_EQ(header(plain, "Content-Encoding"), std::nullopt);
  EXPECT_EQ(header(plain, "Vary"), "Accept-Encoding") << "what a cache on the way must know";
  const Response packed = call("GET", "/api/v1/applications/big", admin_, {}, /*accepts_gzip=*/true);
  ASSERT_EQ(packed.status, 200);
  EXPECT_EQ(header(packed, "Content-Encoding"), "gzip");
  EXPECT_EQ(packed.body, gzip(plain.body)) << "the same answer, compressed";
  EXPECT_LT(packed.body.size() * 5, plain.body.size());

  ASSERT_EQ(call("POST", "/api/v1/applications", admin_, kManifest).status, 201);
  const Response small = call("GET", "/api/v1/applications/shop", admin_, {}, true);
  EXPECT_EQ(header(small, "Content-Encoding"), std::nullopt) << "a small answer is given as it is";
  EXPECT_EQ(json::parse(small.body)["name"], "shop");
}

TEST_F(ControllerApiTest, AnyOtherAnswerOver128KiBIsCompressedForACallerThatAcceptsGzip) {
  WriteBatch batch;
  for (int i = 0; i < 1000; ++i) {
    batch.mutations.push_back(AppendEvent{make_event(clock_.now(), "shop", "shop/web", "", "OperationalStateChanged",
                                                     "on", "off", std::string(150, 'x'))});
  }
  ASSERT_TRUE(store_->commit(batch).has_value());
  const Response plain = call("GET", "/api/v1/events", admin_);
  ASSERT_EQ(plain.status, 200);
  ASSERT_GT(plain.body.size(), 128u * 1024);
  EXPECT_EQ(header(plain, "Content-Encoding"), std::nullopt);
  const Response packed = call("GET", "/api/v1/events", admin_, {}, /*accepts_gzip=*/true);
  EXPECT_EQ(header(packed, "Content-Encoding"), "gzip");
  EXPECT_EQ(header(packed, "Vary"), "Accept-Encoding");
  EXPECT_EQ(gunzip(packed.body, 1 << 20), plain.body);
  const Response page = call("GET", "/api/v1/events?limit=10", admin_, {}, true);
  EXPECT_EQ(header(page, "Content-Encoding"), std::nullopt) << "a small answer is given as it is";
  EXPECT_EQ(json::parse(page.body)["items"].size(), 10u);
}

TEST_F(ControllerApiTest, MembersPageWithACursorAndRefuseABadLimitNamingIt) {
  WriteBatch batch;
  for (int i = 1; i <= 3; ++i) {
    MemberRecord m{.id = "shop/web/" + std::to_string(i), .app = "shop", .cluster = "web", .ordinal = i,
                   .state = "Active", .revision = 1};
    batch.mutations.push_back(PutMember{m});
  }
  ASSERT_TRUE(store_->commit(batch).has_value());
  ASSERT_TRUE(fleet_->load().has_value());
  const json first = json::parse(call("GET", "/api/v1/members?app=shop&cluster=web&limit=2", admin_).body);
  ASSERT_EQ(first["items"].size(), 2u);
  EXPECT_EQ(first["continue"], "shop/web/2");
  const json second =
      json::parse(call("GET", "/api/v1/members?app=shop&cluster=web&limit=2&continue=shop%2Fweb%2F2", admin_).body);
  ASSERT_EQ(second["items"].size(), 1u);
  EXPECT_EQ(second["items"][0]["id"], "shop/web/3");
  EXPECT_TRUE(second["continue"].is_null());
  const json all = json::parse(call("GET", "/api/v1/members?app=shop", admin_).body);
  EXPECT_EQ(all["items"].size(), 3u) << "without a limit, every member";
  EXPECT_TRUE(all["continue"].is_null());
  for (const char* bad : {"0", "-1", "two", "10001", "", "1.5"}) {
    const Response r = call("GET", std::string("/api/v1/members?app=shop&limit=") + bad, admin_);
    EXPECT_EQ(r.status, 400) << "limit=" << bad;
    EXPECT_EQ(json::parse(r.body)["error"]["field"], "limit") << "limit=" << bad << ": " << r.body;
  }
}

TEST_F(ControllerApiTest, FollowTurnsIntoAStream) {
  Request r;
  r.method = "GET";
  r.path = "/api/v1/events";
  r.query = parse_query("follow=1&since=7&app=shop");
  r.authorization = "Bearer " + admin_;
  const RouteResult result = api_->handle(r);
  ASSERT_TRUE(result.stream.has_value());
  EXPECT_EQ(result.stream->since, 7u);
  EXPECT_EQ(result.stream->app, "shop");
}

// Found by tests/fuzz (fuzz_api): an error message quoting bytes that are
// not UTF-8 made the answer's dump() throw out of handle().
TEST_F(ControllerApiTest, AnswersQuotingInvalidUtf8AreStillJson) {
  const Response bad_json = call("POST", "/api/v1/applications", admin_, "{\"appl\xa3ication\": 1}");
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(json::parse(bad_json.body)["error"]["code"], "invalid");
  const Response bad_path = call("GET", "/api/v1/\xff\xfe", admin_);
  EXPECT_EQ(bad_path.status, 404);
  EXPECT_NE(json::parse(bad_path.body)["error"]["message"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos)
      << "U+FFFD in place of each byte that is not UTF-8";
}

TEST(Query, DecodesPairs) {
  auto q = parse_query("a=1&b=x%20y&c=&d+e=f+g");
  EXPECT_EQ(q["a"], "1");
  EXPECT_EQ(q["b"], "x y");
  EXPECT_EQ(q["c"], "");
  EXPECT_EQ(q["d e"], "f g");
}

// The console's files are served to anyone (they hold no data) under a
// policy that lets the page load and talk to its own origin only.
TEST_F(ControllerApiTest, ConsoleIsServedWithoutATokenUnderAStrictPolicy) {
  for (const char* path : {"/ui", "/ui/", "/ui/index.html"}) {
    const Response page = call("GET", path, "");
    EXPECT_EQ(page.status, 200) << path;
    EXPECT_EQ(page.content_type, "text/html; charset=utf-8") << path;
    EXPECT_NE(page.body.find("/ui/console.js"), std::string::npos) << path;
    ASSERT_FALSE(page.headers.empty()) << path;
    EXPECT_EQ(page.headers[0].first, "Content-Security-Policy");
    EXPECT_NE(page.headers[0].second.find("connect-src 'self'"), std::string::npos);
  }
  EXPECT_EQ(call("GET", "/ui/console.js", "").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(call("GET", "/ui/console.css", "").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(call("GET", "/ui/nope.js", "").status, 404);
  EXPECT_EQ(call("GET", "/uix", "").status, 401) << "only /ui and below are the console's";
  EXPECT_EQ(call("POST", "/ui/", "").status, 401);
}

// A file added to src/api/console/ but not to its CMake list would be
// missing from the binary, and the page would break only in a browser.
TEST(ConsoleFilesTest, EveryFileOfTheConsoleFolderIsEmbedded) {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(TRANCHE_SOURCE_DIR) + "/src/api/console")) {
    if (entry.path().filename() != "README.md") {
      on_disk.insert(entry.path().filename().string());
    }
  }
  std::set<std::string> embedded;
  for (const ConsoleFile& file : console_files()) {
    embedded.insert(std::string(file.name));
    EXPECT_FALSE(file.body.empty()) << file.name;
  }
  EXPECT_EQ(embedded, on_disk);
}

TEST_F(ControllerApiTest, WhoamiSaysTheTokensRoleAndScope) {
  const json admin = json::parse(call("GET", "/api/v1/whoami", admin_).body);
  EXPECT_EQ(admin["role"], "admin");
  EXPECT_TRUE(admin["app"].is_null());
  EXPECT_TRUE(admin["lastEventSeq"].is_number_unsigned());
  const json viewer = json::parse(call("GET", "/api/v1/whoami", token(Role::kViewer, std::string("shop"))).body);
  EXPECT_EQ(viewer["role"], "viewer");
  EXPECT_EQ(viewer["app"], "shop");
  EXPECT_EQ(call("GET", "/api/v1/whoami", "wrong").status, 401);
}

}  // namespace
}  // namespace tranche::api
