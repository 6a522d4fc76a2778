#pragma once
// Helpers shared by the store tests: a scratch directory, fixed times and
// raw SQLite access for arranging and inspecting database files.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/time_format.h"

namespace tranche::store_test {

// A fresh directory removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tranche-store-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ignored);
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A millisecond-precise time: what the store keeps.
inline TimePoint at(int64_t ms) { return from_unix_millis(ms); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// A raw connection for arranging and inspecting database files.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db_);
    }
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  sqlite3* get() const { return db_; }

  void exec(const std::string& sql) const {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      ADD_FAILURE() << "SQL failed: " << (message != nullptr ? message : "?") << "\n" << sql;
    }
    sqlite3_free(message);
  }

  // Makes the medium refuse inserts into `table` ("simulated write
  // failure"), as a full or failing disk would, until allow_inserts().
  void refuse_inserts(const std::string& table) const {
    exec("CREATE TRIGGER refuse BEFORE INSERT ON " + table +
         " BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END");
  }
  void allow_inserts() const { exec("DROP TRIGGER refuse"); }

  // Every row of `sql`, columns separated by '|', rows by '\n'.
  std::string query(const std::string& sql) const {
    std::string out;
    char* message = nullptr;
    auto append = [](void* target, int columns, char** values, char**) {
      auto& text = *static_cast<std::string*>(target);
      for (int i = 0; i < columns; ++i) {
        text += (i != 0 ? "|" : "");
        text += values[i] != nullptr ? values[i] : "NULL";
      }
      text += "\n";
      return 0;
    };
    if (sqlite3_exec(db_, sql.c_str(), append, &out, &message) != SQLITE_OK) {
      ADD_FAILURE() << "SQL failed: " << (message != nullptr ? message : "?") << "\n" << sql;
    }
    sqlite3_free(message);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace tranche::store_test
