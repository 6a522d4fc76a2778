#pragma once
// Internal to the SQLite backend: copies the write-ahead log back into the
// database on a thread and a connection of its own, so that no commit waits
// for it. SQLite's own automatic checkpoint runs inside the commit that
// crosses its threshold (1,000 pages), on the writer's connection and so
// under the store's mutex: at 100,000 members, group commits of thousands
// of rows crossed it often, and such a commit took up to 0.24 s instead of
// a few ms (docs/benchmarks.md, eighteenth session). Here a commit only
// says how long the log has grown; the checkpointer copies it (PASSIVE: it
// never waits for, nor blocks, the writer or a reader), each page once
// however often it was written meanwhile. Should it fall far behind, the
// commit checkpoints itself, as SQLite would have (the log stays bounded).

#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "common/error.h"

namespace tranche::sqlite {

// Log pages after which a checkpoint is asked for (SQLite's default
// automatic threshold), and after which the committing connection makes one
// itself.
struct CheckpointThresholds {
  int wake_pages = 1000;
  int inline_pages = 64 * 1024;  // 256 MiB of 4 KiB pages
};

class WalCheckpointer {
 public:
  // Opens the checkpointer's connection to the database at `path` and
  // installs it as `writer`'s WAL hook (replacing the automatic checkpoint).
  static Result<std::unique_ptr<WalCheckpointer>> attach(sqlite3* writer, const std::string& path,
                                                         CheckpointThresholds thresholds = {});
  // Stops the thread and closes its connection; the writer's automatic
  // checkpoint is back.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Checkpoints completed on the thread so far, once there are `count` or
  // `timeout` has passed (for tests: a wait on the event, not a poll).
  int completed(int count = 0, std::chrono::milliseconds timeout = {}) const;

 private:
  WalCheckpointer(sqlite3* writer, sqlite3* own, CheckpointThresholds thresholds)
      : writer_(writer), own_(own), thresholds_(thresholds) {}
  // sqlite3_wal_hook: after every commit, with the writer's connection in use.
  static int on_commit(void* self, sqlite3* db, const char* schema, int pages);
  void run(const std::stop_token& stop);

  sqlite3* writer_;
  sqlite3* own_;
  const CheckpointThresholds thresholds_;
  mutable std::mutex mu_;
  std::condition_variable_any wake_;      // the thread: a checkpoint is wanted
  mutable std::condition_variable done_;  // completed(): one was made
  bool wanted_ = false;
  int completed_ = 0;
  std::jthread thread_;  // started by attach(), stopped first by the destructor
};

}  // namespace tranche::sqlite
