#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "agent/driver.h"
#include "agent_test_util.h"

namespace tranche::agent {
namespace {

using namespace std::chrono_literals;
using test::is_alive;
using test::read_file;
using test::TempDir;
using test::wait_until;
using test::write_file;
using ::testing::HasSubstr;

LaunchSpec make_spec(std::vector<std::string> command, std::vector<std::string> ports = {}) {
  LaunchSpec spec;
  spec.member = "web/3";
  spec.app = "shop";
  spec.cluster = "web";
  spec.revision = 7;
  spec.version = "1.4.2";
  spec.command = std::move(command);
  spec.env = {{"LOG_LEVEL", "info"}};
  spec.ports = std::move(ports);
  return spec;
}

// Starts `sleep 60` in the background of a shell that exits at once: the
// sleep is then not our child, like a member adopted after an agent restart.
pid_t start_orphan_sleep() {
  FILE* out = ::popen("sleep 60 >/dev/null 2>&1 </dev/null & echo $!", "r");
  if (out == nullptr) {
    return -1;
  }
  char line[64] = {};
  const bool got = ::fgets(line, sizeof line, out) != nullptr;
  ::pclose(out);
  return got ? static_cast<pid_t>(std::atoi(line)) : -1;
}

pid_t read_pid_file(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  return text.empty() ? -1 : static_cast<pid_t>(std::atoi(text.c_str()));
}

class ProcessDriverTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (pid_t pid : pids_) {
      test::kill_and_reap(pid);
    }
  }

  // Starts a member and remembers it for teardown.
  MemberProcess start(const LaunchSpec& spec) {
    auto process = test::ok(driver_->start(spec, dir_ / "logs"));
    pids_.push_back(static_cast<pid_t>(process.pid));
    return process;
  }
  void track(pid_t pid) { pids_.push_back(pid); }

  ProcessStatus wait_exit(const MemberProcess& process, std::chrono::milliseconds timeout = 10s) {
    ProcessStatus status;
    wait_until(
        [&] {
          status = driver_->poll(process);
          return status.state == ProcessState::kExited;
        },
        timeout);
    return status;
  }

  bool wait_for_output(const std::string& needle, const std::string& file = "stdout.log") {
    return wait_until([&] { return read_file(dir_ / "logs" / file).find(needle) != std::string::npos; });
  }

  TempDir dir_;
  std::unique_ptr<Driver> driver_ = make_process_driver();
  std::vector<pid_t> pids_;
};

TEST_F(ProcessDriverTest, ExpandsEnvironmentAndPorts) {
  const test::ScopedEnv inherited("TRANCHE_TEST_INHERITED", "from-agent");
  auto spec = make_spec({"sh", "-c",
                         "echo env $PORT_HTTP $PORT_ADMIN_API $VERSION $TRANCHE_MEMBER $TRANCHE_APP $TRANCHE_CLUSTER "
                         "$TRANCHE_REVISION $LOG_LEVEL ${TRANCHE_TEST_INHERITED-none}; echo arg $1; exec sleep 60",
                         "sh", "--port=${PORT_HTTP}/${VERSION}/$HOME"},
                        {"http", "admin-api"});
  const auto process = start(spec);

  ASSERT_EQ(process.ports.size(), 2u);
  const int http = process.ports.at("http");
  const int admin = process.ports.at("admin-api");
  EXPECT_GT(http, 0);
  EXPECT_GT(admin, 0);
  EXPECT_NE(http, admin);
  EXPECT_EQ(process.member, "web/3");
  EXPECT_EQ(process.log_dir, dir_ / "logs");
  EXPECT_EQ(process.start_ticks, process_start_ticks(process.pid).value_or(0));
  EXPECT_NE(process.start_ticks, 0u);

  ASSERT_TRUE(wait_for_output("/$HOME\n"));
  const std::string out = read_file(dir_ / "logs" / "stdout.log");
  // The agent's own variables stay with the agent.
  EXPECT_THAT(out, HasSubstr("env " + std::to_string(http) + " " + std::to_string(admin) +
                             " 1.4.2 web/3 shop web 7 info none\n"));
  // ${...} is ours; a bare $HOME is left for the shell (here: none).
  EXPECT_THAT(out, HasSubstr("arg --port=" + std::to_string(http) + "/1.4.2/$HOME\n"));
  EXPECT_EQ(driver_->poll(process).state, ProcessState::kRunning);
}

// quality.md: members never inherit the agent's environment (which may hold
// TRANCHE_TOKEN); theirs is the agent's PATH, their spec's env and ours.
TEST_F(ProcessDriverTest, MemberEnvironmentIsExplicit) {
  const test::ScopedEnv token("TRANCHE_TOKEN", "secret-of-the-agent");
  const auto process = start(make_spec({"env"}, {"http"}));
  EXPECT_TRUE(wait_exit(process).exit_code == 0);
  const auto env = test::parse_env(read_file(dir_ / "logs" / "stdout.log"));
  std::vector<std::string> names;
  for (const auto& [name, value] : env) {
    names.push_back(name);
  }
  EXPECT_THAT(names, ::testing::ElementsAre("LOG_LEVEL", "PATH", "PORT_HTTP", "TRANCHE_APP", "TRANCHE_CLUSTER",
                                            "TRANCHE_MEMBER", "TRANCHE_REVISION", "VERSION"));
  EXPECT_EQ(env.at("PATH"), std::getenv("PATH"));
  EXPECT_EQ(env.at("PORT_HTTP"), std::to_string(process.ports.at("http")));
}

// The spec's env may set PATH itself, and the command is looked up in it.
TEST_F(ProcessDriverTest, SpecPathWinsOverTheAgents) {
  std::filesystem::create_directories(dir_ / "bin");
  write_file(dir_ / "bin" / "member-program", "#!/bin/sh\necho ran with $PATH\n");
  std::filesystem::permissions(dir_ / "bin" / "member-program", std::filesystem::perms::owner_all);
  auto spec = make_spec({"member-program"});
  spec.env["PATH"] = (dir_ / "bin").string() + ":/usr/bin:/bin";
  const auto process = start(spec);
  EXPECT_TRUE(wait_exit(process).exit_code == 0);
  EXPECT_EQ(read_file(dir_ / "logs" / "stdout.log"), "ran with " + spec.env["PATH"] + "\n");
}

TEST_F(ProcessDriverTest, UnknownVariableIsAnError) {
  auto result = driver_->start(make_spec({"echo", "${NOPE_NOT_SET}"}), dir_ / "logs");
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("NOPE_NOT_SET"));
  EXPECT_EQ(result.error().field, "command[1]");
}

TEST_F(ProcessDriverTest, MemberHasItsOwnSession) {
  const auto process = start(make_spec({"sleep", "60"}));
  const auto pid = static_cast<pid_t>(process.pid);
  EXPECT_EQ(::getsid(pid), pid);
  EXPECT_EQ(::getpgid(pid), pid);
  EXPECT_NE(::getsid(pid), ::getsid(0));
}

// quality.md: members never inherit the agent's file descriptors, not even
// one it opened without close-on-exec (Asio's sockets are such).
TEST_F(ProcessDriverTest, MemberInheritsNoDescriptorOfTheAgent) {
  const int leaky = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaky, 3);
  const auto process = start(make_spec({"sh", "-c", "ls /proc/$$/fd; exec sleep 60"}));
  ::close(leaky);
  ASSERT_TRUE(wait_for_output("2\n"));
  EXPECT_EQ(read_file(dir_ / "logs" / "stdout.log"), "0\n1\n2\n") << "only stdin, stdout and stderr";
}

TEST_F(ProcessDriverTest, ReportsExitCodeOfChild) {
  const auto process = start(make_spec({"sh", "-c", "exit 3"}));
  const auto status = wait_exit(process);
  ASSERT_EQ(status.state, ProcessState::kExited);
  EXPECT_EQ(status.exit_code, 3);
  EXPECT_EQ(status.signal, std::nullopt);
  // Polling again after the reap still knows the code.
  EXPECT_EQ(driver_->poll(process).exit_code, 3);
}

TEST_F(ProcessDriverTest, ReportsSignalOfChild) {
  const auto process = start(make_spec({"sh", "-c", "kill -USR1 $$"}));
  const auto status = wait_exit(process);
  ASSERT_EQ(status.state, ProcessState::kExited);
  EXPECT_EQ(status.exit_code, std::nullopt);
  EXPECT_EQ(status.signal, SIGUSR1);
}

TEST_F(ProcessDriverTest, StopSendsTerm) {
  const auto process = start(make_spec({"sleep", "60"}));
  driver_->begin_stop(process, 30s);
  const auto status = wait_exit(process);
  ASSERT_EQ(status.state, ProcessState::kExited);
  EXPECT_EQ(status.signal, SIGTERM);
}

TEST_F(ProcessDriverTest, StopEscalatesToKillForTheWholeGroup) {
  const auto process = start(make_spec(
      {"sh", "-c", "trap '' TERM; sleep 60 & echo $! > " + (dir_ / "child.pid").string() + "; echo ready; wait"}));
  ASSERT_TRUE(wait_for_output("ready"));
  const pid_t child = read_pid_file(dir_ / "child.pid");
  ASSERT_GT(child, 0);
  track(child);

  const auto begun = std::chrono::steady_clock::now();
  driver_->begin_stop(process, 200ms);
  EXPECT_EQ(driver_->poll(process).state, ProcessState::kRunning);  // TERM is ignored
  const auto status = wait_exit(process);
  ASSERT_EQ(status.state, ProcessState::kExited);
  EXPECT_EQ(status.signal, SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - begun, 200ms);
  EXPECT_TRUE(wait_until([&] { return !is_alive(child); }));
}

TEST_F(ProcessDriverTest, MissingProgramIsAnError) {
  auto in_path = driver_->start(make_spec({"tranche-no-such-program"}), dir_ / "logs");
  ASSERT_FALSE(in_path);
  EXPECT_THAT(in_path.error().message, HasSubstr("tranche-no-such-program"));

  // Reported by the child through the exec pipe, not as an exit.
  auto absolute = driver_->start(make_spec({"/nonexistent/tranche-prog", "x"}), dir_ / "logs");
  ASSERT_FALSE(absolute);
  EXPECT_THAT(absolute.error().message, HasSubstr("No such file or directory"));
  EXPECT_THAT(absolute.error().message, HasSubstr("/nonexistent/tranche-prog"));
}

TEST_F(ProcessDriverTest, NonExecutableProgramIsAnError) {
  write_file(dir_ / "not-exec", "#!/bin/sh\necho hi\n");
  ::chmod((dir_ / "not-exec").c_str(), 0644);
  auto result = driver_->start(make_spec({(dir_ / "not-exec").string()}), dir_ / "logs");
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("Permission denied"));
}

TEST_F(ProcessDriverTest, MissingWorkdirIsAnError) {
  auto spec = make_spec({"true"});
  spec.workdir = (dir_ / "nope").string();
  auto result = driver_->start(spec, dir_ / "logs");
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("nope"));
}

TEST_F(ProcessDriverTest, RunsInWorkdirWithStderrInItsOwnFile) {
  std::filesystem::create_directories(dir_ / "wd");
  auto spec = make_spec({"sh", "-c", "pwd; echo oops >&2; read line; echo \"stdin:$line\""});
  spec.workdir = (dir_ / "wd").string();
  const auto process = start(spec);
  const auto status = wait_exit(process);
  EXPECT_EQ(status.exit_code, 0);
  const std::string out = read_file(dir_ / "logs" / "stdout.log");
  EXPECT_THAT(out, HasSubstr(std::filesystem::canonical(dir_ / "wd").string() + "\n"));
  EXPECT_THAT(out, HasSubstr("stdin:\n"));  // stdin is /dev/null
  EXPECT_EQ(read_file(dir_ / "logs" / "stderr.log"), "oops\n");
}

TEST_F(ProcessDriverTest, RunsInItsLogDirWithoutWorkdir) {
  const auto process = start(make_spec({"pwd"}));
  EXPECT_EQ(wait_exit(process).exit_code, 0);
  EXPECT_EQ(read_file(dir_ / "logs" / "stdout.log"), std::filesystem::canonical(dir_ / "logs").string() + "\n");
}

TEST_F(ProcessDriverTest, ResolvesProgramThroughTheMembersPath) {
  std::filesystem::create_directories(dir_ / "bin");
  write_file(dir_ / "bin" / "tranche-tool", "#!/bin/sh\necho tool $1\n");
  write_file(dir_ / "bin" / "tranche-plain", "echo plain script\n");  // no #!: run by /bin/sh
  ::chmod((dir_ / "bin" / "tranche-tool").c_str(), 0755);
  ::chmod((dir_ / "bin" / "tranche-plain").c_str(), 0755);

  auto spec = make_spec({"tranche-tool", "${TRANCHE_MEMBER}"});
  spec.env["PATH"] = (dir_ / "bin").string() + ":/usr/bin:/bin";
  EXPECT_EQ(wait_exit(start(spec)).exit_code, 0);
  spec.command = {"tranche-plain"};
  EXPECT_EQ(wait_exit(start(spec)).exit_code, 0);
  const std::string out = read_file(dir_ / "logs" / "stdout.log");
  EXPECT_THAT(out, HasSubstr("tool web/3\n"));
  EXPECT_THAT(out, HasSubstr("plain script\n"));
}

TEST_F(ProcessDriverTest, AdoptedProcessIsWatchedThroughProc) {
  const pid_t pid = start_orphan_sleep();
  ASSERT_GT(pid, 0);
  track(pid);
  const auto ticks = process_start_ticks(pid);
  ASSERT_TRUE(ticks);
  MemberProcess process;
  process.member = "web/1";
  process.pid = pid;
  process.start_ticks = *ticks;

  EXPECT_EQ(driver_->poll(process).state, ProcessState::kRunning);
  ::kill(pid, SIGKILL);
  const auto status = wait_exit(process);
  ASSERT_EQ(status.state, ProcessState::kExited);
  EXPECT_EQ(status.exit_code, std::nullopt);
  EXPECT_EQ(status.signal, std::nullopt);
}

TEST_F(ProcessDriverTest, AdoptedProcessCanBeStopped) {
  const pid_t pid = start_orphan_sleep();
  ASSERT_GT(pid, 0);
  track(pid);
  MemberProcess process;
  process.pid = pid;
  process.start_ticks = process_start_ticks(pid).value_or(0);
  driver_->begin_stop(process, 30s);
  EXPECT_EQ(wait_exit(process).state, ProcessState::kExited);
  EXPECT_TRUE(wait_until([&] { return !is_alive(pid); }));
}

TEST_F(ProcessDriverTest, ReusedPidIsNotTheMember) {
  const pid_t pid = start_orphan_sleep();
  ASSERT_GT(pid, 0);
  track(pid);
  MemberProcess stranger;
  stranger.pid = pid;
  stranger.start_ticks = process_start_ticks(pid).value_or(0) + 1;  // another process's start

  EXPECT_EQ(driver_->poll(stranger).state, ProcessState::kExited);
  EXPECT_EQ(driver_->poll(stranger).exit_code, std::nullopt);
  // Stopping it must not signal the process that now owns the pid.
  driver_->begin_stop(stranger, 0ms);
  driver_->poll(stranger);
  EXPECT_FALSE(wait_until([&] { return !is_alive(pid); }, 200ms));
}

TEST_F(ProcessDriverTest, ReusedPidOfOurOwnChildIsNotTheMember) {
  // A journal entry whose pid now belongs to a member this agent started.
  const auto current = start(make_spec({"sleep", "60"}));
  MemberProcess old = current;
  old.start_ticks = current.start_ticks - 1;
  EXPECT_EQ(driver_->poll(old).state, ProcessState::kExited);
  EXPECT_EQ(driver_->poll(current).state, ProcessState::kRunning);
  driver_->begin_stop(old, 0ms);
  EXPECT_EQ(driver_->poll(current).state, ProcessState::kRunning);
  EXPECT_TRUE(is_alive(static_cast<pid_t>(current.pid)));
}

TEST_F(ProcessDriverTest, StartTicksOfGonePid) {
  EXPECT_TRUE(process_start_ticks(::getpid()));
  EXPECT_FALSE(process_start_ticks(0));
  EXPECT_FALSE(process_start_ticks(-5));
  EXPECT_FALSE(process_start_ticks(std::numeric_limits<int32_t>::max()));
}

std::string numbered_lines(int from, int to) {
  std::string text;
  char line[32];
  for (int i = from; i < to; ++i) {
    std::snprintf(line, sizeof line, "line %04d\n", i);  // 10 bytes
    text += line;
  }
  return text;
}

TEST_F(ProcessDriverTest, RotationKeepsTheNewestHalf) {
  auto driver = make_process_driver(ProcessDriverOptions{.max_log_bytes = 1000});
  std::filesystem::create_directories(dir_ / "logs");
  write_file(dir_ / "logs" / "stdout.log", numbered_lines(0, 500));  // 5000 bytes
  write_file(dir_ / "logs" / "stderr.log", "small\n");
  MemberProcess process;
  process.log_dir = dir_ / "logs";

  driver->rotate_logs(process);
  const std::string out = read_file(dir_ / "logs" / "stdout.log");
  EXPECT_LE(out.size(), 500u);
  EXPECT_EQ(out, numbered_lines(500 - static_cast<int>(out.size()) / 10, 500));
  EXPECT_EQ(read_file(dir_ / "logs" / "stderr.log"), "small\n");
  driver->rotate_logs(process);  // under the cap: unchanged
  EXPECT_EQ(read_file(dir_ / "logs" / "stdout.log"), out);
}

TEST_F(ProcessDriverTest, RotationUnderALiveWriter) {
  auto driver = make_process_driver(ProcessDriverOptions{.max_log_bytes = 1000});
  const auto go = dir_ / "go";
  auto spec = make_spec({"sh", "-c",
                         "i=0; while [ $i -lt 300 ]; do echo \"line $i .........\"; i=$((i+1)); done; echo done1; "
                         "while [ ! -f " +
                             go.string() + " ]; do sleep 0.01; done; echo after; exec sleep 60"});
  auto process = test::ok(driver->start(spec, dir_ / "logs"));
  track(static_cast<pid_t>(process.pid));
  ASSERT_TRUE(wait_for_output("done1\n"));
  ASSERT_GT(std::filesystem::file_size(dir_ / "logs" / "stdout.log"), 1000u);

  driver->rotate_logs(process);
  EXPECT_LE(std::filesystem::file_size(dir_ / "logs" / "stdout.log"), 1000u);
  write_file(go, "");
  ASSERT_TRUE(wait_for_output("after\n"));
  // The member writes with O_APPEND: its next line lands at the new end, with
  // no hole of zeros where the dropped part was.
  const std::string out = read_file(dir_ / "logs" / "stdout.log");
  EXPECT_LE(out.size(), 1000u);
  EXPECT_EQ(out.find('\0'), std::string::npos);
  EXPECT_THAT(out, ::testing::EndsWith("done1\nafter\n"));
}

TEST(RunHookTest, ReportsExitCodeAndOutput) {
  TempDir dir;
  const auto output = dir / "hooks" / "drain.log";
  auto outcome =
      run_hook({"sh", "-c", "echo out $HOOK_VAR; echo err >&2; exit 3"}, {{"HOOK_VAR", "v1"}}, {}, output, 10s);
  EXPECT_EQ(outcome.exit_code, 3);
  EXPECT_EQ(outcome.message, "hook exited 3");
  EXPECT_EQ(read_file(output), "out v1\nerr\n");

  outcome = run_hook({"true"}, {}, {}, output, 10s);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.message, "hook exited 0");
  outcome = run_hook({"sh", "-c", "echo again"}, {}, {}, output, 10s);
  EXPECT_EQ(read_file(output), "out v1\nerr\nagain\n");  // appended
}

TEST(RunHookTest, HookEnvironmentIsExplicit) {
  const test::ScopedEnv token("TRANCHE_TOKEN", "secret-of-the-agent");
  TempDir dir;
  auto outcome = run_hook({"env"}, {{"TRANCHE_MEMBER", "web/3"}}, {}, dir / "out.log", 10s);
  EXPECT_EQ(outcome.exit_code, 0);
  const auto env = test::parse_env(read_file(dir / "out.log"));
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"PATH", std::getenv("PATH")}, {"TRANCHE_MEMBER", "web/3"}}));
}

TEST(RunHookTest, RunsInWorkdir) {
  TempDir dir;
  std::filesystem::create_directories(dir / "wd");
  auto outcome = run_hook({"sh", "-c", "pwd"}, {}, dir / "wd", dir / "out.log", 10s);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(read_file(dir / "out.log"), std::filesystem::canonical(dir / "wd").string() + "\n");
}

TEST(RunHookTest, TimeoutKillsTheHookAndWhatItStarted) {
  TempDir dir;
  const auto pid_file = dir / "bg.pid";
  const auto begun = std::chrono::steady_clock::now();
  auto outcome =
      run_hook({"sh", "-c", "sleep 60 & echo $! > " + pid_file.string() + "; wait"}, {}, {}, dir / "out.log", 300ms);
  const auto took = std::chrono::steady_clock::now() - begun;
  EXPECT_EQ(outcome.exit_code, -1);
  EXPECT_EQ(outcome.message, "hook timed out after 300ms");
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 10s);
  const pid_t background = read_pid_file(pid_file);
  ASSERT_GT(background, 0);
  EXPECT_TRUE(wait_until([&] { return !is_alive(background); }));
  if (is_alive(background)) {
    ::kill(background, SIGKILL);
  }

  outcome = run_hook({"sleep", "60"}, {}, {}, dir / "out.log", 1s);
  EXPECT_EQ(outcome.message, "hook timed out after 1s");
}

TEST(RunHookTest, CannotStart) {
  TempDir dir;
  auto outcome = run_hook({"tranche-no-such-hook"}, {}, {}, dir / "out.log", 10s);
  EXPECT_EQ(outcome.exit_code, -1);
  EXPECT_THAT(outcome.message, ::testing::StartsWith("cannot start hook: "));
  EXPECT_THAT(outcome.message, HasSubstr("tranche-no-such-hook"));

  outcome = run_hook({"/nonexistent/hook"}, {}, {}, dir / "out.log", 10s);
  EXPECT_EQ(outcome.exit_code, -1);
  EXPECT_THAT(outcome.message, HasSubstr("No such file"));

  outcome = run_hook({}, {}, {}, dir / "out.log", 10s);
  EXPECT_EQ(outcome.exit_code, -1);
}

}  // namespace
}  // namespace tranche::agent
