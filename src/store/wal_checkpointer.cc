#include "store/wal_checkpointer.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "store/sqlite_statements.h"

namespace tranche::sqlite {

Result<std::unique_ptr<WalCheckpointer>> WalCheckpointer::attach(sqlite3* writer, const std::string& path,
                                                                 CheckpointThresholds thresholds) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close_v2(raw);
    return fail(ErrorCode::kUnavailable, "cannot open store " + path + " to checkpoint it: " + why);
  }
  // A checkpoint syncs the log before it copies and the database after.
  if (auto set = exec(raw, "PRAGMA synchronous = FULL", "store " + path); !set) {
    sqlite3_close_v2(raw);
    return std::unexpected(set.error());
  }
  std::unique_ptr<WalCheckpointer> checkpointer(new WalCheckpointer(writer, raw, thresholds));
  checkpointer->thread_ = std::jthread([self = checkpointer.get()](const std::stop_token& stop) { self->run(stop); });
  sqlite3_wal_hook(writer, &WalCheckpointer::on_commit, checkpointer.get());
  return checkpointer;
}

WalCheckpointer::~WalCheckpointer() {
  // Replaces the hook: nothing calls this object any more.
  sqlite3_wal_autocheckpoint(writer_, CheckpointThresholds{}.wake_pages);
  thread_.request_stop();
  thread_.join();
  sqlite3_close_v2(own_);
}

int WalCheckpointer::completed(int count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  done_.wait_for(lock, timeout, [&] { return completed_ >= count; });
  return completed_;
}

int WalCheckpointer::on_commit(void* self, sqlite3* db, const char* schema, int pages) {
  auto* checkpointer = static_cast<WalCheckpointer*>(self);
  if (pages >= checkpointer->thresholds_.inline_pages) {
    // As SQLite's automatic checkpoint does, and with its outcome: the
    // commit is durable whatever this one does.
    (void)sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else if (pages >= checkpointer->thresholds_.wake_pages) {
    {
      std::lock_guard lock(checkpointer->mu_);
      checkpointer->wanted_ = true;
    }
    checkpointer->wake_.notify_one();
  }
  return SQLITE_OK;
}

void WalCheckpointer::run(const std::stop_token& stop) {
  std::unique_lock lock(mu_);
  while (wake_.wait(lock, stop, [this] { return wanted_; })) {
    wanted_ = false;
    lock.unlock();
    const int rc = sqlite3_wal_checkpoint_v2(own_, "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      // The log keeps its pages, and grows until a later checkpoint (or the
      // commit's own, past inline_pages) copies them: no write is lost.
      spdlog::warn("store: checkpoint of the write-ahead log failed: {}", sqlite3_errmsg(own_));
    }
    lock.lock();
    if (rc == SQLITE_OK) {
      ++completed_;
      done_.notify_all();
    }
  }
}

}  // namespace tranche::sqlite
