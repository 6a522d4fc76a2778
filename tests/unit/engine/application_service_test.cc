#include "engine/application_service.h"

#include <gtest/gtest.h>

#include "engine/operational_state.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kShop = R"(application: shop
revisionHistoryLimit: 3
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: ["db"]}
clusters:
  - name: web
    members: {min: 1, max: 5, desired: 2}
    artifact: {version: "1.0", command: ["web"]}
    operational: {autoscaling: "off"}
)";

std::string with_web_version(const std::string& v) {
  std::string text = kShop;
  text.replace(text.find("\"1.0\""), 5, "\"" + v + "\"");
  return text;
}

class ApplicationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = open_sqlite_store({":memory:"});
    ASSERT_TRUE(opened.has_value()) << opened.error().describe();
    store_ = std::move(*opened);
    service_ = std::make_unique<ApplicationService>(*store_, clock_);
  }

  ApplyOutcome apply(const std::string& text, bool dry_run = false) {
    auto outcome = service_->apply(text, ManifestFormat::kYaml, dry_run, caller_);
    EXPECT_TRUE(outcome.has_value()) << outcome.error().describe();
    return outcome.value_or(ApplyOutcome{});
  }

  json set(json body) {
    auto change = parse_operational_change(body);
    EXPECT_TRUE(change.has_value()) << change.error().describe();
    auto done = service_->set_operational_state("shop", *change, caller_);
    EXPECT_TRUE(done.has_value()) << done.error().describe();
    return done.value_or(json());
  }

  SettingView view(const std::string& path, Setting s) {
    return resolve(store_->list_operational_values("shop").value(), path, s);
  }

  std::vector<EventRecord> events() { return store_->list_events({0, std::nullopt, 10000}).value(); }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> service_;
  Caller caller_{"alice", "test"};
};

TEST_F(ApplicationServiceTest, ApplyCreatesThenNoOpThenNewRevision) {
  ApplyOutcome first = apply(kShop);
  EXPECT_TRUE(first.created);
  EXPECT_EQ(first.revision, 1);
  EXPECT_FALSE(first.operation_id.empty());
  const size_t events_after_create = events().size();

  ApplyOutcome same = apply(kShop);
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.revision, 1);
  EXPECT_NE(same.message.find("unchanged"), std::string::npos);
  EXPECT_EQ(events().size(), events_after_create) << "a no-op writes nothing";

  ApplyOutcome dry = apply(with_web_version("2.0"), true);
  EXPECT_TRUE(dry.changed);
  EXPECT_EQ(dry.revision, 2);
  EXPECT_EQ(store_->get_application("shop").value()->current_revision, 1) << "a dry run stores nothing";

  ApplyOutcome second = apply(with_web_version("2.0"));
  EXPECT_EQ(second.revision, 2);
  EXPECT_EQ(second.summary, "web: artifact.version 1.0 -> 2.0");
  const auto revisions = store_->list_revisions("shop").value();
  ASSERT_EQ(revisions.size(), 2u);
  EXPECT_EQ(revisions[0].author, "alice");
  EXPECT_EQ(events().back().type, "RevisionCreated");
}

TEST_F(ApplicationServiceTest, InvalidManifestStoresNothing) {
  std::string bad = kShop;
  bad.replace(bad.find("min: 1, max: 5"), 14, "min: 6, max: 5");
  auto outcome = service_->apply(bad, ManifestFormat::kYaml, false, caller_);
  ASSERT_FALSE(outcome.has_value());
  EXPECT_EQ(outcome.error().code, ErrorCode::kUnprocessable);
  EXPECT_EQ(outcome.error().field, "clusters[0].members.min");
  EXPECT_TRUE(store_->list_applications().value().empty());
  EXPECT_TRUE(events().empty());
}

TEST_F(ApplicationServiceTest, ScopedCallerCannotApplyAnotherApplication) {
  auto outcome = service_->apply(kShop, ManifestFormat::kYaml, false, caller_, std::string("other"));
  ASSERT_FALSE(outcome.has_value());
  EXPECT_EQ(outcome.error().code, ErrorCode::kNotFound);
}

TEST_F(ApplicationServiceTest, RevisionHistoryIsPruned) {
  apply(kShop);
  for (int v = 2; v <= 6; ++v) {
    apply(with_web_version(std::to_string(v) + ".0"));
  }
  const auto revisions = store_->list_revisions("shop").value();
  ASSERT_EQ(revisions.size(), 3u);
  EXPECT_EQ(revisions.front().number, 6);
  EXPECT_EQ(revisions.back().number, 4);
}

TEST_F(ApplicationServiceTest, ManifestSeedsNewNodesOnlyOnce) {
  apply(kShop);
  EXPECT_EQ(view("web", Setting::kAutoscaling).explicit_value, "off");
  set({{"path", "web"}, {"autoscaling", "on"}});
  apply(with_web_version("2.0"));
  EXPECT_EQ(view("web", Setting::kAutoscaling).explicit_value, "on") << "the operator's choice survives an apply";
}

TEST_F(ApplicationServiceTest, PropagateClearsExplicitValuesBelow) {
  apply(kShop);
  set({{"path", "backend/db"}, {"autohealing", "on"}});
  set({{"autohealing", "off"}});
  EXPECT_EQ(view("backend/db", Setting::kAutohealing).effective, "on") << "without propagate the explicit value stays";
  EXPECT_EQ(view("web", Setting::kAutohealing).effective, "off");

  json result = set({{"autohealing", "off"}, {"propagate", true}});
  EXPECT_EQ(view("backend/db", Setting::kAutohealing).effective, "off");
  EXPECT_FALSE(view("backend/db", Setting::kAutohealing).explicit_value.has_value());
  ASSERT_EQ(result["changes"].size(), 2u);
  EXPECT_EQ(result["changes"][1]["path"], "backend/db");
  EXPECT_TRUE(result["changes"][1]["to"].is_null());
  EXPECT_EQ(events().back().type, "OperationalStateChanged");
  EXPECT_EQ(events().back().path, "shop/backend/db");
}

TEST_F(ApplicationServiceTest, OperationsAreNumberedPerApplication) {
  apply(kShop);
  const json a = set({{"autoscaling", "off"}});
  const json b = set({{"autoscaling", "on"}});
  EXPECT_EQ(a["seq"], 2);  // apply was 1
  EXPECT_EQ(b["seq"], 3);
  auto op = service_->get_operation(b["operation"]);
  ASSERT_TRUE(op.has_value());
  EXPECT_EQ((*op)["kind"], "operational-state");
  EXPECT_EQ((*op)["status"], "Succeeded");
  EXPECT_EQ((*op)["actor"], "alice");
  const auto audit = store_->list_audit(10).value();
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().actor, "alice");
  EXPECT_EQ(audit.back().target, "shop");
}

TEST_F(ApplicationServiceTest, UnknownNodeIsRejected) {
  apply(kShop);
  auto change = parse_operational_change({{"path", "nope"}, {"autoscaling", "off"}});
  auto done = service_->set_operational_state("shop", *change, caller_);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(done.error().field, "path");
  auto missing = service_->set_operational_state("nope", *change, caller_);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(ApplicationServiceTest, MaintenanceWithoutMembersCompletesAtOnce) {
  apply(kShop);
  json result = set({{"path", "web"}, {"maintenance", "restart"}});
  EXPECT_NE(result["message"].get<std::string>().find("completed at once: no members"), std::string::npos);
  EXPECT_EQ(view("web", Setting::kMaintenance).effective, "off");
}

TEST_F(ApplicationServiceTest, TimeBoxedValueRevertsToThePreviousExplicitValue) {
  apply(kShop);
  set({{"path", "web"}, {"autohealing", "on"}});
  set({{"path", "web"}, {"autohealing", "off"}, {"for", "5s"}});
  EXPECT_EQ(view("web", Setting::kAutohealing).effective, "off");

  clock_.advance(4999ms);
  EXPECT_EQ(service_->expire_operational_values().value(), 0);
  clock_.advance(1ms);
  EXPECT_EQ(service_->expire_operational_values().value(), 1);
  const SettingView after = view("web", Setting::kAutohealing);
  EXPECT_EQ(after.explicit_value, "on");
  EXPECT_FALSE(after.expires_at.has_value());
  const EventRecord last = events().back();
  EXPECT_EQ(last.type, "OperationalStateExpired");
  EXPECT_NE(last.message.find("expired after 5s"), std::string::npos) << last.message;
  EXPECT_EQ(service_->expire_operational_values().value(), 0) << "expires once";
}

TEST_F(ApplicationServiceTest, TimeBoxedValueWithoutPreviousReturnsToInheriting) {
  apply(kShop);
  set({{"path", "backend"}, {"autoscaling", "off"}, {"for", "1m"}});
  set({{"path", "backend"}, {"autoscaling", "off"}, {"for", "2m"}});  // extends; still reverts to inheriting
  clock_.advance(1min);
  EXPECT_EQ(service_->expire_operational_values().value(), 0);
  clock_.advance(1min);
  EXPECT_EQ(service_->expire_operational_values().value(), 1);
  EXPECT_FALSE(view("backend", Setting::kAutoscaling).explicit_value.has_value());
  EXPECT_EQ(view("backend", Setting::kAutoscaling).effective, "on");
}

TEST_F(ApplicationServiceTest, SettingAgainWithoutDurationMakesItPermanent) {
  apply(kShop);
  set({{"autoscaling", "off"}, {"for", "10s"}});
  set({{"autoscaling", "off"}});
  clock_.advance(1h);
  EXPECT_EQ(service_->expire_operational_values().value(), 0);
  EXPECT_EQ(view("", Setting::kAutoscaling).explicit_value, "off");
}

TEST_F(ApplicationServiceTest, UndeployKeepsSettingsAndHistory) {
  apply(kShop);
  ASSERT_TRUE(service_->undeploy("shop", caller_).has_value());
  EXPECT_FALSE(store_->get_application("shop").value()->deployed);
  set({{"autoscaling", "off"}});  // configured but not deployed
  ApplyOutcome again = apply(kShop);
  EXPECT_FALSE(again.changed);
  EXPECT_NE(again.message.find("redeployed"), std::string::npos);
  EXPECT_TRUE(store_->get_application("shop").value()->deployed);
  EXPECT_EQ(view("web", Setting::kAutoscaling).effective, "off") << "web's manifest value is explicit";
  EXPECT_EQ(view("backend/db", Setting::kAutoscaling).effective, "off");
}

TEST(OperationalChangeBody, RejectionsNameTheField) {
  struct Case {
    json body;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"autoscaling", "maybe"}}, "autoscaling"},
      {{{"maintenance", "on"}}, "maintenance"},
      {{{"autoscaling", true}}, "autoscaling"},
      {{{"autoscaling", "off"}, {"for", "soon"}}, "for"},
      {{{"autoscaling", "off"}, {"propagate", "yes"}}, "propagate"},
      {{{"autoscaling", "off"}, {"color", "red"}}, "color"},
      {{{"path", "Bad_Name"}, {"autoscaling", "off"}}, "path"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_operational_change(c.body);
    ASSERT_FALSE(parsed.has_value()) << c.body.dump();
    EXPECT_EQ(parsed.error().field, c.field) << c.body.dump();
  }
  EXPECT_FALSE(parse_operational_change(json{{"path", "web"}}).has_value()) << "no setting given";
  EXPECT_FALSE(parse_operational_change(json::array()).has_value());
  auto ok = parse_operational_change({{"path", "/web/"}, {"autohealing", "off"}, {"for", "90s"}});
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->path, "web");
  EXPECT_EQ(ok->duration, 90s);
}

}  // namespace
}  // namespace tranche
