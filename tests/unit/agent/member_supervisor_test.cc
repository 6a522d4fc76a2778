// The members' lifecycle on a host (agent/member_supervisor.h), driven
// through a scripted Driver: which process runs, stops or exits is the
// test's to say, so every step is checked without starting a process. The
// hooks and the real process driver are exercised by agent_update_test.cc
// and process_driver_test.cc.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "agent/member_supervisor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace tranche::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class RecordingSession final : public MemberSupervisor::Session {
 public:
  Status save_journal() override {
    ++saves;
    return {};
  }
  void answer(const protocol::CommandResult& result) override { results.push_back(result); }
  void report(const protocol::AgentEvent& event) override { events.push_back(event); }

  int saves = 0;
  std::vector<protocol::CommandResult> results;
  std::vector<protocol::AgentEvent> events;
};

// Processes that run until the test says they exited.
class ScriptedDriver final : public Driver {
 public:
  explicit ScriptedDriver(const RecordingSession& session) : session_(session) {}

  Result<MemberProcess> start(const LaunchSpec& spec, const fs::path& log_dir) override {
    if (refuse_next) {
      refuse_next = false;
      return fail(ErrorCode::kUnavailable, "cannot start " + spec.command.at(0));
    }
    started.push_back(spec);
    return MemberProcess{spec.member, next_pid_++, 1, {{"main", 20000 + static_cast<int>(started.size())}}, log_dir};
  }

  void begin_stop(const MemberProcess& process, std::chrono::milliseconds grace) override {
    stops.push_back({process.pid, grace, session_.saves});
  }

  ProcessStatus poll(const MemberProcess& process) override {
    ++polls;
    auto it = exited_.find(process.pid);
    return it == exited_.end() ? ProcessStatus{} : it->second;
  }

  void rotate_logs(const MemberProcess&) override {}

  void exit(int64_t pid, std::optional<int> code = 0) { exited_[pid] = {ProcessState::kExited, code, std::nullopt}; }

  struct Stop {
    int64_t pid;
    std::chrono::milliseconds grace;
    int saves_before;  // journal writes the session had seen when the stop began
  };
  std::vector<LaunchSpec> started;
  std::vector<Stop> stops;
  int polls = 0;
  bool refuse_next = false;

 private:
  const RecordingSession& session_;
  std::map<int64_t, ProcessStatus> exited_;
  int64_t next_pid_ = 100;
};

protocol::StartSpec web_start() {
  protocol::StartSpec s;
  s.app = "shop";
  s.cluster = "web";
  s.revision = 3;
  s.version = "1.2.0";
  s.command = {"web-server", "--port", "${PORT_MAIN}"};
  s.ports = {"main"};
  return s;
}

class MemberSupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = fs::temp_directory_path() /
                 ("member-supervisor-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(state_dir_);
    auto driver = std::make_unique<ScriptedDriver>(session_);
    driver_ = driver.get();
    supervisor_ = std::make_unique<MemberSupervisor>(io_, state_dir_, members_, session_, std::move(driver));
  }

  void TearDown() override {
    supervisor_->stop_watching();
    io_.run_for(50ms);
    supervisor_.reset();
    fs::remove_all(state_dir_);
  }

  // Runs the event loop (the supervisor's polls) until `done`, for 5 s at most.
  bool run_until(const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > give_up) {
        return false;
      }
      io_.run_for(10ms);
    }
    return true;
  }

  void start(const std::string& id, const std::string& member) {
    supervisor_->start_member(protocol::Command{id, member, web_start()}, web_start());
  }

  const protocol::CommandResult* result(const std::string& id) const {
    for (const auto& r : session_.results) {
      if (r.id == id) {
        return &r;
      }
    }
    return nullptr;
  }

  boost::asio::io_context io_;
  fs::path state_dir_;
  std::map<std::string, JournalMember> members_;
  RecordingSession session_;
  ScriptedDriver* driver_ = nullptr;
  std::unique_ptr<MemberSupervisor> supervisor_;
};

TEST_F(MemberSupervisorTest, AStartRunsTheSpecAndAnswersWithTheProcess) {
  start("c1", "web/1");
  ASSERT_EQ(driver_->started.size(), 1u);
  const LaunchSpec& spec = driver_->started[0];
  EXPECT_EQ(spec.member, "web/1");
  EXPECT_EQ(spec.app, "shop");
  EXPECT_EQ(spec.revision, 3);
  EXPECT_EQ(spec.command, web_start().command);
  ASSERT_NE(result("c1"), nullptr);
  EXPECT_TRUE(result("c1")->ok);
  ASSERT_NE(result("c1")->process(), nullptr);
  EXPECT_EQ(result("c1")->process()->pid, 100);
  EXPECT_EQ(members_.at("web/1").state, "Running");
  EXPECT_EQ(members_.at("web/1").process->pid, 100);
}

TEST_F(MemberSupervisorTest, AStartOfAMemberAlreadyRunningStartsNothingMore) {
  start("c1", "web/1");
  start("c2", "web/1");  // the controller sent it again (a lost result)
  EXPECT_EQ(driver_->started.size(), 1u);
  ASSERT_NE(result("c2"), nullptr);
  EXPECT_TRUE(result("c2")->ok);
  EXPECT_EQ(result("c2")->message, "already running");
  EXPECT_EQ(result("c2")->process()->pid, 100);
}

TEST_F(MemberSupervisorTest, AStartTheDriverRefusesFailsAndLeavesNoMember) {
  driver_->refuse_next = true;
  start("c1", "web/1");
  ASSERT_NE(result("c1"), nullptr);
  EXPECT_FALSE(result("c1")->ok);
  EXPECT_NE(result("c1")->message.find("cannot start web-server"), std::string::npos) << result("c1")->message;
  EXPECT_FALSE(members_.contains("web/1"));
}

TEST_F(MemberSupervisorTest, AStopIsJournaledBeforeItActsAndAnsweredOnceTheProcessEnded) {
  start("c1", "web/1");
  supervisor_->watch();
  const int saves = session_.saves;
  supervisor_->stop_member(protocol::Command{"c2", "web/1", protocol::StopSpec{2500, {}}},
                           protocol::StopSpec{2500, {}});
  ASSERT_EQ(driver_->stops.size(), 1u);
  EXPECT_EQ(driver_->stops[0].pid, 100);
  EXPECT_EQ(driver_->stops[0].grace, 2500ms);
  EXPECT_GT(driver_->stops[0].saves_before, saves) << "Stopping was journaled before the process was signalled";
  EXPECT_EQ(members_.at("web/1").state, "Stopping");
  const int polls = driver_->polls;
  ASSERT_TRUE(run_until([&] { return driver_->polls >= polls + 3; }));
  EXPECT_EQ(result("c2"), nullptr) << "not answered while the process runs";

  driver_->exit(100);
  ASSERT_TRUE(run_until([&] { return result("c2") != nullptr; }));
  EXPECT_TRUE(result("c2")->ok);
  EXPECT_EQ(result("c2")->message, "stopped");
  EXPECT_FALSE(members_.contains("web/1"));
  EXPECT_TRUE(session_.events.empty()) << "a stopped member is not reported as exited";
}

TEST_F(MemberSupervisorTest, AStopOfAMemberNotRunningIsAnsweredAtOnce) {
  supervisor_->stop_member(protocol::Command{"c1", "web/9", protocol::StopSpec{}}, protocol::StopSpec{});
  ASSERT_NE(result("c1"), nullptr);
  EXPECT_TRUE(result("c1")->ok);
  EXPECT_EQ(result("c1")->message, "not running");
  EXPECT_TRUE(driver_->stops.empty());
}

TEST_F(MemberSupervisorTest, AMemberThatExitsByItselfIsReportedWithItsExitCode) {
  start("c1", "web/1");
  supervisor_->watch();
  driver_->exit(100, 3);
  ASSERT_TRUE(run_until([&] { return !session_.events.empty(); }));
  EXPECT_EQ(session_.events[0].type, "exited");
  EXPECT_EQ(session_.events[0].member, "web/1");
  EXPECT_EQ(session_.events[0].exit_code, 3);
  EXPECT_EQ(members_.at("web/1").state, "Exited");
  EXPECT_EQ(members_.at("web/1").exit_code, 3);

  start("c2", "web/1");  // an exited member starts again on the next start
  EXPECT_EQ(driver_->started.size(), 2u);
  EXPECT_EQ(members_.at("web/1").state, "Running");
}

TEST_F(MemberSupervisorTest, AMaintenanceWithoutAHookRestartsTheMemberThenSaysResumed) {
  start("c1", "web/1");
  supervisor_->watch();
  supervisor_->maintain_member(protocol::Command{"c2", "web/1", protocol::MaintenanceSpec{4000, {}}},
                               protocol::MaintenanceSpec{4000, {}});
  ASSERT_EQ(driver_->stops.size(), 1u);
  EXPECT_EQ(driver_->stops[0].pid, 100);
  EXPECT_EQ(members_.at("web/1").state, "Restarting");
  EXPECT_EQ(result("c2"), nullptr);

  driver_->exit(100);
  ASSERT_TRUE(run_until([&] { return result("c2") != nullptr; }));
  EXPECT_TRUE(result("c2")->ok);
  EXPECT_EQ(result("c2")->message, "no maintenance hook");
  ASSERT_EQ(driver_->started.size(), 2u) << "started again with the same spec";
  EXPECT_EQ(driver_->started[1].command, web_start().command);
  EXPECT_EQ(result("c2")->process()->pid, 101);
  EXPECT_EQ(members_.at("web/1").state, "Running");
  ASSERT_EQ(session_.events.size(), 1u);
  EXPECT_EQ(session_.events[0].type, "resumed");
  EXPECT_EQ(session_.events[0].member, "web/1");
}

TEST_F(MemberSupervisorTest, AMaintenanceWhoseRestartFailsIsAFailedResultAndTheMemberExited) {
  start("c1", "web/1");
  supervisor_->watch();
  supervisor_->maintain_member(protocol::Command{"c2", "web/1", protocol::MaintenanceSpec{}},
                               protocol::MaintenanceSpec{});
  driver_->refuse_next = true;
  driver_->exit(100);
  ASSERT_TRUE(run_until([&] { return result("c2") != nullptr; }));
  EXPECT_FALSE(result("c2")->ok);
  EXPECT_NE(result("c2")->message.find("restart after maintenance failed"), std::string::npos);
  EXPECT_EQ(members_.at("web/1").state, "Exited");
  EXPECT_TRUE(session_.events.empty()) << "no resumed";
}

TEST_F(MemberSupervisorTest, AMaintenanceOfAMemberNotRunningFails) {
  supervisor_->maintain_member(protocol::Command{"c1", "web/9", protocol::MaintenanceSpec{}},
                               protocol::MaintenanceSpec{});
  ASSERT_NE(result("c1"), nullptr);
  EXPECT_FALSE(result("c1")->ok);
  EXPECT_EQ(result("c1")->message, "member is not running here");
}

}  // namespace
}  // namespace tranche::agent
