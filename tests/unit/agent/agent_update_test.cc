// The real `tranche agent` against a fake controller: in-place updates
// (updates.md, "method: in-place") and hook logs, also across an agent
// killed mid-way, and commands it cannot read. Members are the real sample
// workload, tranche-hello.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/journal.h"
#include "agent_process.h"
#include "agent_test_util.h"
#include "fake_controller.h"

extern char** environ;

namespace tranche::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::AgentProcess;
using test::FakeController;
using test::is_alive;
using test::read_file;
using test::TempDir;
using test::wait_until;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// GET http://127.0.0.1:PORT/ of tranche-hello: {"version", "member"}; null
// when it does not answer.
json hello_root(int port) {
  namespace http = boost::beast::http;
  try {
    boost::asio::io_context io;
    boost::beast::tcp_stream stream(io);
    stream.expires_after(2s);
    stream.connect(
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    http::request<http::empty_body> request(http::verb::get, "/", 11);
    request.set(http::field::host, "127.0.0.1");
    http::write(stream, request);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    return json::parse(response.body(), nullptr, false);
  } catch (const std::exception&) {
    return nullptr;
  }
}

int http_port(const json& result) { return result["data"]["ports"].value("http", 0); }
pid_t pid_of(const json& result) { return result["data"].value("pid", pid_t{-1}); }

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

class AgentUpdateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_.start();
    ASSERT_TRUE(connected()) << agent_log();
  }

  void TearDown() override {
    agent_.kill();
    // Members and hooks run in sessions of their own and outlive the agent.
    if (const std::string hook = read_file(dir_ / "hook.pid"); !hook.empty()) {
      pids_.insert(std::stoi(hook));
    }
    if (auto journal = Journal(dir_ / "agent").load()) {
      for (const auto& [id, m] : journal->members) {
        if (m.process) {
          pids_.insert(static_cast<pid_t>(m.process->pid));
        }
      }
    }
    for (pid_t pid : pids_) {
      test::kill_and_reap(pid);
    }
  }

  bool connected() {
    return wait_until([&] { return controller_.connected(); });
  }

  std::string agent_log() const { return "agent log:\n" + read_file(dir_ / "agent.log"); }

  // A start (or, with `hook`, update) spec of revision `revision`, version
  // `version`, running tranche-hello on port "http".
  static json spec(int revision, const std::string& version) {
    return json{{"app", "shop"},
                {"cluster", "web"},
                {"revision", revision},
                {"version", version},
                {"command", {HELLO_BINARY, "--port", "${PORT_HTTP}"}},
                {"env", {{"GREETING", "v" + version}}},
                {"ports", {"http"}},
                {"health", {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}}}};
  }

  static json update_spec(int revision, const std::string& version, const std::string& hook_script,
                          int64_t grace_ms = 10000) {
    json s = spec(revision, version);
    s["hook"] = hook_script.empty() ? json::array() : json{"sh", "-c", hook_script};
    s["graceMs"] = grace_ms;
    return s;
  }

  // Sends a command and waits for its first result.
  json run(const std::string& id, const std::string& type, const std::string& member, const json& command_spec,
           std::chrono::milliseconds timeout = 20s) {
    const size_t before = controller_.results(id).size();
    controller_.command(id, type, member, command_spec);
    return await_result(id, before + 1, timeout);
  }

  // Waits until `count` results for `id` have arrived; returns the last.
  json await_result(const std::string& id, size_t count = 1, std::chrono::milliseconds timeout = 20s) {
    const bool arrived = wait_until([&] { return controller_.results(id).size() >= count; }, timeout);
    EXPECT_TRUE(arrived) << "no result for " << id << "\n" << agent_log();
    if (!arrived) {
      return json::object();
    }
    json result = controller_.results(id).back();
    if (result["data"].is_object() && result["data"].contains("pid")) {
      pids_.insert(pid_of(result));
    }
    return result;
  }

  // Starts web/0 on revision 1, version 1.0, and waits until it serves.
  json start_member() {
    json started = run("start:web/0", "start", "web/0", spec(1, "1.0"));
    EXPECT_TRUE(started.value("ok", false)) << started.dump();
    EXPECT_TRUE(wait_until([&] { return hello_root(http_port(started)).is_object(); }));
    return started;
  }

  // A hook that says it runs (a line in `runs`) and holds until the test
  // writes the file "release" (30 s at most).
  std::string blocking_hook(const fs::path& runs) const {
    return "echo $$ > " + quoted(dir_ / "hook.pid") + "; echo run >> " + quoted(runs) + "; i=0; while [ ! -e " +
           quoted(dir_ / "release") + " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done";
  }

  std::string journal_state(const std::string& member) {
    auto journal = Journal(dir_ / "agent").load();
    if (!journal || !journal->members.contains(member)) {
      return "";
    }
    return journal->members.at(member).state;
  }

  TempDir dir_;
  FakeController controller_;
  AgentProcess agent_{dir_ / "agent", controller_.url(), dir_ / "agent.log"};
  std::set<pid_t> pids_;  // every member process seen, killed at the end
};

TEST_F(AgentUpdateTest, UpdateRunsTheHookThenRestartsTheMemberOnTheNewTemplate) {
  const json started = start_member();
  const fs::path marker = dir_ / "marker";
  const json updated =
      run("update:web/0:2", "update", "web/0",
          update_spec(2, "2.0",
                      "echo \"$TRANCHE_TARGET_REVISION $VERSION $TRANCHE_REVISION $TRANCHE_MEMBER $TRANCHE_APP "
                      "$TRANCHE_CLUSTER $GREETING $PORT_HTTP\" > " +
                          quoted(marker) + "; echo upgraded to $VERSION"));

  ASSERT_TRUE(updated.value("ok", false)) << updated.dump() << agent_log();
  EXPECT_THAT(updated.value("message", ""), HasSubstr("revision 2"));
  EXPECT_EQ(read_file(marker),
            "2 2.0 2 web/0 shop web v2.0 " + std::to_string(http_port(started)) + "\n");  // the old process's port
  ASSERT_GT(pid_of(updated), 0);
  EXPECT_NE(pid_of(updated), pid_of(started));
  EXPECT_TRUE(wait_until([&] { return !is_alive(pid_of(started)); }));
  json root;
  ASSERT_TRUE(wait_until([&] { return (root = hello_root(http_port(updated))).is_object(); }));
  EXPECT_EQ(root.value("version", ""), "2.0");
  EXPECT_EQ(root.value("member", ""), "web/0");

  // Reported, and journaled, as the same member on the new template, with a
  // fresh health state that the new process's checks make healthy.
  ASSERT_TRUE(wait_until([&] {
    auto r = controller_.report("web/0");
    return r && r->value("pid", 0) == pid_of(updated) && r->value("healthy", false);
  }));
  EXPECT_EQ(controller_.report("web/0")->value("state", ""), "Running");
  EXPECT_EQ((*controller_.report("web/0"))["ports"]["http"], http_port(updated));
  auto journal = test::ok(Journal(dir_ / "agent").load());
  const JournalMember& m = journal.members.at("web/0");
  EXPECT_EQ(m.spec.revision, 2);
  EXPECT_EQ(m.spec.version, "2.0");
  EXPECT_FALSE(m.update);
  EXPECT_EQ(m.health["http"]["path"], "/healthz");

  const json logs = run("logs:1", "logs", "web/0", {{"hook", "update"}});
  EXPECT_TRUE(logs.value("ok", false));
  EXPECT_EQ(logs["data"]["stdout"], "upgraded to 2.0\n");
  EXPECT_EQ(logs["data"]["stderr"], "");
}

TEST_F(AgentUpdateTest, WithoutAHookTheMemberIsRestartedOnTheNewTemplate) {
  const json started = start_member();
  const json updated = run("update:web/0:2", "update", "web/0", update_spec(2, "2.0", ""));
  ASSERT_TRUE(updated.value("ok", false)) << updated.dump();
  EXPECT_THAT(updated.value("message", ""), HasSubstr("no update hook"));
  json root;
  ASSERT_TRUE(wait_until([&] { return (root = hello_root(http_port(updated))).is_object(); }));
  EXPECT_EQ(root.value("version", ""), "2.0");
}

TEST_F(AgentUpdateTest, AFailingHookLeavesTheOldProcessRunning) {
  const json started = start_member();
  const json updated =
      run("update:web/0:2", "update", "web/0", update_spec(2, "2.0", "echo checking; echo 'disk full' >&2; exit 3"));

  EXPECT_FALSE(updated.value("ok", true));
  EXPECT_EQ(updated.value("exitCode", 0), 3);
  EXPECT_EQ(updated.value("message", ""), "update hook failed (exit 3): disk full");
  EXPECT_TRUE(is_alive(pid_of(started)));
  EXPECT_EQ(hello_root(http_port(started)).value("version", ""), "1.0");
  ASSERT_TRUE(wait_until([&] {
    auto r = controller_.report("web/0");
    return r && r->value("state", "") == "Running" && r->value("healthy", false);
  }));
  EXPECT_EQ(controller_.report("web/0")->value("pid", 0), pid_of(started));
  auto journal = test::ok(Journal(dir_ / "agent").load());
  EXPECT_EQ(journal.members.at("web/0").spec.revision, 1);
  EXPECT_EQ(journal.members.at("web/0").spec.version, "1.0");
  EXPECT_FALSE(journal.members.at("web/0").update);

  // A later update of the same member may still succeed.
  const json retried = run("update:web/0:3", "update", "web/0", update_spec(3, "3.0", "true"));
  EXPECT_TRUE(retried.value("ok", false)) << retried.dump();
}

TEST_F(AgentUpdateTest, AHookThatCannotStartFailsTheUpdate) {
  const json started = start_member();
  json s = update_spec(2, "2.0", "");
  s["hook"] = {"/nonexistent/update-hook"};
  const json updated = run("update:web/0:2", "update", "web/0", s);
  EXPECT_FALSE(updated.value("ok", true));
  EXPECT_FALSE(updated.contains("exitCode"));
  EXPECT_THAT(updated.value("message", ""), HasSubstr("update hook failed (cannot start hook"));
  EXPECT_TRUE(is_alive(pid_of(started)));
}

TEST_F(AgentUpdateTest, AMemberThatIsNotRunningHereIsNotUpdated) {
  const json updated = run("update:web/9:2", "update", "web/9", update_spec(2, "2.0", "true"));
  EXPECT_FALSE(updated.value("ok", true));
  EXPECT_EQ(updated.value("message", ""), "member is not running here");
}

TEST_F(AgentUpdateTest, ARedeliveredUpdateDoesNotRunTheHookAgain) {
  start_member();
  const fs::path runs = dir_ / "runs";
  // The hook holds until the test releases it, so the redelivery below
  // arrives while it runs.
  const std::string hook = blocking_hook(runs);
  controller_.command("update:web/0:2", "update", "web/0", update_spec(2, "2.0", hook));
  ASSERT_TRUE(wait_until([&] { return read_file(runs) == "run\n"; })) << agent_log();
  EXPECT_TRUE(wait_until(
      [&] { return controller_.report("web/0").value_or(json::object()).value("state", "") == "Updating"; }));
  const size_t acks = controller_.of_type("ack").size();
  controller_.command("update:web/0:2", "update", "web/0", update_spec(2, "2.0", hook));
  ASSERT_TRUE(wait_until([&] { return controller_.of_type("ack").size() > acks; }));  // taken, not acted on
  test::write_file(dir_ / "release", "");

  const json first = await_result("update:web/0:2");
  ASSERT_TRUE(first.value("ok", false)) << first.dump();
  EXPECT_EQ(controller_.results("update:web/0:2").size(), 1u);  // a redelivery of a running command is silent

  const json again = run("update:web/0:2", "update", "web/0", update_spec(2, "2.0", hook));
  EXPECT_EQ(again, first);  // a redelivery of a finished command gets the same result
  EXPECT_EQ(read_file(runs), "run\n");
}

TEST_F(AgentUpdateTest, AnAgentKilledDuringTheHookFinishesTheUpdateAfterItsRestart) {
  const json started = start_member();
  const fs::path runs = dir_ / "runs";
  const std::string hook = blocking_hook(runs);
  controller_.command("update:web/0:2", "update", "web/0", update_spec(2, "2.0", hook));
  ASSERT_TRUE(wait_until([&] { return read_file(runs) == "run\n"; })) << agent_log();
  EXPECT_EQ(journal_state("web/0"), "Updating");

  agent_.kill();
  ASSERT_TRUE(wait_until([&] { return !controller_.connected(); }));
  EXPECT_TRUE(is_alive(pid_of(started)));  // the member outlives its agent
  agent_.start();

  const json updated = await_result("update:web/0:2");
  ASSERT_TRUE(updated.value("ok", false)) << updated.dump();
  EXPECT_THAT(updated.value("message", ""), HasSubstr("interrupted by an agent restart"));
  EXPECT_EQ(controller_.hellos(), 2u);
  json root;
  ASSERT_TRUE(wait_until([&] { return (root = hello_root(http_port(updated))).is_object(); }));
  EXPECT_EQ(root.value("version", ""), "2.0");
  EXPECT_FALSE(is_alive(pid_of(started)));
  const json again = run("update:web/0:2", "update", "web/0", update_spec(2, "2.0", hook));
  EXPECT_EQ(again, updated);
  test::write_file(dir_ / "release", "");
  EXPECT_EQ(read_file(runs), "run\n");  // not run again by the new incarnation
}

// An agent restarted under a healthy member must not report it unhealthy
// before its first probe: the controller would fail a member that serves.
// Issue 14's fault campaign (seed 4254243005): an agent killed after it
// started a member's process and before it journaled the pid left that
// process running for nobody, while its next incarnation started another.
TEST_F(AgentUpdateTest, AProcessAnEarlierAgentStartedButDidNotJournalIsStopped) {
  const json started = start_member();
  const fs::path members = dir_ / "agent" / "members";
  ASSERT_EQ(std::stoi(read_file(members / "web_0" / "logs" / "pid")), pid_of(started))
      << "the spawn recorded by the process itself";
  agent_.kill();
  ASSERT_TRUE(wait_until([&] { return !controller_.connected(); }));
  // What a killed agent leaves: a process recorded as a member's newest
  // spawn that the journal does not know, for a journaled member (a
  // restart) and for one not journaled yet (a start).
  auto orphan_of = [&](const std::string& member, const std::string& dir) {
    fs::create_directories(members / dir / "logs");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();
      ::setenv("TRANCHE_MEMBER", member.c_str(), 1);
      ::execl("/bin/sleep", "sleep", "60", nullptr);
      ::_exit(127);
    }
    EXPECT_TRUE(wait_until([&] { return read_file("/proc/" + std::to_string(pid) + "/comm") == "sleep\n"; }));
    test::write_file(members / dir / "logs" / "pid", std::to_string(pid));
    return pid;
  };
  const pid_t restarted = orphan_of("web/0", "web_0");
  const pid_t never_journaled = orphan_of("web/1", "web_1");

  agent_.start();
  for (const pid_t orphan : {restarted, never_journaled}) {
    EXPECT_TRUE(wait_until([&] {
      int status = 0;
      return ::waitpid(orphan, &status, WNOHANG) == orphan;
    })) << orphan
        << agent_log();
  }
  EXPECT_TRUE(is_alive(pid_of(started))) << "the journaled process runs on";
}

TEST_F(AgentUpdateTest, AnAgentRestartedUnderAHealthyMemberKeepsReportingItHealthy) {
  // A slow check, so that the first heartbeat after the restart goes out
  // before the new incarnation's first probe has answered.
  json slow = spec(1, "1.0");
  slow["health"] = {{"exec", {"sh", "-c", "sleep 1"}}, {"timeoutSeconds", 3}, {"intervalSeconds", 1}};
  const json started = run("start:web/0", "start", "web/0", slow);
  ASSERT_TRUE(started.value("ok", false)) << started.dump();
  ASSERT_TRUE(wait_until([&] {
    const auto report = controller_.report("web/0");
    return report && report->value("healthy", false);
  })) << agent_log();
  agent_.kill();
  ASSERT_TRUE(wait_until([&] { return !controller_.connected(); }));
  const size_t beats_before = controller_.of_type("heartbeat").size();
  agent_.start();
  ASSERT_TRUE(wait_until([&] { return controller_.of_type("heartbeat").size() >= beats_before + 3; })) << agent_log();
  const auto beats = controller_.of_type("heartbeat");
  for (size_t i = beats_before; i < beats.size(); ++i) {
    ASSERT_EQ(beats[i]["members"].size(), 1u) << beats[i].dump();
    EXPECT_TRUE(beats[i]["members"][0].value("healthy", false)) << "heartbeat " << i << ": " << beats[i].dump();
  }
}

TEST_F(AgentUpdateTest, AnAgentKilledWhileTheOldProcessStopsStartsTheNewOneAfterItsRestart) {
  // The old process takes its time over SIGTERM, so the agent can be killed
  // while it waits for it to end.
  json old_spec = spec(1, "1.0");
  old_spec["command"] = {"sh", "-c", "trap 'sleep 3; exit 0' TERM; while :; do sleep 0.05; done"};
  old_spec["ports"] = json::array();
  old_spec.erase("health");
  const json started = run("start:web/0", "start", "web/0", old_spec);
  ASSERT_TRUE(started.value("ok", false)) << started.dump();

  controller_.command("update:web/0:2", "update", "web/0", update_spec(2, "2.0", "echo ok"));
  ASSERT_TRUE(wait_until([&] { return journal_state("web/0") == "Restarting"; })) << agent_log();
  agent_.kill();
  agent_.start();

  const json updated = await_result("update:web/0:2");
  ASSERT_TRUE(updated.value("ok", false)) << updated.dump();
  EXPECT_THAT(updated.value("message", ""), HasSubstr("update hook succeeded"));
  EXPECT_FALSE(is_alive(pid_of(started)));
  json root;
  ASSERT_TRUE(wait_until([&] { return (root = hello_root(http_port(updated))).is_object(); }));
  EXPECT_EQ(root.value("version", ""), "2.0");
  // The hello after the restart said honestly what the member was doing.
  const auto hellos = controller_.of_type("hello");
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_EQ(hellos[1]["members"][0].value("state", ""), "Restarting");
  EXPECT_EQ(hellos[1]["members"][0].value("revision", 0), 1);
}

TEST_F(AgentUpdateTest, AStopDuringTheHookAnswersTheUpdateToo) {
  const json started = start_member();
  const fs::path runs = dir_ / "runs";
  controller_.command("update:web/0:2", "update", "web/0", update_spec(2, "2.0", blocking_hook(runs)));
  ASSERT_TRUE(wait_until([&] { return read_file(runs) == "run\n"; })) << agent_log();

  const json stopped = run("stop:web/0", "stop", "web/0", {{"graceMs", 5000}});
  EXPECT_TRUE(stopped.value("ok", false)) << stopped.dump();
  const json updated = await_result("update:web/0:2");
  EXPECT_FALSE(updated.value("ok", true));
  EXPECT_EQ(updated.value("message", ""), "the member was stopped before its update finished");
  EXPECT_FALSE(is_alive(pid_of(started)));

  // The hook ending afterwards neither answers again nor brings the member back.
  test::write_file(dir_ / "release", "");
  ASSERT_TRUE(wait_until([&] { return !is_alive(std::stoi(read_file(dir_ / "hook.pid"))); }));
  EXPECT_EQ(run("logs:1", "logs", "web/0", json::object()).value("message", ""), "no output");
  EXPECT_EQ(journal_state("web/0"), "");
  EXPECT_EQ(controller_.results("update:web/0:2").size(), 1u);
}

// model.md: hooks run with TRANCHE_* env; the drain hook had only the
// artifact's env.
TEST_F(AgentUpdateTest, TheDrainHookKnowsWhichMemberItDrains) {
  const json started = start_member();
  const fs::path marker = dir_ / "drained";
  const json stopped =
      run("stop:web/0", "stop", "web/0",
          {{"graceMs", 5000},
           {"drainHook",
            {"/bin/sh", "-c",
             "echo \"$TRANCHE_MEMBER $TRANCHE_APP $TRANCHE_CLUSTER $VERSION $GREETING $PORT_HTTP\" > " +
                 quoted(marker)}}});
  EXPECT_TRUE(stopped.value("ok", false)) << stopped.dump();
  EXPECT_EQ(read_file(marker), "web/0 shop web 1.0 v1.0 " + std::to_string(http_port(started)) + "\n");
}

TEST_F(AgentUpdateTest, HookLogsOutliveTheMember) {
  start_member();
  ASSERT_TRUE(
      run("update:web/0:2", "update", "web/0", update_spec(2, "2.0", "echo from the update hook")).value("ok", false));
  ASSERT_TRUE(run("stop:web/0", "stop", "web/0", {{"graceMs", 5000}}).value("ok", false));
  EXPECT_EQ(journal_state("web/0"), "");  // gone from the journal, its dir stays

  const json update_log = run("logs:1", "logs", "web/0", {{"hook", "update"}});
  EXPECT_TRUE(update_log.value("ok", false));
  EXPECT_EQ(update_log["data"]["stdout"], "from the update hook\n");
  const json maintenance_log = run("logs:2", "logs", "web/0", {{"hook", "maintenance"}});
  EXPECT_TRUE(maintenance_log.value("ok", false));
  EXPECT_EQ(maintenance_log.value("message", ""), "no output");
  EXPECT_EQ(maintenance_log["data"]["stdout"], "");
  const json bad = run("logs:3", "logs", "web/0", {{"hook", "../journal"}});
  EXPECT_FALSE(bad.value("ok", true));
  EXPECT_THAT(bad.value("message", ""), HasSubstr("unknown hook"));
}

TEST_F(AgentUpdateTest, AMalformedCommandIsAnsweredWithAFailedResultNamingTheField) {
  const json started = start_member();
  json bad_update = update_spec(2, "2.0", "touch " + quoted(dir_ / "hook-ran"));
  bad_update["revision"] = "two";
  const json refused = run("update:web/0:2", "update", "web/0", bad_update);
  EXPECT_FALSE(refused.value("ok", true)) << refused.dump();
  EXPECT_THAT(refused.value("message", ""), HasSubstr("command.spec.revision"));
  json bad_start = spec(1, "1.0");
  bad_start["ports"] = {{"http", 8080}};
  const json refused_start = run("start:web/1", "start", "web/1", bad_start);
  EXPECT_FALSE(refused_start.value("ok", true));
  EXPECT_THAT(refused_start.value("message", ""), HasSubstr("command.spec.ports"));
  const json unknown = run("replace:web/0", "replace", "web/0", json::object());
  EXPECT_FALSE(unknown.value("ok", true));
  EXPECT_THAT(unknown.value("message", ""), HasSubstr("command.command: unknown command 'replace'"));

  // Nothing was acted on: the member runs on, untouched, and no hook ran.
  EXPECT_EQ(journal_state("web/0"), "Running");
  EXPECT_EQ(journal_state("web/1"), "");
  EXPECT_TRUE(is_alive(pid_of(started)));
  EXPECT_FALSE(fs::exists(dir_ / "hook-ran"));
  // Answered like any command: a redelivery gets the same outcome, and the
  // connection goes on.
  const json again = run("update:web/0:2", "update", "web/0", bad_update);
  EXPECT_EQ(again.value("message", ""), refused.value("message", ""));
  EXPECT_TRUE(controller_.connected());
  EXPECT_TRUE(run("logs:1", "logs", "web/0", json::object()).value("ok", false));
}

// Protocol 3 (the fake controller's welcome agrees it): commands that come
// in one batch frame are acted on in order, each answered, and the acks the
// agent queues while reading them go back in batch frames too.
TEST_F(AgentUpdateTest, ABatchOfCommandsIsActedOnInOrderAndAcknowledgedInABatch) {
  json bad_start = spec(1, "1.0");
  bad_start["ports"] = {{"http", 8080}};
  controller_.command_batch({{{"id", "start:web/0"}, {"command", "start"}, {"member", "web/0"}, {"spec", spec(1, "1.0")}},
                             {{"id", "start:web/1"}, {"command", "start"}, {"member", "web/1"}, {"spec", bad_start}},
                             {{"id", "logs:1"}, {"command", "logs"}, {"member", "web/0"}, {"spec", json::object()}}});
  const json started = await_result("start:web/0");
  EXPECT_TRUE(started.value("ok", false)) << started.dump();
  const json refused = await_result("start:web/1");
  EXPECT_FALSE(refused.value("ok", true));
  EXPECT_THAT(refused.value("message", ""), HasSubstr("command.spec.ports"));
  EXPECT_TRUE(await_result("logs:1").value("ok", false)) << "web/0 was started before its logs were asked for";
  std::vector<std::string> acked;
  for (const auto& a : controller_.of_type("ack")) {
    acked.push_back(a.value("id", ""));
  }
  EXPECT_EQ(acked, (std::vector<std::string>{"start:web/0", "start:web/1", "logs:1"}));
  EXPECT_GE(controller_.batched(), 3u) << "the three acks were queued together";
  EXPECT_EQ(journal_state("web/0"), "Running");
}

}  // namespace
}  // namespace tranche::agent
