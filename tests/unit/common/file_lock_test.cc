#include "common/file_lock.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace tranche {
namespace {

class FileLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "tranche-lock-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string content(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::filesystem::path dir_;
};

TEST_F(FileLockTest, IsExclusiveNamesItsHolderAndIsReleasedWithTheObject) {
  const auto path = dir_ / "controller.lock";
  auto first = FileLock::acquire(path);
  ASSERT_TRUE(first.has_value()) << first.error().describe();
  EXPECT_EQ(content(path), std::to_string(::getpid()) + "\n");
  EXPECT_EQ(FileLock::holder(path), ::getpid());

  auto second = FileLock::acquire(path);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, ErrorCode::kConflict);
  EXPECT_EQ(second.error().message, path.string() + " is held by pid " + std::to_string(::getpid()));

  *first = FileLock::acquire(dir_ / "other.lock").value();  // releases the first file
  EXPECT_TRUE(FileLock::acquire(path).has_value());
}

TEST_F(FileLockTest, AnotherProcessIsRefusedWhileItIsHeld) {
  const auto path = dir_ / "controller.lock";
  auto held = FileLock::acquire(path);
  ASSERT_TRUE(held.has_value());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto mine = FileLock::acquire(path);
    ::_exit(!mine && mine.error().code == ErrorCode::kConflict ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the other process is refused";
}

TEST_F(FileLockTest, ItsDescriptorIsCloseOnExec) {
  auto lock = FileLock::acquire(dir_ / "controller.lock");
  ASSERT_TRUE(lock.has_value());
  const int flags = ::fcntl(lock->fd(), F_GETFD);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & FD_CLOEXEC, 0) << "a program the holder starts must not inherit the lock";
}

TEST_F(FileLockTest, AFileWithoutAPidNamesNoHolder) {
  const auto path = dir_ / "controller.lock";
  std::ofstream(path) << "garbage\n";
  EXPECT_EQ(FileLock::holder(path), std::nullopt);
  EXPECT_EQ(FileLock::holder(dir_ / "missing"), std::nullopt);
}

}  // namespace
}  // namespace tranche
