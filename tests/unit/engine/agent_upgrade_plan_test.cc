// The agent upgrade's plan (engine/agent_upgrade.h): batches of
// maxUnavailable, who is skipped, done at once or started, pause on a
// failure or a deadline, resume retrying, abort, and a plan that survives
// being written and read back (a restarted controller).

#include "engine/agent_upgrade.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace tranche {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const TimePoint kT0 = from_unix_millis(1800000000000);

AgentUpgradeRecord record(int64_t max_unavailable) {
  AgentUpgradeRecord r;
  r.id = 1;
  r.agent_version = "0.2.0";
  r.artifact_sha256 = std::string(64, 'a');
  r.artifact_size = 1000;
  r.max_unavailable = max_unavailable;
  r.fallback_seconds = 10;
  r.author = "ops";
  r.created_at = kT0;
  return r;
}

UpgradeHostView ready(const std::string& version = "0.1.0", int protocol = 2) {
  return UpgradeHostView{true, "Ready", protocol, version};
}

std::map<std::string, UpgradeHostView> fleet(int n) {
  std::map<std::string, UpgradeHostView> hosts;
  for (int i = 1; i <= n; ++i) {
    hosts["h" + std::to_string(i)] = ready();
  }
  return hosts;
}

std::vector<std::string> types(const std::vector<EventRecord>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    out.push_back(e.type);
  }
  return out;
}

HostUpgradeStatus status(const AgentUpgradePlan& plan, const std::string& host) {
  return plan.progress().hosts.at(host).status;
}

// The agent answers ok from its new binary.
void upgraded(AgentUpgradePlan& plan, std::map<std::string, UpgradeHostView>& hosts, const std::string& host) {
  hosts[host].agent_version = "0.2.0";
  ASSERT_TRUE(plan.on_outcome(host, plan.command_id(host), true, "", "0.2.0", kT0));
}

TEST(AgentUpgradePlan, BatchesOfMaxUnavailableInHostOrder) {
  auto hosts = fleet(5);
  auto plan = AgentUpgradePlan::start(record(2), {"h5", "h3", "h1", "h4", "h2"}, kT0);
  EXPECT_THAT(plan.progress().order, ElementsAre("h1", "h2", "h3", "h4", "h5"));
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h1", "h2"));
  EXPECT_EQ(plan.batch(), (std::pair<int64_t, int64_t>{1, 3}));
  // Nothing more starts until the whole batch is done.
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  upgraded(plan, hosts, "h1");
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  upgraded(plan, hosts, "h2");
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h3", "h4"));
  EXPECT_EQ(plan.batch(), (std::pair<int64_t, int64_t>{2, 3}));
  upgraded(plan, hosts, "h3");
  upgraded(plan, hosts, "h4");
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h5"));
  upgraded(plan, hosts, "h5");
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_EQ(plan.state(), AgentUpgradeState::kCompleted);
  EXPECT_EQ(plan.record().reason, "5 of 5 host(s) upgraded");
  EXPECT_TRUE(plan.record().finished_at);
  auto [stored, events] = plan.take_changes(kT0);
  EXPECT_EQ(stored.state, "Completed");
  const auto said = types(events);
  EXPECT_EQ(said.front(), "AgentUpgradeStarted");
  EXPECT_EQ(said.back(), "AgentUpgradeCompleted");
  EXPECT_EQ(std::count(said.begin(), said.end(), "HostAgentUpgraded"), 5);
}

TEST(AgentUpgradePlan, CommandIdsNameUpgradeHostAndAttempt) {
  auto hosts = fleet(1);
  auto plan = AgentUpgradePlan::start(record(1), {"h1"}, kT0);
  plan.step(hosts, kT0);
  EXPECT_EQ(plan.command_id("h1"), "upgradeAgent:1:h1:1");
  // Another id, a stale attempt or another host's is not the answer awaited.
  EXPECT_FALSE(plan.on_outcome("h1", "upgradeAgent:1:h1:0", true, "", "0.2.0", kT0));
  EXPECT_FALSE(plan.on_outcome("h2", "upgradeAgent:1:h2:1", true, "", "0.2.0", kT0));
  EXPECT_EQ(status(plan, "h1"), HostUpgradeStatus::kUpgrading);
  EXPECT_TRUE(plan.on_outcome("h1", "upgradeAgent:1:h1:1", true, "", "0.2.0", kT0));
  // A replayed answer changes nothing.
  EXPECT_FALSE(plan.on_outcome("h1", "upgradeAgent:1:h1:1", true, "", "0.2.0", kT0));
}

TEST(AgentUpgradePlan, SkipsHostsThatCannotUpgradeAndIsDoneWithThoseAlreadyThere) {
  std::map<std::string, UpgradeHostView> hosts{{"a-on-v", ready("0.2.0")},
                                               {"b-old-protocol", ready("0.0.9", 1)},
                                               {"c-unreachable", UpgradeHostView{false, "Unreachable", 2, "0.1.0"}},
                                               {"d-ready", ready()}};
  auto plan = AgentUpgradePlan::start(record(1), {"a-on-v", "b-old-protocol", "c-unreachable", "d-ready", "e-gone"},
                                      kT0);
  // Batches of one: the first three settle at once, the fourth starts.
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("d-ready"));
  EXPECT_EQ(status(plan, "a-on-v"), HostUpgradeStatus::kDone);
  EXPECT_EQ(plan.progress().hosts.at("a-on-v").message, "already on 0.2.0");
  EXPECT_EQ(status(plan, "b-old-protocol"), HostUpgradeStatus::kSkipped);
  EXPECT_THAT(plan.progress().hosts.at("b-old-protocol").message,
              HasSubstr("speaks protocol 1, which cannot upgrade itself"));
  EXPECT_EQ(status(plan, "c-unreachable"), HostUpgradeStatus::kSkipped);
  EXPECT_THAT(plan.progress().hosts.at("c-unreachable").message, HasSubstr("not connected (host Unreachable)"));
  upgraded(plan, hosts, "d-ready");
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_EQ(status(plan, "e-gone"), HostUpgradeStatus::kSkipped);
  EXPECT_EQ(plan.state(), AgentUpgradeState::kCompleted);
  EXPECT_EQ(plan.record().reason, "1 of 5 host(s) upgraded, 1 already on 0.2.0, 3 skipped");
}

TEST(AgentUpgradePlan, AFleetAlreadyOnTheVersionCompletesInOneStep) {
  std::map<std::string, UpgradeHostView> hosts{{"h1", ready("0.2.0")}, {"h2", ready("0.2.0")}, {"h3", ready("0.2.0")}};
  auto plan = AgentUpgradePlan::start(record(1), {"h1", "h2", "h3"}, kT0);
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_EQ(plan.state(), AgentUpgradeState::kCompleted);
}

TEST(AgentUpgradePlan, AFallBackPausesWithTheReasonAndLeavesTheOthers) {
  auto hosts = fleet(3);
  auto plan = AgentUpgradePlan::start(record(1), {"h1", "h2", "h3"}, kT0);
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h1"));
  EXPECT_TRUE(plan.on_outcome("h1", plan.command_id("h1"), false,
                              "tranche 0.2.0 exited with status 1 0.1 s after the switch; back on 0.1.0", "0.1.0", kT0));
  EXPECT_EQ(plan.state(), AgentUpgradeState::kPaused);
  EXPECT_THAT(plan.record().reason, HasSubstr("host h1: tranche 0.2.0 exited with status 1"));
  EXPECT_EQ(status(plan, "h1"), HostUpgradeStatus::kFailed);
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_EQ(status(plan, "h2"), HostUpgradeStatus::kPending);
  EXPECT_EQ(status(plan, "h3"), HostUpgradeStatus::kPending);
  auto [stored, events] = plan.take_changes(kT0);
  EXPECT_THAT(types(events), ElementsAre("AgentUpgradeStarted", "HostAgentUpgrading", "HostAgentUpgradeFailed",
                                         "AgentUpgradePaused"));
}

TEST(AgentUpgradePlan, AnOkFromAnotherVersionFails) {
  auto hosts = fleet(1);
  auto plan = AgentUpgradePlan::start(record(1), {"h1"}, kT0);
  plan.step(hosts, kT0);
  EXPECT_TRUE(plan.on_outcome("h1", plan.command_id("h1"), true, "", "0.1.0", kT0));
  EXPECT_EQ(status(plan, "h1"), HostUpgradeStatus::kFailed);
  EXPECT_THAT(plan.progress().hosts.at("h1").message, HasSubstr("answered ok but runs 0.1.0, not 0.2.0"));
  EXPECT_EQ(plan.state(), AgentUpgradeState::kPaused);
}

TEST(AgentUpgradePlan, AHostSilentPastItsDeadlinePausesTheUpgrade) {
  auto hosts = fleet(2);
  auto plan = AgentUpgradePlan::start(record(1), {"h1", "h2"}, kT0);
  plan.step(hosts, kT0);
  const TimePoint before = kT0 + plan.host_deadline() - std::chrono::milliseconds(1);
  EXPECT_THAT(plan.step(hosts, before), IsEmpty());
  EXPECT_EQ(plan.state(), AgentUpgradeState::kRunning);
  EXPECT_THAT(plan.step(hosts, kT0 + plan.host_deadline()), IsEmpty());
  EXPECT_EQ(plan.state(), AgentUpgradeState::kPaused);
  EXPECT_THAT(plan.record().reason, HasSubstr("host h1: its agent did not come back on 0.2.0 within 1m10s"));
  EXPECT_EQ(status(plan, "h2"), HostUpgradeStatus::kPending);
}

TEST(AgentUpgradePlan, ResumeRetriesTheFailedHostWithANewCommandId) {
  auto hosts = fleet(2);
  auto plan = AgentUpgradePlan::start(record(1), {"h1", "h2"}, kT0);
  plan.step(hosts, kT0);
  const std::string first = plan.command_id("h1");
  plan.on_outcome("h1", first, false, "download failed: connection refused", "0.1.0", kT0);
  EXPECT_FALSE(plan.pause_by("ops", kT0));  // already paused
  ASSERT_TRUE(plan.resume_by("ops", kT0));
  EXPECT_EQ(plan.state(), AgentUpgradeState::kRunning);
  EXPECT_THAT(plan.record().reason, HasSubstr("1 failed host(s) to be retried"));
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h1"));
  EXPECT_NE(plan.command_id("h1"), first);
  EXPECT_FALSE(plan.on_outcome("h1", first, false, "late answer to the first attempt", "0.1.0", kT0));
  upgraded(plan, hosts, "h1");
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h2"));
}

TEST(AgentUpgradePlan, PauseStopsNewHostsAndAbortEndsIt) {
  auto hosts = fleet(3);
  auto plan = AgentUpgradePlan::start(record(1), {"h1", "h2", "h3"}, kT0);
  plan.step(hosts, kT0);
  ASSERT_TRUE(plan.pause_by("ops", kT0));
  EXPECT_EQ(plan.record().reason, "paused by ops");
  // The host already upgrading still reports; nothing else starts.
  upgraded(plan, hosts, "h1");
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_EQ(status(plan, "h2"), HostUpgradeStatus::kPending);
  ASSERT_TRUE(plan.resume_by("ops", kT0));
  EXPECT_THAT(plan.step(hosts, kT0), ElementsAre("h2"));
  ASSERT_TRUE(plan.abort_by("ops", kT0));
  EXPECT_EQ(plan.state(), AgentUpgradeState::kAborted);
  EXPECT_EQ(plan.record().reason,
            "aborted by ops; 1 of 3 host(s) upgraded, 1 not started; 1 host(s) still upgrading finish on their own");
  EXPECT_THAT(plan.step(hosts, kT0), IsEmpty());
  EXPECT_FALSE(plan.resume_by("ops", kT0));
  EXPECT_FALSE(plan.abort_by("ops", kT0));
  upgraded(plan, hosts, "h2");  // still recorded
  EXPECT_EQ(status(plan, "h2"), HostUpgradeStatus::kDone);
}

TEST(AgentUpgradePlan, SurvivesBeingStoredAndReadBack) {
  auto hosts = fleet(3);
  auto plan = AgentUpgradePlan::start(record(2), {"h1", "h2", "h3"}, kT0);
  plan.step(hosts, kT0 + std::chrono::seconds(1));
  auto [stored, events] = plan.take_changes(kT0 + std::chrono::seconds(1));
  EXPECT_EQ(stored.version, 0);
  EXPECT_EQ(plan.record().version, 1);

  // A restarted controller reads what was written and goes on from there:
  // the same outstanding commands, the same deadlines.
  stored.version = 1;
  auto loaded = AgentUpgradePlan::load(stored);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->progress(), plan.progress());
  EXPECT_THAT(loaded->upgrading(), ElementsAre("h1", "h2"));
  EXPECT_EQ(loaded->command_id("h2"), plan.command_id("h2"));
  EXPECT_THAT(loaded->step(hosts, kT0 + std::chrono::seconds(2)), IsEmpty());
  EXPECT_TRUE(loaded->on_outcome("h2", "upgradeAgent:1:h2:1", true, "", "0.2.0", kT0));
  loaded->step(hosts, kT0 + std::chrono::seconds(1) + loaded->host_deadline());
  EXPECT_EQ(status(*loaded, "h1"), HostUpgradeStatus::kFailed);
  EXPECT_EQ(loaded->state(), AgentUpgradeState::kPaused);
}

TEST(AgentUpgradePlan, UnreadableProgressIsAnError) {
  AgentUpgradeRecord r = record(1);
  r.state = "Running";
  r.progress_json = R"({"order": ["h1"], "hosts": {}})";
  auto loaded = AgentUpgradePlan::load(r);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("host h1 has no entry"));
  r.state = "Sideways";
  EXPECT_FALSE(AgentUpgradePlan::load(r));
}

TEST(AgentUpgradePlan, AVersionWithoutBuildMetadataIsRunByEveryBuildOfIt) {
  EXPECT_TRUE(runs_version("0.2.0+g1a2b3c-dirty", "0.2.0"));
  EXPECT_TRUE(runs_version("0.2.0+g1a2b3c", "0.2.0+g1a2b3c"));
  EXPECT_FALSE(runs_version("0.2.0+g1a2b3c", "0.2.0+gffffff"));
  EXPECT_FALSE(runs_version("0.2.01", "0.2.0"));
  EXPECT_FALSE(runs_version("0.1.0", "0.2.0"));
  std::map<std::string, UpgradeHostView> hosts{{"h1", ready()}};
  auto plan = AgentUpgradePlan::start(record(1), {"h1"}, kT0);
  plan.step(hosts, kT0);
  EXPECT_TRUE(plan.on_outcome("h1", plan.command_id("h1"), true, "", "0.2.0+g1a2b3c", kT0));
  EXPECT_EQ(status(plan, "h1"), HostUpgradeStatus::kDone);
}

TEST(AgentUpgradePlan, HostSelectors) {
  auto labels = parse_host_selector("zone=a,role=edge", "hosts");
  ASSERT_TRUE(labels);
  EXPECT_EQ(*labels, (std::map<std::string, std::string>{{"zone", "a"}, {"role", "edge"}}));
  EXPECT_TRUE(parse_host_selector("", "hosts")->empty());
  for (const char* bad : {"zone", "=a", "zone=", "zone=a,", ",zone=a"}) {
    auto parsed = parse_host_selector(bad, "hosts");
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().field, "hosts");
  }
}

TEST(AgentUpgradePlan, StatusDocument) {
  auto hosts = fleet(3);
  auto plan = AgentUpgradePlan::start(record(2), {"h1", "h2", "h3"}, kT0);
  plan.step(hosts, kT0);
  upgraded(plan, hosts, "h1");
  const auto j = plan.to_json();
  EXPECT_EQ(j["state"], "Running");
  EXPECT_EQ(j["batch"], 1);
  EXPECT_EQ(j["batches"], 2);
  EXPECT_EQ(j["counts"]["done"], 1);
  EXPECT_EQ(j["counts"]["upgrading"], 1);
  EXPECT_EQ(j["counts"]["pending"], 1);
  EXPECT_EQ(j["progress"][0]["host"], "h1");
  EXPECT_EQ(j["progress"][0]["status"], "done");
  EXPECT_EQ(j["progress"][0]["message"], "upgraded from 0.1.0 to 0.2.0");
  EXPECT_EQ(j["artifact"]["path"], "/api/v1/artifacts/sha256/" + std::string(64, 'a'));
}

}  // namespace
}  // namespace tranche
