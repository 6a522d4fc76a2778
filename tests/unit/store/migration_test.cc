// Schema versions: every frozen old version (tests/fixtures/store-vN.sql)
// migrates to the current one with its data intact, and a store newer than
// this binary is refused untouched. See src/store/README.md.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>

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

TEST(StoreMigration, Version1FixtureIsWhatStep0To1Creates) {
  TempDir dir;
  load_fixture(dir.file("fixture.db"), "store-v1.sql");
  RawDb fresh(dir.file("fresh.db"));
  EXPECT_EQ(ok(schema::migrate(fresh.get(), 1)), 1);
  EXPECT_EQ(describe_schema(fresh), describe_schema(RawDb(dir.file("fixture.db"))))
      << "step_0_to_1 changed after release: add a new step instead";
  EXPECT_EQ(meta(dir.file("fresh.db"), "schema_version"), "1\n");
}

TEST(StoreMigration, MigratesTheVersion1Fixture) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  load_fixture(path, "store-v1.sql");
  auto store = ok(open_sqlite_store({path}));
  EXPECT_EQ(store->schema_version(), 2);
  EXPECT_EQ(current_schema_version(), 2);
  EXPECT_EQ(meta(path, "schema_version"), "2\n");

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
}

TEST(StoreMigration, NewStoreIsCreatedThroughEveryStep) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  ASSERT_EQ(ok(open_sqlite_store({path}))->schema_version(), current_schema_version());
  EXPECT_EQ(meta(path, "schema_version"), std::to_string(current_schema_version()) + "\n");
  EXPECT_EQ(meta(path, "last_event_seq"), "0\n");
  EXPECT_EQ(RawDb(path).query("PRAGMA journal_mode"), "wal\n");

  // The same schema as an old store brought forward.
  load_fixture(dir.file("old.db"), "store-v1.sql");
  ok(open_sqlite_store({dir.file("old.db")}));
  EXPECT_EQ(describe_schema(RawDb(path)), describe_schema(RawDb(dir.file("old.db"))));
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
  EXPECT_THAT(store.error().message,
              HasSubstr("store schema version 99 is newer than this binary's 2; upgrade tranche"));
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
