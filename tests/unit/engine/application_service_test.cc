#include "engine/application_service.h"

#include <algorithm>

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

// --- rollouts -------------------------------------------------------------

class RolloutCommandsTest : public ApplicationServiceTest {
 protected:
  // Members as the fleet would have left them: `count` Active members of web.
  void run_web_members(int count, int64_t revision) {
    WriteBatch batch;
    for (int i = 1; i <= count; ++i) {
      MemberRecord m;
      m.id = "shop/web/" + std::to_string(i);
      m.app = "shop";
      m.cluster = "web";
      m.ordinal = i;
      m.host = "h1";
      m.state = "Active";
      m.revision = revision;
      batch.mutations.push_back(PutMember{m});
    }
    ASSERT_TRUE(store_->commit(batch).has_value());
  }

  RolloutRecord latest() {
    auto r = store_->latest_rollout("shop");
    EXPECT_TRUE(r.has_value() && r->has_value());
    return r.value_or(std::nullopt).value_or(RolloutRecord{});
  }

  Result<json> control(std::string_view action) { return service_->rollout_control("shop", action, caller_); }

  size_t phase_events() {
    size_t n = 0;
    for (const auto& e : events()) {
      n += e.type == "RolloutPhaseChanged" ? 1 : 0;
    }
    return n;
  }
};

TEST_F(RolloutCommandsTest, OnlyAChangedMemberTemplateStartsARollout) {
  apply(kShop);
  run_web_members(2, 1);
  std::string more = kShop;
  more.replace(more.find("desired: 2"), 10, "desired: 3");
  ApplyOutcome counts = apply(more);
  EXPECT_TRUE(counts.changed);
  EXPECT_FALSE(counts.rollout) << "a new desired count changes no running member";
  EXPECT_FALSE(store_->latest_rollout("shop").value());

  std::string v2 = more;
  v2.replace(v2.find("\"1.0\""), 5, "\"2.0\"");
  ApplyOutcome changed = apply(v2);
  ASSERT_TRUE(changed.rollout);
  EXPECT_EQ(*changed.rollout, 1);
  const RolloutRecord r = latest();
  EXPECT_EQ(r.phase, "Progressing");
  EXPECT_EQ(r.from_revision, 2);
  EXPECT_EQ(r.to_revision, 3);
  EXPECT_EQ(r.target_revision, 3);
  EXPECT_EQ(r.author, "alice");
  EXPECT_EQ(phase_events(), 1u);
  EXPECT_NE(changed.message.find("rollout 1 started"), std::string::npos) << changed.message;
}

TEST_F(RolloutCommandsTest, ANewerApplySupersedesTheRunningRollout) {
  apply(kShop);
  run_web_members(2, 1);
  apply(with_web_version("2.0"));
  ApplyOutcome third = apply(with_web_version("3.0"));
  ASSERT_TRUE(third.rollout);
  EXPECT_EQ(*third.rollout, 2);
  EXPECT_EQ(latest().phase, "Progressing");
  auto first = store_->latest_rollout("shop").value();
  const auto evs = events();
  auto superseded = std::find_if(evs.begin(), evs.end(), [](const EventRecord& e) {
    return e.type == "RolloutPhaseChanged" && e.to_json == "\"Superseded\"";
  });
  ASSERT_NE(superseded, evs.end());
  EXPECT_NE(superseded->message.find("rollout 1 of shop"), std::string::npos) << superseded->message;
}

TEST_F(RolloutCommandsTest, ControlsAreIdempotentAndAnswerWithThePhase) {
  apply(kShop);
  run_web_members(2, 1);
  apply(with_web_version("2.0"));

  auto paused = control("pause");
  ASSERT_TRUE(paused.has_value()) << paused.error().describe();
  EXPECT_EQ((*paused)["phase"], "Paused");
  const size_t after_pause = phase_events();
  auto again = control("pause");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)["phase"], "Paused");
  EXPECT_EQ(phase_events(), after_pause) << "a repeated pause changes nothing";

  EXPECT_EQ(control("resume").value()["phase"], "Progressing");
  EXPECT_EQ(control("resume").value()["phase"], "Progressing");
  EXPECT_EQ(control("promote").value()["phase"], "Progressing");
  EXPECT_TRUE(latest().promoted);
  EXPECT_EQ(control("abort").value()["phase"], "Aborted");
  EXPECT_EQ(control("abort").value()["phase"], "Aborted");
  EXPECT_TRUE(latest().finished_at.has_value());

  auto refused = control("resume");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_NE(refused.error().message.find("Aborted"), std::string::npos);
  EXPECT_EQ(control("fly").error().code, ErrorCode::kInvalid);
}

TEST_F(RolloutCommandsTest, ResumeOfACanaryPauseSaysToPromote) {
  apply(kShop);
  run_web_members(2, 1);
  apply(with_web_version("2.0"));
  RolloutRecord r = latest();
  r.phase = "CanaryPaused";
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutRollout{r}}}).has_value());
  auto resumed = control("resume");
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ((*resumed)["phase"], "CanaryPaused");
  EXPECT_NE((*resumed)["message"].get<std::string>().find("promote"), std::string::npos);
  EXPECT_EQ(control("promote").value()["phase"], "Progressing");
}

TEST_F(RolloutCommandsTest, NoRolloutIsNotFound) {
  apply(kShop);
  EXPECT_EQ(control("pause").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(service_->rollout_view("shop", {}).error().code, ErrorCode::kNotFound);
}

TEST_F(RolloutCommandsTest, UndoAppliesAnEarlierRevisionAsANewOne) {
  apply(kShop);
  run_web_members(2, 1);
  apply(with_web_version("2.0"));
  run_web_members(2, 2);  // the fleet moved them
  auto undone = service_->undo("shop", std::nullopt, caller_);
  ASSERT_TRUE(undone.has_value()) << undone.error().describe();
  EXPECT_EQ(undone->revision, 3);
  ASSERT_TRUE(undone->rollout);
  EXPECT_EQ(latest().to_revision, 3);
  EXPECT_NE(undone->message.find("undo to revision 1"), std::string::npos) << undone->message;
  const auto manifest = store_->get_revision("shop", 3).value()->manifest_json;
  EXPECT_EQ(manifest, store_->get_revision("shop", 1).value()->manifest_json);

  EXPECT_EQ(service_->undo("shop", 3, caller_).error().code, ErrorCode::kConflict);
  EXPECT_EQ(service_->undo("shop", 42, caller_).error().code, ErrorCode::kNotFound);
}

TEST_F(RolloutCommandsTest, RevisionsThatMembersRunAreKept) {
  apply(kShop);  // revisionHistoryLimit: 3
  run_web_members(2, 1);
  for (int v = 2; v <= 6; ++v) {
    apply(with_web_version(std::to_string(v) + ".0"));
  }
  EXPECT_TRUE(store_->get_revision("shop", 1).value().has_value()) << "members still run revision 1";
  EXPECT_FALSE(store_->get_revision("shop", 2).value().has_value());
}

// The members' counts come from whoever the caller asks (the API: the
// fleet's index), for the rollout's clusters and target revision.
TEST_F(RolloutCommandsTest, ViewShowsEachClustersCountsAsCounted) {
  apply(kShop);
  run_web_members(2, 1);
  apply(with_web_version("2.0"));
  std::vector<std::string> asked_clusters;
  int64_t asked_revision = 0;
  auto view = service_->rollout_view("shop", [&](const std::vector<std::string>& clusters, int64_t revision) {
    asked_clusters = clusters;
    asked_revision = revision;
    return std::map<std::string, ApplicationService::RolloutCounts>{{"web", {1, 2}}};
  });
  ASSERT_TRUE(view.has_value()) << view.error().describe();
  EXPECT_EQ((*view)["phase"], "Progressing");
  EXPECT_EQ(asked_revision, (*view)["targetRevision"]);
  EXPECT_NE(std::find(asked_clusters.begin(), asked_clusters.end(), "web"), asked_clusters.end());
  json web;
  for (const auto& c : (*view)["clusters"]) {
    if (c["path"] == "web") web = c;
  }
  EXPECT_EQ(web["updated"], 1);
  EXPECT_EQ(web["total"], 2);
  EXPECT_EQ(web["available"], 2);
  EXPECT_EQ(web["status"], "Waiting");
  EXPECT_EQ(web["method"], "replace");
}

// docs/operational-state.md, "Ordering of commands": commands are numbered in
// acceptance order, the last one wins, and a superseding maintenance command
// replaces the pending steps (markers) of the one before, except for members
// already handed to their agent.
TEST_F(RolloutCommandsTest, TheLastAcceptedCommandWins) {
  apply(kShop);
  run_web_members(2, 1);
  auto marker = [&](const std::string& path) -> std::string {
    const auto values = store_->list_operational_values("shop").value();
    for (const auto& v : values) {
      if (v.path == path && v.setting == Setting::kMaintenance) {
        return v.value;
      }
    }
    return "none";
  };
  const json off = set({{"path", "web"}, {"autoscaling", "off"}});
  const json on = set({{"path", "web"}, {"autoscaling", "on"}});
  EXPECT_LT(off["seq"].get<int>(), on["seq"].get<int>());
  EXPECT_EQ(view("web", Setting::kAutoscaling).effective, "on");

  set({{"path", "web"}, {"maintenance", "restart"}});
  EXPECT_EQ(marker("web/1"), "restart");
  set({{"path", "web"}, {"maintenance", "replace"}});
  EXPECT_EQ(marker("web/1"), "replace") << "the newer command's steps replace the pending ones";
  EXPECT_EQ(marker("web/2"), "replace");

  MemberRecord busy = store_->get_member("shop", "shop/web/2").value().value();
  busy.state = "Maintenance";  // handed to its agent: it finishes
  ASSERT_TRUE(store_->commit(WriteBatch{{}, {PutMember{busy}}}).has_value());
  set({{"path", "web"}, {"maintenance", "off"}});
  EXPECT_EQ(marker("web/1"), "none") << "cancelled before it started";
  EXPECT_EQ(marker("web/2"), "replace") << "already in maintenance: finishes and is reported";
}

}  // namespace
}  // namespace tranche
