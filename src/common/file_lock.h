#pragma once
// An exclusive lock on a file (flock), held for as long as the FileLock
// lives: one controller per data dir (quality.md, "Security"). The file
// holds the holder's pid, so that whoever finds it taken can say by whom.
// The descriptor is close-on-exec: a program the holder starts does not
// inherit the lock.

#include <sys/types.h>

#include <filesystem>
#include <optional>

#include "common/error.h"

namespace tranche {

class FileLock {
 public:
  // Takes the lock without waiting, creating the file (0600) if needed, and
  // writes this process's pid into it. Taken by another open file (another
  // process, or another FileLock here): kConflict, "PATH is held by pid N"
  // (or "by another process" when the file names no pid).
  static Result<FileLock> acquire(const std::filesystem::path& path);

  // The pid written in the lock file by its holder, if it names one.
  static std::optional<pid_t> holder(const std::filesystem::path& path);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  int fd() const { return fd_; }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace tranche
