#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "store/store.h"
#include "store_test_util.h"

namespace tranche {
namespace {

using store_test::at;
using store_test::RawDb;
using store_test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Unwraps a result; a failure throws, which gtest reports with the message.
template <class T>
T ok(Result<T> result) {
  if (!result) {
    throw std::runtime_error(result.error().message);
  }
  return std::move(*result);
}

std::unique_ptr<Store> open_store(const std::string& path = ":memory:") {
  return ok(open_sqlite_store(SqliteStoreOptions{path}));
}

CommitResult commit(Store& store, std::vector<Mutation> mutations, std::vector<ExpectApplicationVersion> pre = {}) {
  return ok(store.commit(WriteBatch{std::move(pre), std::move(mutations)}));
}

ApplicationRecord app_record(const std::string& name) { return {name, 1, true, 0, 0, at(1000), at(2000)}; }

EventRecord event(const std::string& app, const std::string& type = "Changed") {
  return {0, at(5000), app, "", "", type, "null", "1", "changed"};
}

AuditRecord audit(const std::string& actor) { return {0, at(6000), actor, "POST /api/v1/tokens", "token x", "201"}; }

std::vector<uint64_t> seqs(const std::vector<EventRecord>& events) {
  std::vector<uint64_t> out;
  for (const EventRecord& e : events) {
    out.push_back(e.seq);
  }
  return out;
}

// One record of every type, written by write_sample and checked by
// expect_sample (in memory and across a reopen).
struct Sample {
  ApplicationRecord app{"shop", 2, false, 77, 5, at(1000), at(2000)};
  RevisionRecord revision{"shop", 2, R"({"name":"shop"})", "alice", "clusters[0].members.max: 2 -> 4", at(3000)};
  OperationalValueRecord plain{"shop",  "web",   Setting::kAutohealing, "restart", std::nullopt, std::nullopt,
                               "alice", at(4000)};
  OperationalValueRecord boxed{"shop",   "web/3", Setting::kMaintenance, "restart", at(9000), "off", "bob",
                               at(4001), true};
  MemberRecord member{"web/3",   "shop",   "web",   3,    "h-01",
                      "Running", 2,        "1.4.2", 4242, {{"http", 8080}, {"admin", 9090}},
                      at(4500),  at(1000), at(4600)};
  MemberRecord bare{"backend/db/0", "shop", "backend/db", 0,        "",      "Pending", 2, "",
                    std::nullopt,   {},     std::nullopt, at(1000), at(1000)};
  HostRecord host{"h-01", "node-01.example.net", "Ready", {{"zone", "a"}, {"disk", "ssd"}}, 32, "hash", at(100),
                  at(200)};
  OperationRecord operation{"op-1",    "shop", 5,       "apply",  R"({"dryRun":false})",
                            "Running", "",     "alice", at(1000), at(1100)};
  TokenRecord scoped{"abc", "ci", "hash1", Role::kOperator, "shop", at(10)};
  TokenRecord global{"def", "root", "hash2", Role::kAdmin, std::nullopt, at(11)};
  AuditRecord audit{0, at(1200), "alice", "PUT /api/v1/applications/shop", "shop", "200"};
  EventRecord event{0,      at(1300), "shop", "web", "web/3", "MemberStateChanged", R"("Starting")", R"("Running")",
                    "ready"};
  ClusterScaleRecord scale{"shop", "backend/db", 5, 3, "cpu 82% > 70% for 5m", at(1400)};
  RolloutRecord rollout{.app = "shop",
                        .id = 4,
                        .from_revision = 1,
                        .to_revision = 2,
                        .target_revision = 1,
                        .phase = "RollingBack",
                        .reason = "2 failures exceed maxFailures 1",
                        .promoted = true,
                        .progress_json = R"({"web":{"failed":["shop/web/3"],"failures":2,"status":"Progressing"}})",
                        .author = "alice",
                        .created_at = at(1500),
                        .updated_at = at(1600),
                        .finished_at = at(1700),
                        .version = 0};
};

void write_sample(Store& store, const Sample& s) {
  const CommitResult result =
      commit(store, {PutApplication{s.app}, PutRevision{s.revision}, PutOperationalValue{s.plain},
                     PutOperationalValue{s.boxed}, PutMember{s.member}, PutMember{s.bare}, PutHost{s.host},
                     PutOperation{s.operation}, PutToken{s.scoped}, PutToken{s.global}, AppendAudit{s.audit},
                     AppendEvent{s.event}, PutClusterScale{s.scale}, PutRollout{s.rollout}});
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{1});
}

void expect_sample(Store& store, Sample s) {
  s.app.version = 1;  // set by the store, whatever the record said
  s.audit.id = 1;
  s.event.seq = 1;
  s.rollout.version = 1;
  EXPECT_EQ(ok(store.get_application("shop")), s.app);
  EXPECT_THAT(ok(store.list_applications()), ElementsAre(s.app));
  EXPECT_EQ(ok(store.get_revision("shop", 2)), s.revision);
  EXPECT_EQ(ok(store.get_revision("shop", 1)), std::nullopt);
  EXPECT_THAT(ok(store.list_operational_values("shop")), ElementsAre(s.plain, s.boxed));
  EXPECT_EQ(ok(store.get_member("shop", "web/3")), s.member);
  EXPECT_EQ(ok(store.get_member("shop", "backend/db/0")), s.bare);
  EXPECT_EQ(ok(store.get_host("h-01")), s.host);
  EXPECT_THAT(ok(store.list_hosts()), ElementsAre(s.host));
  EXPECT_EQ(ok(store.get_operation("op-1")), s.operation);
  EXPECT_EQ(ok(store.get_token("abc")), s.scoped);
  EXPECT_EQ(ok(store.get_token("def")), s.global);
  EXPECT_EQ(ok(store.get_token("nope")), std::nullopt);
  EXPECT_THAT(ok(store.list_audit(10)), ElementsAre(s.audit));
  EXPECT_THAT(ok(store.list_events({})), ElementsAre(s.event));
  EXPECT_EQ(ok(store.last_event_seq()), 1u);
  EXPECT_THAT(ok(store.list_cluster_scales("shop")), ElementsAre(s.scale));
  EXPECT_EQ(ok(store.latest_rollout("shop")), s.rollout);
}

TEST(SqliteStore, RoundTripsEveryRecordType) {
  auto store = open_store();
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(ok(store->get_application("shop")), std::nullopt);
  EXPECT_EQ(ok(store->last_event_seq()), 0u);
  Sample sample;
  write_sample(*store, sample);
  expect_sample(*store, sample);
}

TEST(SqliteStore, ReopeningAFileKeepsEverything) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Sample sample;
  {
    auto store = open_store(path);
    write_sample(*store, sample);
  }
  auto store = open_store(path);
  expect_sample(*store, sample);
  EXPECT_EQ(commit(*store, {AppendEvent{event("shop")}}).event_seqs, std::vector<uint64_t>{2});
}

TEST(SqliteStore, PutApplicationBumpsTheVersion) {
  auto store = open_store();
  ApplicationRecord app = app_record("shop");
  app.version = 42;  // ignored
  commit(*store, {PutApplication{app}});
  EXPECT_EQ(ok(store->get_application("shop"))->version, 1);
  app.current_revision = 2;
  commit(*store, {PutApplication{app}}, {{"shop", 1}});
  auto stored = ok(store->get_application("shop"));
  EXPECT_EQ(stored->version, 2);
  EXPECT_EQ(stored->current_revision, 2);
}

TEST(SqliteStore, FailedPreconditionWritesNothing) {
  auto store = open_store();
  commit(*store, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}});

  RevisionRecord revision{"shop", 2, "{}", "alice", "", at(1)};
  auto stale = store->commit(WriteBatch{{{"shop", 3}},
                                        {PutApplication{app_record("shop")}, PutRevision{revision},
                                         AppendEvent{event("shop")}, AppendAudit{audit("alice")}}});
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  EXPECT_THAT(stale.error().message, HasSubstr("shop"));
  EXPECT_THAT(stale.error().message, HasSubstr("version 1"));
  EXPECT_THAT(stale.error().message, HasSubstr("version 3"));

  EXPECT_EQ(ok(store->get_application("shop"))->version, 1);
  EXPECT_EQ(ok(store->get_revision("shop", 2)), std::nullopt);
  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u));
  EXPECT_TRUE(ok(store->list_audit(10)).empty());
  EXPECT_EQ(ok(store->last_event_seq()), 1u);
  // The failed batch consumed no seq.
  EXPECT_EQ(commit(*store, {AppendEvent{event("shop")}}, {{"shop", 1}}).event_seqs, std::vector<uint64_t>{2});
}

TEST(SqliteStore, VersionZeroMeansTheApplicationMustNotExist) {
  auto store = open_store();
  commit(*store, {PutApplication{app_record("shop")}}, {{"shop", 0}});
  auto again = store->commit(WriteBatch{{{"shop", 0}}, {PutApplication{app_record("shop")}}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_THAT(again.error().message, HasSubstr("must not exist"));

  auto missing = store->commit(WriteBatch{{{"cart", 1}}, {PutApplication{app_record("cart")}}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kConflict);
  EXPECT_THAT(missing.error().message, HasSubstr("cart"));
  EXPECT_THAT(missing.error().message, HasSubstr("does not exist"));
  EXPECT_EQ(ok(store->get_application("cart")), std::nullopt);
}

TEST(SqliteStore, DeletesRevisionsAndOperationalValues) {
  auto store = open_store();
  OperationalValueRecord value{"shop", "web", Setting::kAutoscaling, "off", std::nullopt, std::nullopt, "a", at(1)};
  OperationalValueRecord other = value;
  other.setting = Setting::kAutohealing;
  commit(*store, {PutRevision{{"shop", 1, "{}", "a", "", at(1)}}, PutRevision{{"shop", 2, "{}", "a", "", at(2)}},
                  PutOperationalValue{value}, PutOperationalValue{other}});
  commit(*store, {DeleteRevision{"shop", 1}, DeleteOperationalValue{"shop", "web", Setting::kAutoscaling}});
  EXPECT_EQ(ok(store->get_revision("shop", 1)), std::nullopt);
  EXPECT_NE(ok(store->get_revision("shop", 2)), std::nullopt);
  EXPECT_THAT(ok(store->list_operational_values("shop")), ElementsAre(other));
}

// A compare-and-delete (issue 12): clearing the marker a maintenance step
// acted on never deletes a newer command's.
TEST(SqliteStore, DeletesAnOperationalValueOnlyIfSetNoLaterThanAsked) {
  auto store = open_store();
  OperationalValueRecord marker{"shop", "web/1", Setting::kMaintenance, "replace", std::nullopt, std::nullopt, "a",
                                at(5)};
  commit(*store, {PutOperationalValue{marker}});
  commit(*store, {DeleteOperationalValue{"shop", "web/1", Setting::kMaintenance, at(4)}});
  EXPECT_THAT(ok(store->list_operational_values("shop")), ElementsAre(marker)) << "set after: kept";
  commit(*store, {DeleteOperationalValue{"shop", "web/1", Setting::kMaintenance, at(5)}});
  EXPECT_TRUE(ok(store->list_operational_values("shop")).empty()) << "set at or before: deleted";
}

TEST(SqliteStore, ListsAnApplicationsOperationsInAStatusInSequence) {
  auto store = open_store();
  OperationRecord first{"op-1", "shop", 1, "operational-state", "{}", "Running", "", "a", at(1), at(1)};
  OperationRecord second{"op-2", "shop", 2, "operational-state", "{}", "Succeeded", "", "a", at(2), at(2)};
  OperationRecord third{"op-3", "shop", 3, "operational-state", "{}", "Running", "", "a", at(3), at(3)};
  OperationRecord elsewhere{"op-4", "cart", 1, "operational-state", "{}", "Running", "", "a", at(3), at(3)};
  commit(*store, {PutOperation{third}, PutOperation{second}, PutOperation{first}, PutOperation{elsewhere}});
  EXPECT_THAT(ok(store->list_operations("shop", "Running")), ElementsAre(first, third));
  EXPECT_THAT(ok(store->list_operations("shop", "Succeeded")), ElementsAre(second));
}

TEST(SqliteStore, PutsReplaceByKey) {
  auto store = open_store();
  OperationalValueRecord value{"shop", "web", Setting::kAutoscaling, "off", at(100), "on", "a", at(1)};
  commit(*store, {PutOperationalValue{value}});
  value.value = "on";
  value.expires_at.reset();
  value.previous_value.reset();
  commit(*store, {PutOperationalValue{value}});
  EXPECT_THAT(ok(store->list_operational_values("shop")), ElementsAre(value));

  TokenRecord token{"abc", "ci", "h", Role::kViewer, std::nullopt, at(1)};
  commit(*store, {PutToken{token}});
  token.role = Role::kAdmin;
  commit(*store, {PutToken{token}});
  EXPECT_EQ(ok(store->get_token("abc")), token);
}

ClusterScaleRecord scale(const std::string& app, const std::string& cluster, int64_t desired) {
  return {app, cluster, desired, 2, "cpu above target", at(7000)};
}

TEST(SqliteStore, ClusterScalesRoundTrip) {
  auto store = open_store();
  EXPECT_TRUE(ok(store->list_cluster_scales("shop")).empty());
  const ClusterScaleRecord web = scale("shop", "web", 4);
  const ClusterScaleRecord db = scale("shop", "backend/db", 3);
  const ClusterScaleRecord cart = scale("cart", "web", 9);
  commit(*store, {PutClusterScale{web}, PutClusterScale{db}, PutClusterScale{cart}});
  // Ordered by cluster, one application at a time.
  EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(db, web));
  EXPECT_THAT(ok(store->list_cluster_scales("cart")), ElementsAre(cart));
  EXPECT_TRUE(ok(store->list_cluster_scales("nope")).empty());

  // A put replaces the decision for the same (app, cluster).
  ClusterScaleRecord lower = web;
  lower.desired = 2;
  lower.base_desired = 3;
  lower.reason = "cpu below target";
  lower.decided_at = at(8000);
  commit(*store, {PutClusterScale{lower}});
  EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(db, lower));

  // Deleting removes exactly one; deleting a missing one is not an error.
  commit(*store, {DeleteClusterScale{"shop", "backend/db"}, DeleteClusterScale{"shop", "missing"}});
  EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(lower));
  EXPECT_THAT(ok(store->list_cluster_scales("cart")), ElementsAre(cart));
}

TEST(SqliteStore, FailedPreconditionWritesNoClusterScale) {
  auto store = open_store();
  const ClusterScaleRecord kept = scale("shop", "web", 4);
  commit(*store, {PutApplication{app_record("shop")}, PutClusterScale{kept}});

  auto stale = store->commit(WriteBatch{{{"shop", 7}},
                                        {PutClusterScale{scale("shop", "web", 6)},
                                         PutClusterScale{scale("shop", "db", 2)}, DeleteClusterScale{"shop", "web"}}});
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(kept));

  auto deleting = store->commit(WriteBatch{{{"shop", 0}}, {DeleteClusterScale{"shop", "web"}}});
  ASSERT_FALSE(deleting);
  EXPECT_EQ(deleting.error().code, ErrorCode::kConflict);
  EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(kept));
}

RolloutRecord rollout(const std::string& app, int64_t id, int64_t version = 0) {
  return {.app = app,
          .id = id,
          .from_revision = 1,
          .to_revision = 2,
          .target_revision = 2,
          .phase = "Progressing",
          .reason = "revision 2 applied",
          .promoted = false,
          .progress_json = "{}",
          .author = "alice",
          .created_at = at(8000),
          .updated_at = at(8000),
          .finished_at = std::nullopt,
          .version = version};
}

TEST(SqliteStore, RolloutsRoundTripEveryField) {
  auto store = open_store();
  // Unfinished, not promoted.
  const RolloutRecord running{.app = "shop",
                              .id = 7,
                              .from_revision = 3,
                              .to_revision = 4,
                              .target_revision = 4,
                              .phase = "CanaryPaused",
                              .reason = "canary of shop/web is up: waiting for promote",
                              .promoted = false,
                              .progress_json = R"({"backend/db":{"failed":[],"failures":0,"status":"Waiting"},)"
                                               R"("web":{"failed":[],"failures":0,"status":"CanaryPaused"}})",
                              .author = "bob",
                              .created_at = at(8100),
                              .updated_at = at(8200),
                              .finished_at = std::nullopt,
                              .version = 0};
  // Finished, promoted, rolled back to a revision of its own.
  const RolloutRecord rolled_back{
      .app = "cart",
      .id = 2,
      .from_revision = 5,
      .to_revision = 6,
      .target_revision = 7,
      .phase = "Failed",
      .reason = "rolled back: 3 failures exceed maxFailures 2",
      .promoted = true,
      .progress_json = R"({"api":{"failed":["cart/api/0","cart/api/2"],"failures":3,"status":"Done"}})",
      .author = "ci",
      .created_at = at(8300),
      .updated_at = at(8400),
      .finished_at = at(8500),
      .version = 0};
  commit(*store, {PutRollout{running}, PutRollout{rolled_back}});

  RolloutRecord expected = running;
  expected.version = 1;
  EXPECT_EQ(ok(store->latest_rollout("shop")), expected);
  expected = rolled_back;
  expected.version = 1;
  EXPECT_EQ(ok(store->latest_rollout("cart")), expected);

  // A put replaces every field, finished_at from null to set and back.
  RolloutRecord finished = running;
  finished.from_revision = 13;
  finished.to_revision = 14;
  finished.target_revision = 12;
  finished.phase = "Aborted";
  finished.reason = "aborted by alice";
  finished.promoted = true;
  finished.progress_json = R"({"web":{"failed":[],"failures":1,"status":"Done"}})";
  finished.author = "alice";
  finished.created_at = at(9100);
  finished.updated_at = at(9200);
  finished.finished_at = at(9300);
  finished.version = 1;
  commit(*store, {PutRollout{finished}});
  finished.version = 2;
  EXPECT_EQ(ok(store->latest_rollout("shop")), finished);

  RolloutRecord reopened = finished;
  reopened.finished_at.reset();
  reopened.promoted = false;
  commit(*store, {PutRollout{reopened}});
  reopened.version = 3;
  EXPECT_EQ(ok(store->latest_rollout("shop")), reopened);
}

TEST(SqliteStore, LatestRolloutIsTheHighestIdOfTheApplication) {
  auto store = open_store();
  EXPECT_EQ(ok(store->latest_rollout("shop")), std::nullopt);
  commit(*store, {PutRollout{rollout("shop", 9)}, PutRollout{rollout("shop", 10)}, PutRollout{rollout("shop", 2)},
                  PutRollout{rollout("cart", 1)}, PutRollout{rollout("shop-eu", 99)}});
  EXPECT_EQ(ok(store->latest_rollout("shop"))->id, 10);  // numerically highest, not the last written
  EXPECT_EQ(ok(store->latest_rollout("cart"))->id, 1);
  EXPECT_EQ(ok(store->latest_rollout("shop-eu"))->id, 99);
  EXPECT_EQ(ok(store->latest_rollout("blog")), std::nullopt);
  EXPECT_EQ(ok(store->latest_rollout("")), std::nullopt);

  // Also when the newest one is finished.
  RolloutRecord done = rollout("cart", 1, 1);
  done.phase = "Succeeded";
  done.finished_at = at(9000);
  commit(*store, {PutRollout{done}});
  EXPECT_EQ(ok(store->latest_rollout("cart"))->phase, "Succeeded");
}

TEST(SqliteStore, PutRolloutWithAWrongVersionWritesNothing) {
  auto store = open_store();
  const ClusterScaleRecord kept = scale("shop", "web", 4);
  commit(*store, {PutApplication{app_record("shop")}, PutClusterScale{kept}, PutRollout{rollout("shop", 1)},
                  AppendEvent{event("shop")}});
  const RolloutRecord stored = rollout("shop", 1, 1);
  ASSERT_EQ(ok(store->latest_rollout("shop")), stored);

  for (int64_t wrong : {int64_t{0}, int64_t{2}}) {
    RolloutRecord stale = rollout("shop", 1, wrong);
    stale.phase = "Paused";
    // The application's precondition holds; the rollout's version does not.
    // Mutations before and after the rollout are all undone.
    auto done = store->commit(WriteBatch{
        {{"shop", 1}},
        {PutApplication{app_record("shop")}, PutRevision{{"shop", 2, "{}", "alice", "", at(1)}},
         AppendEvent{event("shop")}, PutClusterScale{scale("shop", "web", 6)}, PutRollout{rollout("shop", 2)},
         PutRollout{stale}, AppendAudit{audit("alice")}, AppendEvent{event("shop")}, PutRollout{rollout("cart", 1)}}});
    ASSERT_FALSE(done) << wrong;
    EXPECT_EQ(done.error().code, ErrorCode::kConflict);
    EXPECT_THAT(done.error().message, HasSubstr("rollout 1 of shop"));
    EXPECT_THAT(done.error().message, HasSubstr("at version 1"));
    EXPECT_THAT(done.error().message, HasSubstr("expected version " + std::to_string(wrong)));

    EXPECT_EQ(ok(store->latest_rollout("shop")), stored);
    EXPECT_EQ(ok(store->latest_rollout("cart")), std::nullopt);
    EXPECT_EQ(ok(store->get_application("shop"))->version, 1);
    EXPECT_EQ(ok(store->get_revision("shop", 2)), std::nullopt);
    EXPECT_THAT(ok(store->list_cluster_scales("shop")), ElementsAre(kept));
    EXPECT_TRUE(ok(store->list_audit(10)).empty());
    EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u));
    EXPECT_EQ(ok(store->last_event_seq()), 1u);
  }
  // The failed batches consumed no seq.
  EXPECT_EQ(commit(*store, {AppendEvent{event("shop")}}).event_seqs, std::vector<uint64_t>{2});
}

TEST(SqliteStore, ANewRolloutNeedsVersionZero) {
  auto store = open_store();
  auto done = store->commit(WriteBatch{{}, {PutRollout{rollout("shop", 1, 1)}, AppendEvent{event("shop")}}});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, ErrorCode::kConflict);
  EXPECT_THAT(done.error().message, HasSubstr("rollout 1 of shop is at version 0"));
  EXPECT_EQ(ok(store->latest_rollout("shop")), std::nullopt);
  EXPECT_EQ(ok(store->last_event_seq()), 0u);

  commit(*store, {PutRollout{rollout("shop", 1, 0)}});
  EXPECT_EQ(ok(store->latest_rollout("shop"))->version, 1);
  // Another id of the same application is new again.
  commit(*store, {PutRollout{rollout("shop", 2, 0)}});
  EXPECT_EQ(ok(store->latest_rollout("shop")), rollout("shop", 2, 1));
}

TEST(SqliteStore, APutRolloutStoresVersionPlusOne) {
  auto store = open_store();
  commit(*store, {PutRollout{rollout("shop", 1, 0)}});
  EXPECT_EQ(ok(store->latest_rollout("shop"))->version, 1);

  RolloutRecord next = rollout("shop", 1, 1);
  next.phase = "Paused";
  commit(*store, {PutRollout{next}});
  next.version = 2;
  EXPECT_EQ(ok(store->latest_rollout("shop")), next);

  // A writer that read version 1 has lost the race.
  RolloutRecord late = rollout("shop", 1, 1);
  late.phase = "Succeeded";
  auto lost = store->commit(WriteBatch{{}, {PutRollout{late}}});
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, ErrorCode::kConflict);
  EXPECT_EQ(ok(store->latest_rollout("shop")), next);

  commit(*store, {PutRollout{next}});
  EXPECT_EQ(ok(store->latest_rollout("shop"))->version, 3);
}

TEST(SqliteStore, ListRevisionsIsNewestFirst) {
  auto store = open_store();
  commit(*store, {PutRevision{{"shop", 1, "{}", "a", "", at(1)}}, PutRevision{{"shop", 3, "{}", "a", "", at(3)}},
                  PutRevision{{"shop", 2, "{}", "a", "", at(2)}}, PutRevision{{"cart", 9, "{}", "a", "", at(9)}}});
  std::vector<int64_t> numbers;
  for (const RevisionRecord& r : ok(store->list_revisions("shop"))) {
    numbers.push_back(r.number);
  }
  EXPECT_THAT(numbers, ElementsAre(3, 2, 1));
}

TEST(SqliteStore, ListAuditIsNewestLastWithALimit) {
  auto store = open_store();
  for (const char* actor : {"a", "b", "c", "d", "e"}) {
    commit(*store, {AppendAudit{audit(actor)}});
  }
  auto describe = [](const std::vector<AuditRecord>& rows) {
    std::vector<std::string> out;
    for (const AuditRecord& r : rows) {
      out.push_back(std::to_string(r.id) + r.actor);
    }
    return out;
  };
  EXPECT_THAT(describe(ok(store->list_audit(3))), ElementsAre("3c", "4d", "5e"));
  EXPECT_THAT(describe(ok(store->list_audit(100))), ElementsAre("1a", "2b", "3c", "4d", "5e"));
  EXPECT_TRUE(ok(store->list_audit(0)).empty());
}

TEST(SqliteStore, ListEventsFilters) {
  auto store = open_store();
  commit(*store, {AppendEvent{event("shop")}, AppendEvent{event("cart")}, AppendEvent{event("shop")}});
  commit(*store, {AppendEvent{event("cart")}, AppendEvent{event("shop")}});

  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u, 2u, 3u, 4u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.after_seq = 2}))), ElementsAre(3u, 4u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.app = "shop"}))), ElementsAre(1u, 3u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.after_seq = 1, .app = "shop"}))), ElementsAre(3u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.after_seq = 1, .app = "cart", .limit = 1}))), ElementsAre(2u));
  EXPECT_THAT(seqs(ok(store->list_events({.limit = 2}))), ElementsAre(1u, 2u));
  EXPECT_TRUE(ok(store->list_events({.after_seq = 5})).empty());
  EXPECT_TRUE(ok(store->list_events({.app = "none"})).empty());
}

TEST(SqliteStore, ListEventsNewestFirstTakesTheNewestWithinTheLimit) {
  auto store = open_store();
  commit(*store, {AppendEvent{event("shop")}, AppendEvent{event("cart")}, AppendEvent{event("shop")}});
  commit(*store, {AppendEvent{event("cart")}, AppendEvent{event("shop")}, AppendEvent{event("shop")}});

  EXPECT_THAT(seqs(ok(store->list_events({.app = "shop", .limit = 2, .newest_first = true}))), ElementsAre(6u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.app = "cart", .limit = 10, .newest_first = true}))), ElementsAre(4u, 2u));
  EXPECT_THAT(seqs(ok(store->list_events({.limit = 3, .newest_first = true}))), ElementsAre(6u, 5u, 4u));
  EXPECT_THAT(seqs(ok(store->list_events({.after_seq = 4, .limit = 10, .newest_first = true}))), ElementsAre(6u, 5u));
  EXPECT_THAT(seqs(ok(store->list_events({.after_seq = 3, .app = "shop", .limit = 10, .newest_first = true}))),
              ElementsAre(6u, 5u));
  EXPECT_TRUE(ok(store->list_events({.app = "none", .newest_first = true})).empty());
}

TEST(SqliteStore, ListExpiringValues) {
  auto store = open_store();
  auto boxed = [](std::string app, std::string path, int64_t expires) {
    return PutOperationalValue{{app, path, Setting::kMaintenance, "on", at(expires), std::nullopt, "a", at(1)}};
  };
  commit(*store,
         {boxed("shop", "web", 300), boxed("cart", "", 100), boxed("shop", "db", 200),
          PutOperationalValue{{"shop", "", Setting::kAutoscaling, "off", std::nullopt, std::nullopt, "a", at(1)}}});
  auto describe = [](const std::vector<OperationalValueRecord>& rows) {
    std::vector<std::string> out;
    for (const OperationalValueRecord& r : rows) {
      out.push_back(r.app + "/" + r.path);
    }
    return out;
  };
  EXPECT_TRUE(ok(store->list_expiring_values(at(99))).empty());
  EXPECT_THAT(describe(ok(store->list_expiring_values(at(200)))), ElementsAre("cart/", "shop/db"));
  EXPECT_THAT(describe(ok(store->list_expiring_values(at(1'000'000)))), ElementsAre("cart/", "shop/db", "shop/web"));
}

TEST(SqliteStore, ListMembersFilters) {
  auto store = open_store();
  auto member = [](std::string app, std::string cluster, int64_t ordinal, std::string state) {
    return PutMember{{cluster + "/" + std::to_string(ordinal),
                      app,
                      cluster,
                      ordinal,
                      "",
                      state,
                      1,
                      "",
                      std::nullopt,
                      {},
                      std::nullopt,
                      at(1),
                      at(1)}};
  };
  commit(*store, {member("shop", "web", 1, "Running"), member("shop", "web", 0, "Failed"),
                  member("shop", "backend/db", 0, "Running"), member("cart", "web", 0, "Running")});
  auto ids = [&](MemberQuery q) {
    std::vector<std::string> out;
    for (const MemberRecord& m : ok(store->list_members(q))) {
      out.push_back(m.app + ":" + m.id);
    }
    return out;
  };
  EXPECT_THAT(ids({}), ElementsAre("cart:web/0", "shop:backend/db/0", "shop:web/0", "shop:web/1"));
  EXPECT_THAT(ids({.app = "shop"}), ElementsAre("shop:backend/db/0", "shop:web/0", "shop:web/1"));
  EXPECT_THAT(ids({.app = "shop", .cluster = "web"}), ElementsAre("shop:web/0", "shop:web/1"));
  EXPECT_THAT(ids({.cluster = "web", .state = "Running"}), ElementsAre("cart:web/0", "shop:web/1"));
  EXPECT_THAT(ids({.app = "shop", .cluster = "web", .state = "Failed"}), ElementsAre("shop:web/0"));
  // Oldest first within a cluster (the fleet's rosters rely on it), not in
  // the order of ids.
  commit(*store, {member("cart", "web", 10, "Running"), member("cart", "web", 2, "Running")});
  EXPECT_THAT(ids({.app = "cart"}), ElementsAre("cart:web/0", "cart:web/2", "cart:web/10"));
}

// A member put again is written in place (an upsert): what is read back is
// the second record whole, its cleared fields null again, and the (app,
// cluster) index still finds it.
TEST(SqliteStore, APutMemberReplacesEveryFieldOfTheMember) {
  auto store = open_store();
  MemberRecord first{"shop/web/3", "shop", "web",  3, "h1", "Active", 1, "1.0.0", 4242, {{"http", 8080}},
                     at(5),        at(1),  at(2)};
  commit(*store, {PutMember{first}});
  MemberRecord second{"shop/web/3", "shop",   "web",         3,  "h2", "Maintenance", 2, "2.0.0", std::nullopt, {},
                      std::nullopt, at(1), at(9)};
  commit(*store, {PutMember{second}});
  EXPECT_EQ(ok(store->get_member("shop", "shop/web/3")), second);
  EXPECT_THAT(ok(store->list_members({.app = "shop", .cluster = "web"})), ElementsAre(second));
}

TEST(SqliteStore, HasAdminTokenCountsOnlyUnscopedAdmins) {
  auto store = open_store();
  EXPECT_FALSE(ok(store->has_admin_token()));
  commit(*store, {PutToken{{"a", "op", "h", Role::kOperator, std::nullopt, at(1)}},
                  PutToken{{"b", "shop-admin", "h", Role::kAdmin, "shop", at(1)}}});
  EXPECT_FALSE(ok(store->has_admin_token()));
  commit(*store, {PutToken{{"c", "root", "h", Role::kAdmin, std::nullopt, at(1)}}});
  EXPECT_TRUE(ok(store->has_admin_token()));
}

TEST(SqliteStore, EventSeqsStayGapFreeUnderConcurrentWriters) {
  TempDir dir;
  auto store = open_store(dir.file("store.db"));
  constexpr int kThreads = 8;
  constexpr int kCommits = 200;

  struct Watcher {
    std::atomic<uint64_t> last{0};
    std::atomic<int> calls{0};
    std::atomic<int> decreases{0};
    void see(uint64_t seq) {
      if (seq < last.exchange(seq)) {
        ++decreases;
      }
      ++calls;
    }
  };
  Watcher plain;
  Watcher reading;
  std::atomic<int> stale_reads{0};
  store->watch([&](uint64_t seq) { plain.see(seq); });
  store->watch([&](uint64_t seq) {
    reading.see(seq);
    auto stored = store->last_event_seq();  // callbacks may read
    if (!stored || *stored < seq) {
      ++stale_reads;
    }
  });

  std::mutex failures_mu;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCommits; ++i) {
        WriteBatch batch;
        const int events = 1 + (t + i) % 3;
        for (int e = 0; e < events; ++e) {
          batch.mutations.push_back(AppendEvent{event("app" + std::to_string(t))});
        }
        auto done = store->commit(batch);
        std::lock_guard lock(failures_mu);
        if (!done) {
          failures.push_back(done.error().message);
        } else if (done->event_seqs.size() != static_cast<size_t>(events) ||
                   done->event_seqs.back() != done->event_seqs.front() + events - 1) {
          failures.push_back("a batch's seqs are not consecutive");
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  ASSERT_THAT(failures, ::testing::IsEmpty());

  uint64_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kCommits; ++i) {
      total += 1 + (t + i) % 3;
    }
  }
  const auto events = ok(store->list_events({.limit = 1'000'000}));
  ASSERT_EQ(events.size(), total);
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, i + 1);
  }
  EXPECT_EQ(ok(store->last_event_seq()), total);
  for (const Watcher* w : {&plain, &reading}) {
    EXPECT_EQ(w->calls, kThreads * kCommits);
    EXPECT_EQ(w->decreases, 0);
    EXPECT_EQ(w->last, total);
  }
  EXPECT_EQ(stale_reads, 0);
}

TEST(SqliteStore, WatchAndUnwatch) {
  auto store = open_store();
  std::vector<uint64_t> first;
  std::vector<uint64_t> second;
  const uint64_t a = store->watch([&](uint64_t seq) { first.push_back(seq); });
  uint64_t b = 0;
  b = store->watch([&](uint64_t seq) {
    second.push_back(seq);
    store->unwatch(b);  // from inside its own callback
  });
  commit(*store, {PutApplication{app_record("shop")}});  // no events: no call
  commit(*store, {AppendEvent{event("shop")}, AppendEvent{event("shop")}});
  store->unwatch(a);
  commit(*store, {AppendEvent{event("shop")}});
  EXPECT_THAT(first, ElementsAre(2u));
  EXPECT_THAT(second, ElementsAre(2u));
}

TEST(SqliteStore, EventSeqsAreNeverReusedAfterPruning) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto store = open_store(path);
  commit(*store, {AppendEvent{event("shop")}, AppendEvent{event("shop")}, AppendEvent{event("shop")}});
  RawDb(path).exec("DELETE FROM events");  // what retention will do
  EXPECT_EQ(commit(*store, {AppendEvent{event("shop")}}).event_seqs, std::vector<uint64_t>{4});
  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(4u));
}

TEST(SqliteStore, AFailureInsideABatchWritesNothing) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto store = open_store(path);
  commit(*store, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}});
  // Make the medium fail half-way through the next batch.
  RawDb(path).refuse_inserts("audit");

  auto done =
      store->commit(WriteBatch{{{"shop", 1}},
                               {PutApplication{app_record("shop")}, PutRevision{{"shop", 2, "{}", "a", "", at(1)}},
                                AppendEvent{event("shop")}, AppendAudit{audit("alice")}, AppendEvent{event("shop")}}});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(done.error().message, HasSubstr("simulated write failure"));
  EXPECT_EQ(ok(store->get_application("shop"))->version, 1);
  EXPECT_EQ(ok(store->get_revision("shop", 2)), std::nullopt);
  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u));
  EXPECT_EQ(ok(store->last_event_seq()), 1u);

  RawDb(path).allow_inserts();
  EXPECT_EQ(commit(*store, {AppendEvent{event("shop")}}).event_seqs, std::vector<uint64_t>{2});
}

// The fleet's group commit: one transaction, each batch under a savepoint.
TEST(SqliteStore, AGroupRejectsOnlyTheBatchWhoseConditionFails) {
  auto store = open_store();
  commit(*store, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}});
  MemberRecord member{};
  member.id = "shop/web/1";
  member.app = "shop";
  member.cluster = "web";
  member.state = "Active";
  std::vector<uint64_t> watched;
  store->watch([&](uint64_t seq) { watched.push_back(seq); });

  auto results = store->commit_group({
      WriteBatch{{}, {AppendEvent{event("shop", "First")}}},
      WriteBatch{{{"shop", 7}}, {PutMember{member}, AppendEvent{event("shop", "Stale")}}},
      WriteBatch{{{"shop", 1}}, {AppendEvent{event("shop", "Third")}, AppendEvent{event("shop", "Fourth")}}},
  });

  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0]);
  EXPECT_EQ(results[0]->event_seqs, std::vector<uint64_t>{2});
  ASSERT_FALSE(results[1]);
  EXPECT_EQ(results[1].error().code, ErrorCode::kConflict);
  ASSERT_TRUE(results[2]);
  EXPECT_EQ(results[2]->event_seqs, (std::vector<uint64_t>{3, 4}));  // the rejected batch gave its seq back
  EXPECT_EQ(ok(store->get_member("shop", "shop/web/1")), std::nullopt);
  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u, 2u, 3u, 4u));
  EXPECT_EQ(ok(store->last_event_seq()), 4u);
  EXPECT_THAT(watched, ElementsAre(4u));  // one notification for the group
}

TEST(SqliteStore, AFailureOfTheMediumFailsTheWholeGroup) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto store = open_store(path);
  commit(*store, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}});
  RawDb(path).refuse_inserts("audit");

  auto results = store->commit_group({WriteBatch{{}, {AppendEvent{event("shop")}}},
                                      WriteBatch{{}, {AppendAudit{audit("alice")}}},
                                      WriteBatch{{}, {AppendEvent{event("shop")}}}});

  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  }
  EXPECT_THAT(seqs(ok(store->list_events({}))), ElementsAre(1u));
  EXPECT_EQ(ok(store->last_event_seq()), 1u);
}

TEST(SqliteStore, AReadOnlyFileMakesCommitUnavailable) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  {
    auto store = open_store(path);
    commit(*store, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}});
  }
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  if (const int fd = ::open(path.c_str(), O_WRONLY); fd >= 0) {
    close(fd);
    GTEST_SKIP() << "this user can write a 0444 file (root?), so SQLite would not see a read-only database; "
                    "AFailureInsideABatchWritesNothing covers the error path";
  }
  auto store = open_store(path);
  auto done = store->commit(WriteBatch{{}, {PutApplication{app_record("shop")}, AppendEvent{event("shop")}}});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(done.error().message, HasSubstr("readonly"));
  EXPECT_EQ(ok(store->get_application("shop"))->version, 1);
  EXPECT_EQ(ok(store->last_event_seq()), 1u);
}

TEST(SqliteStore, UnopenableFileIsUnavailable) {
  TempDir dir;
  auto store = open_sqlite_store({dir.file("missing-dir/store.db")});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("missing-dir/store.db"));
}

// Garbage in a table's pages (a disk fault, a bad copy) used to open fine,
// since opening reads only the schema and meta rows; every later read of
// that table failed (the reconciler's, ten times a second). PRAGMA
// quick_check refuses it at open, naming the file and what is wrong.
TEST(SqliteStore, ADamagedFileIsRefusedAtOpen) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  {
    auto store = open_store(path);
    for (int i = 0; i < 20; ++i) {
      commit(*store, {PutApplication{app_record("app-" + std::to_string(i))}});
    }
  }
  int64_t page_size = 0;
  int64_t root = 0;
  {
    RawDb raw(path);
    page_size = std::stoll(raw.query("PRAGMA page_size"));
    root = std::stoll(raw.query("SELECT rootpage FROM sqlite_master WHERE name = 'applications'"));
  }
  ASSERT_GT(root, 1);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp((root - 1) * page_size);
    const std::string garbage(static_cast<size_t>(page_size), '\xa5');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    ASSERT_TRUE(file.good());
  }
  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store) << "a damaged store opened";
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr(path + " is damaged (PRAGMA quick_check: "));
}

TEST(SqliteStore, AFileThatIsNoDatabaseIsRefusedAtOpen) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  std::ofstream(path) << std::string(8192, 'x');
  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr(path));
  EXPECT_THAT(store.error().message, HasSubstr("not a database"));
}

TEST(StoreNames, SettingsAndRolesRoundTrip) {
  for (Setting s : {Setting::kAutoscaling, Setting::kAutohealing, Setting::kMaintenance}) {
    EXPECT_EQ(setting_from_string(to_string(s)), s);
  }
  for (Role r : {Role::kViewer, Role::kOperator, Role::kAdmin}) {
    EXPECT_EQ(role_from_string(to_string(r)), r);
  }
  EXPECT_EQ(to_string(Setting::kAutohealing), "autohealing");
  EXPECT_EQ(to_string(Role::kOperator), "operator");
  EXPECT_EQ(setting_from_string("Autoscaling"), std::nullopt);
  EXPECT_EQ(role_from_string("root"), std::nullopt);
}

}  // namespace
}  // namespace tranche
