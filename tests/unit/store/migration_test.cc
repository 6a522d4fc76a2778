// Schema versions: every frozen old version (tests/fixtures/store-vN.sql)
// migrates to the current one with its data intact, and a store newer than
// this binary is refused untouched. See src/store/README.md.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/schema.h"
#include "store/store.h"
#include "store_test_util.h"

namespace tranche {
namespace {

using store_test::at;
using store_test::RawDb;
using store_test::read_file;
using store_test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <class T>
T ok(Result<T> result) {
  if (!result) {
    throw std::runtime_error(result.error().message);
  }
  return std::move(*result);
}

// Builds a database file the way an old release left it.
void load_fixture(const std::string& path, const std::string& fixture) {
  const std::string sql = read_file(std::string(TRANCHE_FIXTURE_DIR) + "/" + fixture);
  ASSERT_FALSE(sql.empty()) << "missing fixture " << fixture;
  RawDb(path).exec(sql);
}

// Tables with their columns and indexes with theirs, independent of how the
// DDL was formatted.
std::string describe_schema(const RawDb& db) {
  return db.query(
             "SELECT m.name, p.cid, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk"
             " FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
             " ORDER BY m.name, p.cid") +
         db.query(
             "SELECT m.name, m.tbl_name, l.\"unique\", l.partial, i.seqno, i.name"
             " FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name"
             " JOIN pragma_index_info(m.name) i WHERE m.type = 'index' ORDER BY m.name, i.seqno") +
         db.query("SELECT key FROM meta ORDER BY key");
}

std::string meta(const std::string& path, const std::string& key) {
  return RawDb(path).query("SELECT value FROM meta WHERE key = '" + key + "'");
}

// A frozen fixture of version N has exactly the schema that the steps up to N
// create in a fresh database: released steps were not edited.
void expect_fixture_is_what_the_steps_create(const std::string& fixture, int version) {
  TempDir dir;
  load_fixture(dir.file("fixture.db"), fixture);
  RawDb fresh(dir.file("fresh.db"));
  EXPECT_EQ(ok(schema::migrate(fresh.get(), version)), version);
  EXPECT_EQ(describe_schema(fresh), describe_schema(RawDb(dir.file("fixture.db"))))
      << "a step up to version " << version << " changed after release: add a new step instead";
  EXPECT_EQ(meta(dir.file("fresh.db"), "schema_version"), std::to_string(version) + "\n");
  EXPECT_EQ(meta(dir.file("fixture.db"), "schema_version"), std::to_string(version) + "\n");
}

TEST(StoreMigration, Version1FixtureIsWhatStep0To1Creates) {
  expect_fixture_is_what_the_steps_create("store-v1.sql", 1);
}

TEST(StoreMigration, Version2FixtureIsWhatSteps0To2Create) {
  expect_fixture_is_what_the_steps_create("store-v2.sql", 2);
}

TEST(StoreMigration, Version3FixtureIsWhatSteps0To3Create) {
  expect_fixture_is_what_the_steps_create("store-v3.sql", 3);
}

TEST(StoreMigration, Version4FixtureIsWhatSteps0To4Create) {
  expect_fixture_is_what_the_steps_create("store-v4.sql", 4);
}

TEST(StoreMigration, Version5FixtureIsWhatSteps0To5Create) {
  expect_fixture_is_what_the_steps_create("store-v5.sql", 5);
}

TEST(StoreMigration, Version6FixtureIsWhatSteps0To6Create) {
  expect_fixture_is_what_the_steps_create("store-v6.sql", 6);
}

// The table added by version 3 works in a migrated store.
void expect_cluster_scales_work(Store& store, const std::string& app, int64_t app_version) {
  EXPECT_TRUE(ok(store.list_cluster_scales(app)).empty());
  const ClusterScaleRecord web{app, "web", 4, 2, "cpu 85% > 70%", at(1800009000000)};
  const ClusterScaleRecord db{app, "backend/db", 3, 3, "steady", at(1800009000001)};
  ok(store.commit(WriteBatch{{{app, app_version}}, {PutClusterScale{web}, PutClusterScale{db}}}));
  EXPECT_THAT(ok(store.list_cluster_scales(app)), ElementsAre(db, web));
  ok(store.commit(WriteBatch{{}, {DeleteClusterScale{app, "backend/db"}}}));
  EXPECT_THAT(ok(store.list_cluster_scales(app)), ElementsAre(web));
}

// The table added by version 4 works in a migrated store: a rollout is
// created at version 0, stored at 1, and advanced by compare-and-swap.
void expect_rollouts_work(Store& store, const std::string& app, int64_t app_version) {
  EXPECT_EQ(ok(store.latest_rollout(app)), std::nullopt);
  RolloutRecord rollout{.app = app,
                        .id = 1,
                        .from_revision = 2,
                        .to_revision = 3,
                        .target_revision = 3,
                        .phase = "Progressing",
                        .reason = "revision 3 applied",
                        .promoted = false,
                        .progress_json = R"({"web":{"failed":[],"failures":0,"status":"Progressing"}})",
                        .author = "alice",
                        .created_at = at(1800009200000),
                        .updated_at = at(1800009200000),
                        .finished_at = std::nullopt,
                        .version = 0};
  ok(store.commit(WriteBatch{{{app, app_version}}, {PutRollout{rollout}}}));
  rollout.version = 1;
  EXPECT_EQ(ok(store.latest_rollout(app)), rollout);

  rollout.phase = "Succeeded";
  rollout.reason = "every cluster is on revision 3";
  rollout.progress_json = R"({"web":{"failed":[],"failures":0,"status":"Done"}})";
  rollout.updated_at = at(1800009300000);
  rollout.finished_at = at(1800009300000);
  ok(store.commit(WriteBatch{{}, {PutRollout{rollout}}}));
  rollout.version = 2;
  EXPECT_EQ(ok(store.latest_rollout(app)), rollout);
}

TEST(StoreMigration, MigratesTheVersion1Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v1.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");

  // The data is intact.
  const auto app = ok(store->get_application("shop"));
  ASSERT_TRUE(app);
  EXPECT_EQ(app->version, 2);
  EXPECT_EQ(app->current_revision, 2);
  EXPECT_EQ(app->operation_seq, 1);
  EXPECT_EQ(app->updated_at, at(1800000060000));
  const auto revisions = ok(store->list_revisions("shop"));
  ASSERT_EQ(revisions.size(), 2u);
  EXPECT_EQ(revisions[0].number, 2);
  EXPECT_EQ(revisions[0].summary, "clusters[0].members.max: 2 -> 4");
  EXPECT_EQ(revisions[1].number, 1);
  EXPECT_THAT(ok(store->list_operational_values("shop")),
              ElementsAre(OperationalValueRecord{"shop", "web", Setting::kAutoscaling, "off", std::nullopt,
                                                 std::nullopt, "admin-bootstrap", at(1800000070000)}));
  const auto token = ok(store->get_token("0123456789abcdef"));
  ASSERT_TRUE(token);
  EXPECT_EQ(token->role, Role::kAdmin);
  EXPECT_EQ(token->app, std::nullopt);
  EXPECT_TRUE(ok(store->has_admin_token()));
  const auto member = ok(store->get_member("shop", "web/0"));
  ASSERT_TRUE(member);
  EXPECT_EQ(member->pid, 4242);
  EXPECT_EQ(member->ports, (std::map<std::string, int>{{"http", 8080}}));
  EXPECT_EQ(ok(store->get_host("h-01"))->labels, (std::map<std::string, std::string>{{"zone", "a"}}));
  const auto audit = ok(store->list_audit(10));
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "PUT /api/v1/applications/shop");
  const auto events = ok(store->list_events({}));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].seq, 3u);
  EXPECT_EQ(events[2].to_json, R"("off")");
  EXPECT_EQ(ok(store->last_event_seq()), 3u);
  EXPECT_TRUE(ok(store->list_expiring_values(at(4'000'000'000'000))).empty());

  // The new columns work, and the event log continues where it was.
  const OperationalValueRecord boxed{"shop", "web",   Setting::kMaintenance, "on", at(1800003600000),
                                     "off",  "alice", at(1800000080000)};
  const CommitResult result = ok(store->commit(WriteBatch{
      {{"shop", 2}},
      {PutOperationalValue{boxed}, AppendEvent{{0, at(1800000080000), "shop", "web", "", "OperationalValueSet", "null",
                                                R"("on")", "maintenance on for 1h"}}}}));
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{4});
  EXPECT_THAT(ok(store->list_expiring_values(at(1800003600000))), ElementsAre(boxed));
  EXPECT_EQ(ok(store->list_operational_values("shop")).size(), 2u);
  expect_cluster_scales_work(*store, "shop", 2);
  expect_rollouts_work(*store, "shop", 2);
}

TEST(StoreMigration, MigratesTheVersion2Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v2.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");

  // The data is intact, time-boxed values included.
  std::vector<std::string> apps;
  for (const ApplicationRecord& a : ok(store->list_applications())) {
    apps.push_back(a.name);
  }
  EXPECT_THAT(apps, ElementsAre("cart", "shop"));
  const auto app = ok(store->get_application("shop"));
  ASSERT_TRUE(app);
  EXPECT_EQ(app->version, 4);
  EXPECT_EQ(app->current_revision, 3);
  EXPECT_EQ(app->operation_seq, 2);
  EXPECT_EQ(app->updated_at, at(1800000200000));
  const auto revisions = ok(store->list_revisions("shop"));
  ASSERT_EQ(revisions.size(), 3u);
  EXPECT_EQ(revisions[0].summary, "clusters[0].members.max: 4 -> 6");
  EXPECT_EQ(revisions[0].author, "alice");
  const OperationalValueRecord plain{"shop",       "web",        Setting::kAutoscaling, "off",
                                     std::nullopt, std::nullopt, "admin-bootstrap",     at(1800000070000)};
  const OperationalValueRecord boxed{"shop", "web/1", Setting::kMaintenance, "on", at(1800003750000),
                                     "off",  "alice", at(1800000150000)};
  const OperationalValueRecord boxed_inherited{"cart",       "",   Setting::kAutohealing, "off", at(1800000760000),
                                               std::nullopt, "ci", at(1800000160000)};
  EXPECT_THAT(ok(store->list_operational_values("shop")), ElementsAre(plain, boxed));
  EXPECT_THAT(ok(store->list_operational_values("cart")), ElementsAre(boxed_inherited));
  EXPECT_TRUE(ok(store->list_expiring_values(at(1800000759999))).empty());
  EXPECT_THAT(ok(store->list_expiring_values(at(1800000760000))), ElementsAre(boxed_inherited));
  EXPECT_THAT(ok(store->list_expiring_values(at(4'000'000'000'000))), ElementsAre(boxed_inherited, boxed));
  const auto stopped = ok(store->get_member("shop", "web/1"));
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->pid, std::nullopt);
  EXPECT_EQ(stopped->healing_delayed_since, at(1800000155000));
  EXPECT_EQ(stopped->ports, (std::map<std::string, int>{{"http", 8081}}));
  EXPECT_EQ(ok(store->list_members({.app = "shop", .cluster = "web"})).size(), 2u);
  EXPECT_EQ(ok(store->list_members({.app = "cart"})).size(), 1u);
  EXPECT_EQ(ok(store->list_hosts()).size(), 2u);
  EXPECT_EQ(ok(store->get_host("h-02"))->slots, 32);
  const auto operation = ok(store->get_operation("op-shop-2"));
  ASSERT_TRUE(operation);
  EXPECT_EQ(operation->status, "Succeeded");
  const auto scoped = ok(store->get_token("fedcba9876543210"));
  ASSERT_TRUE(scoped);
  EXPECT_EQ(scoped->role, Role::kOperator);
  EXPECT_EQ(scoped->app, "cart");
  EXPECT_TRUE(ok(store->has_admin_token()));
  const auto audit = ok(store->list_audit(10));
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[1].actor, "alice");
  const auto events = ok(store->list_events({.app = "shop"}));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2].seq, 4u);
  EXPECT_EQ(events[2].to_json, R"("on")");
  EXPECT_EQ(ok(store->last_event_seq()), 5u);

  // The new table works, and the event log continues where it was.
  expect_cluster_scales_work(*store, "shop", 4);
  EXPECT_TRUE(ok(store->list_cluster_scales("cart")).empty());
  const CommitResult result = ok(store->commit(WriteBatch{
      {{"cart", 1}},
      {PutClusterScale{{"cart", "api", 2, 1, "cpu 90% > 70%", at(1800009100000)}},
       AppendEvent{{0, at(1800009100000), "cart", "api", "", "ClusterScaled", "1", "2", "autoscaled to 2"}}}}));
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{6});
  EXPECT_EQ(ok(store->list_cluster_scales("cart")).size(), 1u);
  expect_rollouts_work(*store, "shop", 4);
}

TEST(StoreMigration, MigratesTheVersion3Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v3.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");

  // The data is intact, the autoscaler's decisions included.
  std::vector<std::string> apps;
  for (const ApplicationRecord& a : ok(store->list_applications())) {
    apps.push_back(a.name);
  }
  EXPECT_THAT(apps, ElementsAre("blog", "cart", "shop"));
  EXPECT_EQ(ok(store->get_application("shop")),
            (ApplicationRecord{"shop", 3, true, 5, 2, at(1800000000000), at(1800000200000)}));
  EXPECT_EQ(ok(store->get_application("blog")),
            (ApplicationRecord{"blog", 1, false, 1, 0, at(1800000500000), at(1800000500000)}));
  const auto revisions = ok(store->list_revisions("cart"));
  ASSERT_EQ(revisions.size(), 2u);
  EXPECT_EQ(revisions[0], (RevisionRecord{"cart", 2,
                                          R"({"name":"cart","clusters":[{"name":"api","version":"0.9.1",)"
                                          R"("members":{"min":1,"max":3}}]})",
                                          "ci", "clusters[0].version: 0.9.0 -> 0.9.1", at(1800000400000)}));
  EXPECT_EQ(ok(store->list_revisions("shop")).size(), 3u);
  EXPECT_THAT(ok(store->list_operational_values("shop")),
              ElementsAre(OperationalValueRecord{"shop", "web", Setting::kAutoscaling, "on", std::nullopt, std::nullopt,
                                                 "admin-bootstrap", at(1800000070000)},
                          OperationalValueRecord{"shop", "web/1", Setting::kMaintenance, "on", at(1800003750000), "off",
                                                 "alice", at(1800000150000)}));
  EXPECT_THAT(ok(store->list_expiring_values(at(1800000760000))),
              ElementsAre(OperationalValueRecord{"cart", "", Setting::kAutohealing, "off", at(1800000760000),
                                                 std::nullopt, "ci", at(1800000160000)}));
  EXPECT_THAT(ok(store->list_cluster_scales("shop")),
              ElementsAre(ClusterScaleRecord{"shop", "web", 3, 2, "cpu 84% > 70% for 5m", at(1800000250000)}));
  EXPECT_THAT(ok(store->list_cluster_scales("cart")),
              ElementsAre(ClusterScaleRecord{"cart", "api", 2, 1, "cpu 91% > 70% for 5m", at(1800000380000)}));
  EXPECT_EQ(ok(store->get_member("cart", "cart/api/1")), (MemberRecord{"cart/api/1",
                                                                       "cart",
                                                                       "api",
                                                                       1,
                                                                       "h-01",
                                                                       "Failed",
                                                                       2,
                                                                       "0.9.1",
                                                                       std::nullopt,
                                                                       {{"metrics", 9100}},
                                                                       at(1800000395000),
                                                                       at(1800000385000),
                                                                       at(1800000395000)}));
  EXPECT_EQ(ok(store->get_member("shop", "shop/web/0"))->pid, 4242);
  EXPECT_EQ(ok(store->list_members({.app = "shop", .cluster = "web"})).size(), 3u);
  EXPECT_EQ(ok(store->get_host("h-02"))->labels, (std::map<std::string, std::string>{{"disk", "ssd"}, {"zone", "b"}}));
  EXPECT_EQ(ok(store->get_operation("op-cart-1"))->actor, "ci");
  const auto viewer = ok(store->get_token("00112233aabbccdd"));
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->role, Role::kViewer);
  EXPECT_EQ(ok(store->get_token("fedcba9876543210"))->app, "cart");
  EXPECT_TRUE(ok(store->has_admin_token()));
  const auto audit = ok(store->list_audit(10));
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[2].action, "PUT /api/v1/applications/cart");
  const auto events = ok(store->list_events({}));
  ASSERT_EQ(events.size(), 10u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq, i + 1);
  }
  EXPECT_EQ(events[6], (EventRecord{7, at(1800000260000), "shop", "shop/web", "shop/web/2", "MemberStateChanged",
                                    R"("")", R"("Created")", "placed on h-01"}));
  EXPECT_EQ(ok(store->last_event_seq()), 10u);

  // No application has a rollout yet; the new table works, and the event log
  // continues where it was in the same batch.
  for (const std::string app : {"blog", "cart", "shop"}) {
    EXPECT_EQ(ok(store->latest_rollout(app)), std::nullopt) << app;
  }
  const RolloutRecord rollout{.app = "cart",
                              .id = 1,
                              .from_revision = 1,
                              .to_revision = 2,
                              .target_revision = 2,
                              .phase = "CanaryPaused",
                              .reason = "canary of cart/api is up: waiting for promote",
                              .promoted = false,
                              .progress_json = R"({"api":{"failed":[],"failures":0,"status":"CanaryPaused"}})",
                              .author = "ci",
                              .created_at = at(1800009400000),
                              .updated_at = at(1800009400000),
                              .finished_at = std::nullopt,
                              .version = 0};
  const CommitResult result = ok(store->commit(
      WriteBatch{{{"cart", 3}},
                 {PutRollout{rollout}, AppendEvent{{0, at(1800009400000), "cart", "cart", "", "RolloutPhaseChanged",
                                                    "null", R"("CanaryPaused")", "rollout 1: canary paused"}}}}));
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{11});
  RolloutRecord stored = rollout;
  stored.version = 1;
  EXPECT_EQ(ok(store->latest_rollout("cart")), stored);
  EXPECT_EQ(ok(store->latest_rollout("shop")), std::nullopt);
  expect_rollouts_work(*store, "shop", 5);
}

TEST(StoreMigration, MigratesTheVersion4Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v4.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");

  // The data is intact, the rollout included; values written before version 5
  // were never all at once.
  const auto cart = ok(store->get_application("cart"));
  ASSERT_TRUE(cart);
  EXPECT_EQ(cart->version, 3);
  EXPECT_EQ(ok(store->list_revisions("shop")).size(), 3u);
  const OperationalValueRecord cluster{"cart",       "api", Setting::kMaintenance, "restart", std::nullopt,
                                       std::nullopt, "ci",  at(1800000600000)};
  OperationalValueRecord member0 = cluster;
  member0.path = "api/0";
  OperationalValueRecord member1 = cluster;
  member1.path = "api/1";
  EXPECT_THAT(ok(store->list_operational_values("cart")),
              ElementsAre(OperationalValueRecord{"cart", "", Setting::kAutohealing, "off", at(1800000760000),
                                                 std::nullopt, "ci", at(1800000160000)},
                          cluster, member0, member1));
  for (const OperationalValueRecord& v : ok(store->list_operational_values("cart"))) {
    EXPECT_FALSE(v.all_at_once) << v.path;
  }
  EXPECT_EQ(ok(store->list_operational_values("shop")).size(), 2u);
  EXPECT_EQ(ok(store->latest_rollout("cart")),
            (RolloutRecord{.app = "cart",
                           .id = 1,
                           .from_revision = 1,
                           .to_revision = 2,
                           .target_revision = 2,
                           .phase = "Succeeded",
                           .reason = "every cluster is on revision 2",
                           .promoted = false,
                           .progress_json = R"({"api":{"failed":[],"failures":0,"status":"Done"}})",
                           .author = "ci",
                           .created_at = at(1800000400000),
                           .updated_at = at(1800000410000),
                           .finished_at = at(1800000410000),
                           .version = 3}));
  EXPECT_EQ(ok(store->list_cluster_scales("cart")).size(), 1u);
  EXPECT_EQ(ok(store->list_members({.app = "shop", .cluster = "web"})).size(), 3u);
  const auto events = ok(store->list_events({}));
  ASSERT_EQ(events.size(), 12u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq, i + 1);
  }
  EXPECT_EQ(events[11].message, "maintenance restart on cart/api");
  EXPECT_EQ(ok(store->last_event_seq()), 12u);

  // The new column works: an all-at-once marker replaces the old one, and the
  // event log continues where it was in the same batch.
  OperationalValueRecord all = member0;
  all.set_by = "alice";
  all.set_at = at(1800009500000);
  all.all_at_once = true;
  const CommitResult result = ok(store->commit(WriteBatch{
      {{"cart", 3}},
      {PutOperationalValue{all}, AppendEvent{{0, at(1800009500000), "cart", "cart/api/0", "", "OperationalStateChanged",
                                              R"("restart")", R"("restart")", "maintenance restart (all at once)"}}}}));
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{13});
  const auto values = ok(store->list_operational_values("cart"));
  ASSERT_EQ(values.size(), 4u);
  EXPECT_EQ(values[2], all);
  EXPECT_FALSE(values[3].all_at_once);
  expect_rollouts_work(*store, "shop", 5);
}

// The table added by version 6 works in a migrated store: a lock is taken
// (version 0 -> 1), moved on by compare-and-swap, and lifted; a stale
// version is refused.
void expect_migration_locks_work(Store& store, const std::string& app) {
  EXPECT_EQ(ok(store.get_migration_lock(app)), std::nullopt);
  MigrationLockRecord lock{app, "alice", at(1800009600000), "{}", at(1800009600000), 0};
  ok(store.commit(WriteBatch{{}, {PutMigrationLock{lock}}}));
  lock.version = 1;
  EXPECT_EQ(ok(store.get_migration_lock(app)), lock);
  MigrationLockRecord platform{"", "ops", at(1800009600001), "{}", at(1800009600001), 0};
  ok(store.commit(WriteBatch{{}, {PutMigrationLock{platform}}}));
  platform.version = 1;
  EXPECT_THAT(ok(store.list_migration_locks()), ElementsAre(platform, lock));

  MigrationLockRecord taken_again{app, "bob", at(1800009600002), "{}", at(1800009600002), 0};
  auto refused = store.commit(WriteBatch{{}, {PutMigrationLock{taken_again}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  lock.detail_json = R"({"perform":{"toRevision":2}})";
  ok(store.commit(WriteBatch{{}, {PutMigrationLock{lock}}}));
  lock.version = 2;
  EXPECT_EQ(ok(store.get_migration_lock(app)), lock);
  auto stale = store.commit(WriteBatch{{}, {DeleteMigrationLock{app, 1}}});
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  ok(store.commit(WriteBatch{{}, {DeleteMigrationLock{app, 2}, DeleteMigrationLock{"", 1}}}));
  EXPECT_TRUE(ok(store.list_migration_locks()).empty());
}

TEST(StoreMigration, MigratesTheVersion5Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v5.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");

  // The data is intact, all-at-once markers included; nothing is locked.
  const auto values = ok(store->list_operational_values("cart"));
  ASSERT_EQ(values.size(), 4u);
  EXPECT_FALSE(values[0].all_at_once);
  EXPECT_TRUE(values[1].all_at_once);
  EXPECT_TRUE(values[3].all_at_once);
  EXPECT_EQ(ok(store->latest_rollout("cart"))->version, 3);
  EXPECT_EQ(ok(store->last_event_seq()), 13u);
  EXPECT_TRUE(ok(store->list_migration_locks()).empty());

  // The new table works, with an event in the same batch continuing the log.
  const MigrationLockRecord lock{"cart", "ci", at(1800009700000), "{}", at(1800009700000), 0};
  const CommitResult result = ok(store->commit(WriteBatch{
      {{"cart", 3}},
      {PutMigrationLock{lock}, AppendEvent{{0, at(1800009700000), "cart", "cart", "", "MigrationLocked", "null",
                                             R"("ci")", "migration lock taken"}}}}));
  EXPECT_EQ(result.event_seqs, std::vector<uint64_t>{14});
  ok(store->commit(WriteBatch{{}, {DeleteMigrationLock{"cart", 1}}}));
  expect_migration_locks_work(*store, "shop");
}

// The tables added by version 7 work in a migrated store: artifact names
// are given once (the same content again is a no-op, another is a
// conflict), and an agent upgrade advances by compare-and-swap.
void expect_artifacts_and_agent_upgrades_work(Store& store) {
  const std::string a(64, 'a');
  const std::string b(64, 'b');
  const ArtifactRecord v1{"tranche-agent", "0.2.0", a, 13000000, "ops", at(1800009800000)};
  const ArtifactRecord v2{"tranche-agent", "0.3.0", b, 14000000, "ops", at(1800009900000)};
  const ArtifactRecord other{"hello", "1.0.0", a, 13000000, "ci", at(1800009900001)};
  ok(store.commit(WriteBatch{{}, {PutArtifact{v2}, PutArtifact{v1}, PutArtifact{other}}}));
  ok(store.commit(WriteBatch{{}, {PutArtifact{v1}}}));
  ArtifactRecord changed = v1;
  changed.sha256 = b;
  auto refused = store.commit(WriteBatch{{}, {PutArtifact{changed}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(ok(store.get_artifact("tranche-agent", "0.2.0")), v1);
  EXPECT_EQ(ok(store.get_artifact("tranche-agent", "9.9.9")), std::nullopt);
  EXPECT_THAT(ok(store.list_artifacts(std::nullopt)), ElementsAre(other, v1, v2));
  EXPECT_THAT(ok(store.list_artifacts("tranche-agent")), ElementsAre(v1, v2));
  EXPECT_THAT(ok(store.artifacts_with_digest(a)), ElementsAre(other, v1));
  ok(store.commit(WriteBatch{{}, {DeleteArtifact{"hello", "1.0.0"}}}));
  EXPECT_THAT(ok(store.artifacts_with_digest(a)), ElementsAre(v1));

  EXPECT_EQ(ok(store.latest_agent_upgrade()), std::nullopt);
  AgentUpgradeRecord upgrade{.id = 1,
                             .agent_version = "0.2.0",
                             .artifact_sha256 = a,
                             .artifact_size = 13000000,
                             .max_unavailable = 2,
                             .selector = "zone=a",
                             .fallback_seconds = 60,
                             .state = "Running",
                             .reason = "started by ops",
                             .progress_json = R"({"hosts":{}})",
                             .author = "ops",
                             .created_at = at(1800010000000),
                             .updated_at = at(1800010000000),
                             .finished_at = std::nullopt,
                             .version = 0};
  ok(store.commit(WriteBatch{{}, {PutAgentUpgrade{upgrade}}}));
  upgrade.version = 1;
  EXPECT_EQ(ok(store.latest_agent_upgrade()), upgrade);
  upgrade.state = "Completed";
  upgrade.finished_at = at(1800010100000);
  ok(store.commit(WriteBatch{{}, {PutAgentUpgrade{upgrade}}}));
  upgrade.version = 2;
  EXPECT_EQ(ok(store.latest_agent_upgrade()), upgrade);
  AgentUpgradeRecord old = upgrade;
  old.version = 1;
  auto conflict = store.commit(WriteBatch{{}, {PutAgentUpgrade{old}}});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  AgentUpgradeRecord next = upgrade;
  next.id = 2;
  next.version = 0;
  next.state = "Running";
  next.finished_at.reset();
  ok(store.commit(WriteBatch{{}, {PutAgentUpgrade{next}}}));
  EXPECT_EQ(ok(store.latest_agent_upgrade())->id, 2);
}

TEST(StoreMigration, MigratesTheVersion6Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v6.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(current_schema_version(), 7);
  EXPECT_EQ(store->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), "7\n");

  // The platform's lock and the rest of the data are intact.
  const auto lock = ok(store->get_migration_lock(""));
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->locked_by, "ops");
  EXPECT_EQ(lock->version, 1);
  EXPECT_EQ(ok(store->latest_rollout("cart"))->version, 3);
  EXPECT_EQ(ok(store->last_event_seq()), 14u);
  EXPECT_TRUE(ok(store->list_artifacts(std::nullopt)).empty());

  expect_artifacts_and_agent_upgrades_work(*store);
}

TEST(StoreMigration, NewStoreIsCreatedThroughEveryStep) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  ASSERT_EQ(ok(open_sqlite_store({path}))->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");
  EXPECT_EQ(meta(path, "last_event_seq"), "0\n");
  EXPECT_EQ(RawDb(path).query("PRAGMA journal_mode"), "wal\n");

  // The same schema as every old store brought forward.
  for (const std::string fixture :
       {"store-v1.sql", "store-v2.sql", "store-v3.sql", "store-v4.sql", "store-v5.sql", "store-v6.sql"}) {
    const std::string old = dir.file(fixture + ".db");
    load_fixture(old, fixture);
    ok(open_sqlite_store({old}));
    EXPECT_EQ(describe_schema(RawDb(path)), describe_schema(RawDb(old))) << fixture;
  }
}

TEST(StoreMigration, RefusesANewerStoreAndLeavesItUntouched) {
  TempDir dir;
  const std::string path = dir.file("future.db");
  RawDb(path).exec(
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT INTO meta VALUES ('schema_version', '99'), ('last_event_seq', '7');"
      "CREATE TABLE something_new (x INTEGER);");
  const std::string before = read_file(path);

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("store schema version 99 is newer than this binary's " +
                                               std::to_string(current_schema_version()) + "; upgrade tranche"));
  EXPECT_EQ(read_file(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST(StoreMigration, AFailedStepLeavesTheOldVersion) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v1.sql");
  // An object in the way of step 1 to 2, after its ALTER TABLEs succeed.
  RawDb(path).exec("CREATE INDEX members_app_cluster ON members (state)");

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 1 to 2"));
  EXPECT_EQ(meta(path, "schema_version"), "1\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM pragma_table_info('operational_values')"
                              " WHERE name IN ('expires_at', 'previous_value')"),
            "0\n");
}

TEST(StoreMigration, AFailedStep2To3LeavesVersion2) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v2.sql");
  RawDb(path).exec("CREATE TABLE cluster_scales (x INTEGER)");  // in the way of step 2 to 3

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 2 to 3"));
  EXPECT_EQ(meta(path, "schema_version"), "2\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM pragma_table_info('cluster_scales')"), "1\n");
}

TEST(StoreMigration, AFailedStep3To4LeavesVersion3) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v3.sql");
  RawDb(path).exec("CREATE TABLE rollouts (x INTEGER)");  // in the way of step 3 to 4

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 3 to 4"));
  EXPECT_EQ(meta(path, "schema_version"), "3\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM pragma_table_info('rollouts')"), "1\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM cluster_scales"), "2\n");
}

TEST(StoreMigration, AFailedStep4To5LeavesVersion4) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v4.sql");
  // A column of that name in the way of step 4 to 5.
  RawDb(path).exec("ALTER TABLE operational_values ADD COLUMN all_at_once TEXT");

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 4 to 5"));
  EXPECT_EQ(meta(path, "schema_version"), "4\n");
  EXPECT_EQ(RawDb(path).query("SELECT type FROM pragma_table_info('operational_values') WHERE name = 'all_at_once'"),
            "TEXT\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM rollouts"), "1\n");
}

TEST(StoreMigration, AFailedStep5To6LeavesVersion5) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v5.sql");
  RawDb(path).exec("CREATE TABLE migration_locks (x INTEGER)");  // in the way of step 5 to 6

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 5 to 6"));
  EXPECT_EQ(meta(path, "schema_version"), "5\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM pragma_table_info('migration_locks')"), "1\n");
}

TEST(StoreMigration, AFailedStep6To7LeavesVersion6) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v6.sql");
  RawDb(path).exec("CREATE TABLE agent_upgrades (x INTEGER)");  // in the way of step 6 to 7, after its first table

  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("step 6 to 7"));
  EXPECT_EQ(meta(path, "schema_version"), "6\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM sqlite_master WHERE name = 'artifacts'"), "0\n");
  EXPECT_EQ(RawDb(path).query("SELECT count(*) FROM migration_locks"), "1\n");
}

TEST(StoreMigration, RefusesADatabaseThatIsNotAStore) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  RawDb(path).exec("CREATE TABLE customers (id INTEGER)");
  const std::string before = read_file(path);
  auto store = open_sqlite_store({path});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(store.error().message, HasSubstr("not a tranche store"));
  EXPECT_EQ(read_file(path), before);
}

}  // namespace
}  // namespace tranche
