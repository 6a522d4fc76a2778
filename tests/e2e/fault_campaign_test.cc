// The fault campaign (quality.md "Reliability", "Fault campaign"; issue 14):
// a seeded schedule of operations (scaling, in-place and replace rolling
// updates, maintenance restart and replace, autohealing off and on) and of
// faults (SIGKILL of the controller or of an agent, SIGSTOP/SIGCONT of an
// agent, a host's link cut and restored), on the real controller, real
// agents and real tranche-hello members, while InvariantObserver checks the
// budgets on the event log at every committed instant (fault_campaign.h says
// exactly what). At the end, with every fault healed and the cluster back at
// rest: the log read again is gap-free and says what it said during the run,
// the members the log gives are the members the API lists, no member was
// updated twice for one revision (its hook's own record), every workload
// process belongs to a live member, and none is left once the application
// is deleted.
//
// TRANCHE_FAULT_SEED replays a run (the seed is printed), TRANCHE_FAULT_COUNT
// sets the number of faults (18 here; bench/fault-campaign/run.sh runs 120).

#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "fault_campaign_fixture.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr int kDefaultFaults = 18;

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

TEST_F(FaultCampaign, BudgetsHoldUnderSeededFaults) {
  const uint64_t seed = std::stoull(env_or("TRANCHE_FAULT_SEED", std::to_string(std::random_device{}())));
  const int count = std::stoi(env_or("TRANCHE_FAULT_COUNT", std::to_string(kDefaultFaults)));
  const std::string replay = "TRANCHE_FAULT_SEED=" + std::to_string(seed) +
                             " TRANCHE_FAULT_COUNT=" + std::to_string(count) + " " +
                             fs::read_symlink("/proc/self/exe").string() + " --gtest_filter=FaultCampaign.*";
  SCOPED_TRACE("replay: " + replay);
  note("fault campaign: seed " + std::to_string(seed) + ", " + std::to_string(count) + " faults; replay: " + replay);

  const campaign::WebSpec first{.desired = 4, .version = "v1", .in_place = true, .max_unavailable = 1, .max_surge = 1};
  const auto schedule = campaign::make_schedule(seed, count, first, kHosts, kLinkedHosts);
  observer_ = std::make_unique<campaign::InvariantObserver>(server(), token_, kApp, kCluster);
  const Answer deployed = api("POST", "/api/v1/applications", campaign_manifest(first, markers()));
  ASSERT_EQ(deployed.status, 201) << deployed.body.dump();
  ASSERT_TRUE(wait_until(
      [&] {
        const auto all = members();
        return static_cast<int>(all.size()) == first.desired &&
               std::all_of(all.begin(), all.end(), [](const json& m) { return m["state"] == "Active"; });
      },
      60s))
      << json(members()).dump(1);

  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < schedule.size(); ++i) {
    const campaign::Step& step = schedule[i];
    note("step " + std::to_string(i + 1) + "/" + std::to_string(schedule.size()));
    if (step.operation) {
      perform(*step.operation);
      ASSERT_FALSE(HasFatalFailure()) << notes_;
    }
    std::this_thread::sleep_for(step.lead);  // the schedule's lead time: where in the operation the fault lands
    inject(step.fault);
    ASSERT_FALSE(HasFatalFailure()) << notes_;
  }
  const auto faults_done = std::chrono::steady_clock::now();
  // Autohealing back on, so that every loss is healed and the cluster can rest.
  const Answer healing = api("PUT", "/api/v1/applications/" + std::string(kApp) + "/operational-state",
                             {{"path", "web"}, {"autohealing", "on"}});
  ASSERT_EQ(healing.status, 200) << healing.body.dump();
  std::string why;
  ASSERT_TRUE(converge(why)) << "the cluster did not come to rest after the faults: " << why << "\n" << notes_;
  note("at rest " +
       std::to_string(
           std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - faults_done)
               .count()) +
       " ms after the last fault");
  check_at_rest();
  check_nothing_left_after_delete();
  observer_->stop();

  const campaign::Figures f = observer_->figures();
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  json by_kind = faults_by_kind_;
  std::ostringstream table;
  table << "== fault campaign: seed " << seed << ", " << count << " faults in " << seconds << " s\n";
  for (const auto& [kind, n] : faults_by_kind_) {
    table << "  " << kind << ": " << n << '\n';
  }
  table << "  kills survived: " << kills_survived_ << "\n  operations: " << operations_
        << "\n  events read: " << f.events << "\n  member take-downs checked against maxUnavailable: " << f.take_downs
        << "\n    of which below desired - maxUnavailable while autohealing off held members (engine rule): "
        << f.below_spec_budget_with_autohealing_off
        << "\n  members created (checked against maxSurge): " << f.members_created
        << "\n  hosts Unreachable: " << f.hosts_unreachable << ", members Unreachable: " << f.members_unreachable
        << ", members Failed: " << f.members_failed << "\n  invariant checks: " << f.total_checks() << '\n';
  for (const auto& [name, n] : f.checks) {
    table << "    " << name << ": " << n << '\n';
  }
  table << "  violations: " << f.violations.size() << '\n';
  std::cout << table.str();
  const nlohmann::ordered_json line = {{"bench", "fault-campaign"},
                                       {"seed", seed},
                                       {"faults", count},
                                       {"faults_by_kind", by_kind},
                                       {"kills", kills_survived_},
                                       {"operations", operations_},
                                       {"events", f.events},
                                       {"checks", f.total_checks()},
                                       {"violations", f.violations.size()},
                                       {"below_spec_budget_autohealing_off", f.below_spec_budget_with_autohealing_off},
                                       {"seconds", seconds}};
  std::cout << line.dump() << std::endl;

  for (const auto& v : f.violations) {
    ADD_FAILURE() << v;
  }
  EXPECT_EQ(f.violations.size(), 0u) << notes_;
  EXPECT_GT(f.checks.count("availability") ? f.checks.at("availability") : 0, 0u)
      << "the campaign never took a member out: it checked nothing";
  EXPECT_GT(f.checks.count("surge") ? f.checks.at("surge") : 0, 0u) << "the campaign never created a member";
}

}  // namespace
}  // namespace tranche::e2e
