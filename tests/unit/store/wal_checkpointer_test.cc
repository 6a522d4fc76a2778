// The SQLite backend's checkpointer (src/store/wal_checkpointer.h): a
// commit's log is copied into the database by its thread, not by the
// commit, unless the log has grown too long.

#include "store/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <climits>
#include <filesystem>
#include <string>

#include "store_test_util.h"

namespace tranche::sqlite {
namespace {

using store_test::TempDir;

constexpr uintmax_t kPage = 4096;

class WalCheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(path_.c_str(), &writer_), SQLITE_OK);
    exec("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB)");
  }
  void TearDown() override {
    checkpointer_.reset();
    sqlite3_close_v2(writer_);
  }

  void attach(CheckpointThresholds thresholds) {
    auto attached = WalCheckpointer::attach(writer_, path_, thresholds);
    ASSERT_TRUE(attached) << attached.error().describe();
    checkpointer_ = std::move(*attached);
  }
  void exec(const std::string& sql) {
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(writer_, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  }
  // One commit of `rows` rows of a page each.
  void write_pages(int rows) {
    exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " + std::to_string(rows) +
         ") INSERT INTO t SELECT zeroblob(4000) FROM n");
  }
  // The database file itself, without its log: what checkpoints copied.
  uintmax_t database_pages() const { return std::filesystem::file_size(path_) / kPage; }

  TempDir dir_;
  const std::string path_ = dir_.file("t.db");
  sqlite3* writer_ = nullptr;
  std::unique_ptr<WalCheckpointer> checkpointer_;
};

TEST_F(WalCheckpointerTest, ALogPastTheWakeThresholdIsCopiedByTheCheckpointersThread) {
  attach({.wake_pages = 100, .inline_pages = INT_MAX});
  write_pages(200);

  ASSERT_GE(checkpointer_->completed(1, std::chrono::seconds(10)), 1);
  EXPECT_GE(database_pages(), 200u);
}

TEST_F(WalCheckpointerTest, TheCommitNoLongerCheckpointsAtSqlitesAutomaticThreshold) {
  attach({.wake_pages = 5000, .inline_pages = INT_MAX});
  write_pages(1500);  // past SQLite's 1,000 pages, short of the wake threshold

  EXPECT_LT(database_pages(), 100u);
  EXPECT_EQ(checkpointer_->completed(), 0);
}

TEST_F(WalCheckpointerTest, FarBehindTheCommitCheckpointsItself) {
  attach({.wake_pages = INT_MAX, .inline_pages = 100});
  write_pages(200);

  EXPECT_GE(database_pages(), 200u);  // before the commit returned
  EXPECT_EQ(checkpointer_->completed(), 0);
}

TEST_F(WalCheckpointerTest, OnceDetachedTheWriterCheckpointsAutomaticallyAgain) {
  attach({.wake_pages = 5000, .inline_pages = INT_MAX});
  checkpointer_.reset();
  write_pages(1500);

  EXPECT_GE(database_pages(), 1500u);
}

TEST_F(WalCheckpointerTest, AnUnopenableDatabaseIsAnErrorNamingIt) {
  auto attached = WalCheckpointer::attach(writer_, dir_.file("missing/t.db"));

  ASSERT_FALSE(attached);
  EXPECT_EQ(attached.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(attached.error().message.find("missing/t.db"), std::string::npos);
}

}  // namespace
}  // namespace tranche::sqlite
