#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tranche {

namespace {

std::string errno_text() { return std::strerror(errno); }

Status write_all(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail(ErrorCode::kUnavailable, "cannot write " + path.string() + ": " + errno_text());
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

Status write_file_atomically(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable, "cannot create " + tmp.string() + ": " + errno_text());
  }
  // A temp file left by an interrupted write keeps its old mode through O_TRUNC.
  Status written = ::fchmod(fd, mode) == 0
                       ? Status{}
                       : fail(ErrorCode::kUnavailable, "cannot chmod " + tmp.string() + ": " + errno_text());
  if (written) {
    written = write_all(fd, content, tmp);
  }
  if (written && ::fsync(fd) != 0) {
    written = fail(ErrorCode::kUnavailable, "cannot fsync " + tmp.string() + ": " + errno_text());
  }
  if (::close(fd) != 0 && written) {
    written = fail(ErrorCode::kUnavailable, "cannot write " + tmp.string() + ": " + errno_text());
  }
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto error =
        fail(ErrorCode::kUnavailable, "cannot rename " + tmp.string() + " to " + path.string() + ": " + errno_text());
    ::unlink(tmp.c_str());
    return error;
  }
  // The rename is durable once the directory is.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return fail(ErrorCode::kUnavailable, "cannot open " + dir.string() + ": " + errno_text());
  }
  const int synced = ::fsync(dir_fd);
  const std::string sync_error = synced != 0 ? errno_text() : "";
  ::close(dir_fd);
  if (synced != 0) {
    return fail(ErrorCode::kUnavailable, "cannot fsync " + dir.string() + ": " + sync_error);
  }
  return {};
}

}  // namespace tranche
