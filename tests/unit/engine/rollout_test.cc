#include "engine/rollout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "model/manifest.h"

namespace tranche {
namespace {

using namespace std::chrono_literals;
using P = RolloutPhase;
using S = MemberState;
using Method = UpdatePolicy::Method;
using Strategy = UpdatePolicy::Strategy;

// ---------------------------------------------------------------------------
// Phases

const P kAllPhases[] = {P::kProgressing, P::kPaused, P::kCanaryPaused, P::kRollingBack,
                        P::kSucceeded,   P::kFailed, P::kAborted,      P::kSuperseded};

// The table of rollout.cc, edge by edge; every other pair must be refused.
const std::set<std::pair<P, P>> kAllowedPhases = {
    {P::kProgressing, P::kPaused},     {P::kProgressing, P::kCanaryPaused}, {P::kProgressing, P::kRollingBack},
    {P::kProgressing, P::kSucceeded},  {P::kProgressing, P::kFailed},       {P::kProgressing, P::kAborted},
    {P::kProgressing, P::kSuperseded}, {P::kPaused, P::kProgressing},       {P::kPaused, P::kRollingBack},
    {P::kPaused, P::kAborted},         {P::kPaused, P::kSuperseded},        {P::kCanaryPaused, P::kProgressing},
    {P::kCanaryPaused, P::kPaused},    {P::kCanaryPaused, P::kRollingBack}, {P::kCanaryPaused, P::kFailed},
    {P::kCanaryPaused, P::kAborted},   {P::kCanaryPaused, P::kSuperseded},  {P::kRollingBack, P::kPaused},
    {P::kRollingBack, P::kFailed},     {P::kRollingBack, P::kAborted},      {P::kRollingBack, P::kSuperseded},
};

TEST(RolloutPhase, EveryTransitionIsAsTabled) {
  for (P from : kAllPhases) {
    for (P to : kAllPhases) {
      EXPECT_EQ(can_transition(from, to), kAllowedPhases.contains({from, to}))
          << to_string(from) << " -> " << to_string(to);
    }
  }
}

TEST(RolloutPhase, RefusesWhatTheControlsRuleOut) {
  for (P finished : {P::kSucceeded, P::kFailed, P::kAborted, P::kSuperseded}) {
    for (P to : kAllPhases) {
      EXPECT_FALSE(can_transition(finished, to)) << to_string(finished) << " -> " << to_string(to);
    }
  }
  // Resume goes back to what the rollout was doing; the canary pause is
  // re-entered from Progressing when the planner finds the canary Active.
  EXPECT_FALSE(can_transition(P::kPaused, P::kCanaryPaused));
  // A rollback ends Failed; it never turns into a forward rollout.
  EXPECT_FALSE(can_transition(P::kRollingBack, P::kProgressing));
  EXPECT_FALSE(can_transition(P::kRollingBack, P::kSucceeded));
  EXPECT_FALSE(can_transition(P::kPaused, P::kSucceeded));
  EXPECT_FALSE(can_transition(P::kCanaryPaused, P::kSucceeded));
  EXPECT_FALSE(can_transition(P::kProgressing, P::kProgressing));
}

TEST(RolloutPhase, NamesRoundTrip) {
  for (P phase : kAllPhases) {
    EXPECT_EQ(rollout_phase_from_string(to_string(phase)), phase);
  }
  EXPECT_EQ(to_string(P::kCanaryPaused), "CanaryPaused");
  EXPECT_FALSE(rollout_phase_from_string("progressing").has_value());
  EXPECT_FALSE(rollout_phase_from_string("").has_value());
}

TEST(RolloutPhase, OnlyTheEndsAreFinished) {
  for (P phase : kAllPhases) {
    const bool end = phase == P::kSucceeded || phase == P::kFailed || phase == P::kAborted || phase == P::kSuperseded;
    EXPECT_EQ(is_finished(phase), end) << to_string(phase);
  }
}

TEST(ClusterRolloutStatus, NamesRoundTrip) {
  using C = ClusterRolloutStatus;
  for (C status : {C::kWaiting, C::kProgressing, C::kCanaryPaused, C::kDone}) {
    EXPECT_EQ(cluster_rollout_status_from_string(to_string(status)), status);
  }
  EXPECT_EQ(to_string(C::kDone), "Done");
  EXPECT_FALSE(cluster_rollout_status_from_string("Succeeded").has_value());
}

// ---------------------------------------------------------------------------
// Progress documents

TEST(RolloutProgress, RoundTripsThroughJson) {
  RolloutProgress progress;
  progress["backend/db"] = {ClusterRolloutStatus::kDone, 0, {}};
  progress["backend/cache"] = {ClusterRolloutStatus::kWaiting, 0, {}};
  progress["api"] = {ClusterRolloutStatus::kProgressing, 1, {"shop/api/3"}};
  progress["web"] = {ClusterRolloutStatus::kCanaryPaused, 2, {"shop/web/7", "shop/web/12"}};
  for (const RolloutProgress& p : {progress, RolloutProgress{}}) {
    const auto back = progress_from_json(progress_to_json(p));
    ASSERT_TRUE(back.has_value()) << back.error().describe();
    EXPECT_EQ(*back, p);
  }
}

TEST(RolloutProgress, BadDocumentsAreErrorsNotExceptions) {
  const std::string kBad[] = {
      "",
      "not json",
      "[]",
      "null",
      "42",
      R"({"web": 5})",
      R"({"web": {}})",
      R"({"web": {"status": "Done", "failures": 0}})",
      R"({"web": {"status": "Finished", "failures": 0, "failed": []}})",
      R"({"web": {"status": 3, "failures": 0, "failed": []}})",
      R"({"web": {"status": "Done", "failures": "none", "failed": []}})",
      R"({"web": {"status": "Done", "failures": 0, "failed": "shop/web/1"}})",
      R"({"web": {"status": "Done", "failures": 0, "failed": [1]}})",
  };
  for (const std::string& text : kBad) {
    Result<RolloutProgress> parsed;
    EXPECT_NO_THROW(parsed = progress_from_json(text)) << text;
    EXPECT_FALSE(parsed.has_value()) << text;
    if (!parsed) {
      EXPECT_FALSE(parsed.error().message.empty()) << text;
    }
  }
}

// ---------------------------------------------------------------------------
// Order of clusters

// backend waits for storage; inside backend, api waits for the group data
// and cache for its sibling db; web waits for the whole of backend; admin and
// docs depend on nothing. data-export shares a prefix with data but is not in it.
std::string shop_with_order(std::string_view update_order) {
  return "application: shop\nupdateOrder: " + std::string(update_order) + R"(
groups:
  - name: backend
    dependsOn: [storage]
    groups:
      - name: data
        clusters:
          - name: db
            artifact: {version: "1", command: [run]}
          - name: cache
            dependsOn: [db]
            artifact: {version: "1", command: [run]}
    clusters:
      - name: api
        dependsOn: [data]
        artifact: {version: "1", command: [run]}
      - name: data-export
        artifact: {version: "1", command: [run]}
  - name: storage
    clusters:
      - name: blobs
        artifact: {version: "1", command: [run]}
clusters:
  - name: web
    dependsOn: [backend]
    artifact: {version: "1", command: [run]}
  - name: admin
    artifact: {version: "1", command: [run]}
  - name: docs
    artifact: {version: "1", command: [run]}
)";
}

using Prerequisites = std::map<std::string, std::set<std::string>>;

Prerequisites prerequisites_of(std::string_view update_order) {
  const auto spec = parse_manifest(shop_with_order(update_order), ManifestFormat::kYaml);
  EXPECT_TRUE(spec.has_value()) << (spec ? "" : spec.error().describe());
  return spec ? rollout_prerequisites(*spec) : Prerequisites{};
}

TEST(RolloutOrder, DependenciesWaitForOwnAndAncestorsDependsOn) {
  const Prerequisites expected = {
      {"backend/data/db", {"storage/blobs"}},
      {"backend/data/cache", {"backend/data/db", "storage/blobs"}},
      {"backend/api", {"backend/data/db", "backend/data/cache", "storage/blobs"}},
      {"backend/data-export", {"storage/blobs"}},
      {"storage/blobs", {}},
      {"web", {"backend/data/db", "backend/data/cache", "backend/api", "backend/data-export"}},
      {"admin", {}},
      {"docs", {}},
  };
  EXPECT_EQ(prerequisites_of("dependencies"), expected);
}

TEST(RolloutOrder, ReverseIsTheInverseOfDependencies) {
  const Prerequisites expected = {
      {"storage/blobs", {"backend/data/db", "backend/data/cache", "backend/api", "backend/data-export"}},
      {"backend/data/db", {"backend/data/cache", "backend/api", "web"}},
      {"backend/data/cache", {"backend/api", "web"}},
      {"backend/api", {"web"}},
      {"backend/data-export", {"web"}},
      {"web", {}},
      {"admin", {}},
      {"docs", {}},
  };
  const Prerequisites reverse = prerequisites_of("reverse");
  EXPECT_EQ(reverse, expected);

  const Prerequisites forward = prerequisites_of("dependencies");
  for (const auto& [cluster, before] : forward) {
    for (const auto& [other, _] : forward) {
      EXPECT_EQ(before.contains(other), reverse.at(other).contains(cluster)) << cluster << " / " << other;
    }
  }
}

TEST(RolloutOrder, ParallelOrdersNothing) {
  const Prerequisites parallel = prerequisites_of("parallel");
  EXPECT_EQ(parallel.size(), 8u);
  for (const auto& [cluster, before] : parallel) {
    EXPECT_TRUE(before.empty()) << cluster;
  }
}

TEST(RolloutOrder, IndependentSiblingsDoNotWaitForEachOther) {
  for (std::string_view order : {"dependencies", "reverse"}) {
    const Prerequisites p = prerequisites_of(order);
    const std::pair<std::string, std::string> independent[] = {
        {"admin", "docs"}, {"admin", "web"}, {"docs", "web"}, {"backend/api", "backend/data-export"}};
    for (const auto& [a, b] : independent) {
      EXPECT_FALSE(p.at(a).contains(b)) << order << ": " << a << " waits for " << b;
      EXPECT_FALSE(p.at(b).contains(a)) << order << ": " << b << " waits for " << a;
    }
  }
}

// ---------------------------------------------------------------------------
// The planner of one cluster, simulated

constexpr int64_t kOldRevision = 1;
constexpr int64_t kTargetRevision = 2;

IntOrPercent count(int n) { return {n, false}; }
IntOrPercent percent(int n) { return {n, true}; }

std::string describe(const IntOrPercent& v) { return std::to_string(v.value) + (v.percent ? "%" : ""); }

UpdatePolicy policy_of(Method method, IntOrPercent max_unavailable, IntOrPercent max_surge, int canary = 0) {
  UpdatePolicy p;
  p.method = method;
  p.max_unavailable = max_unavailable;
  p.max_surge = max_surge;
  p.canary = canary;
  return p;
}

// parse_manifest refuses a policy under which no member could ever move.
bool manifest_accepts(const UpdatePolicy& p, int desired) {
  const int unavailable = resolve_max_unavailable(p, desired);
  if (unavailable == 0 && resolve_max_surge(p, desired) == 0) {
    return false;
  }
  return !(unavailable == 0 && p.method == Method::kInPlace && p.strategy == Strategy::kRolling);
}

bool exists(S state) { return state != S::kTerminated && state != S::kFailed && state != S::kUnreachable; }

bool moves(const ClusterRolloutStep& step) {
  return step.create > 0 || step.create_old > 0 || !step.retire.empty() || !step.update.empty();
}

struct Counts {
  int active = 0;
  int exists = 0;
  int live = 0;
  int live_on_target = 0;
  int in_transition = 0;  // Created, Starting, Updating, Stopping
};

// One cluster under rollout from kOldRevision to kTargetRevision. Each tick
// the members move on as agents would report, plan_cluster_rollout decides,
// the step is applied as the fleet would, and the clock advances by kTick.
struct ClusterSimulator {
  static constexpr std::chrono::milliseconds kTick = 100ms;

  UpdatePolicy policy;
  int desired = 0;
  bool promoted = false;
  std::chrono::milliseconds start_time = 300ms;  // Starting -> Active: health checks plus minReadySeconds
  std::chrono::milliseconds stop_time = kTick;   // Stopping -> Terminated
  bool target_members_hang = false;              // target members never leave Starting
  // A controller that dies after carrying out part of each step: even ticks
  // lose the creations, odd ticks the retirements and updates.
  bool steps_half_lost = false;
  ManualClock clock;
  std::vector<RolloutMember> members;
  std::deque<std::string> ids;  // what members' ids view
  std::map<std::string, int> old_changes;  // old member -> times retired or updated
  std::set<std::string> failed_on_their_own;
  int target_retired = 0;
  int tick = 0;
  int next_id = 1;
  bool broken = false;  // an invariant failed: the test has reported it
  ClusterRolloutStep last_step;

  ClusterSimulator(UpdatePolicy p, int d) : policy(p), desired(d) {
    for (int i = 0; i < desired; ++i) {
      add_member(S::kActive, false, kOldRevision, clock.now() - 1h);
    }
  }

  std::string combo() const {
    std::ostringstream s;
    s << (policy.method == Method::kReplace ? "replace" : "in-place") << ' '
      << (policy.strategy == Strategy::kRolling ? "rolling" : "all-at-once") << " desired=" << desired
      << " maxUnavailable=" << describe(policy.max_unavailable) << " maxSurge=" << describe(policy.max_surge);
    if (policy.canary > 0) {
      s << " canary=" << policy.canary << (promoted ? " (promoted)" : "");
    }
    if (policy.pause_between_batches_seconds > 0) {
      s << " pause=" << policy.pause_between_batches_seconds << "s";
    }
    return s.str();
  }

  Counts counts() const {
    Counts c;
    for (const RolloutMember& m : members) {
      c.active += m.state == S::kActive ? 1 : 0;
      c.exists += exists(m.state) ? 1 : 0;
      c.live += is_live(m.state) ? 1 : 0;
      c.live_on_target += is_live(m.state) && m.on_target ? 1 : 0;
      c.in_transition +=
          m.state == S::kCreated || m.state == S::kStarting || m.state == S::kUpdating || m.state == S::kStopping;
    }
    return c;
  }

  void add_member(S state, bool on_target, int64_t revision, TimePoint since) {
    const std::string& id = ids.emplace_back("shop/web/" + std::to_string(next_id++));
    members.push_back({id, state, on_target, revision, since});
    if (!on_target) {
      old_changes[id] = 0;
    }
  }

  RolloutMember* find(const std::string& id) {
    for (RolloutMember& m : members) {
      if (m.id == id) {
        return &m;
      }
    }
    return nullptr;
  }

  void report_broken(std::string_view what) {
    ADD_FAILURE() << "tick " << tick << " of " << combo() << ": " << what;
    broken = true;
  }

  ClusterRolloutStep plan() const {
    ClusterRolloutInput in{policy, desired, members, promoted, clock.now()};
    in.from_revision = kOldRevision;
    return plan_cluster_rollout(in);
  }

  // What agents report between two ticks: one transition per member.
  void advance_members() {
    const TimePoint now = clock.now();
    for (RolloutMember& m : members) {
      const auto enter = [&](S state) {
        m.state = state;
        m.since = now;
      };
      switch (m.state) {
        case S::kCreated:
          enter(S::kStarting);
          break;
        case S::kStarting:
          if (!(m.on_target && target_members_hang) && now - m.since >= start_time) {
            enter(S::kActive);
          }
          break;
        case S::kUpdating:
          enter(S::kStarting);
          break;
        case S::kStopping:
          if (now - m.since >= stop_time) {
            enter(S::kTerminated);
          }
          break;
        default:
          break;
      }
    }
  }

  // What the fleet does with a step.
  void apply(ClusterRolloutStep step) {
    const TimePoint now = clock.now();
    if (steps_half_lost && tick % 2 == 0) {
      step.create = step.create_old = 0;
    } else if (steps_half_lost) {
      step.retire.clear();
      step.update.clear();
    }
    std::set<std::string> named;
    for (const auto* list : {&step.retire, &step.update}) {
      for (const std::string& id : *list) {
        if (!named.insert(id).second) {
          report_broken("the step names " + id + " twice");
        }
      }
    }
    for (const std::string& id : step.retire) {
      RolloutMember* m = find(id);
      if (m == nullptr || !is_live(m->state)) {
        report_broken("retire of " + id + (m ? " in state " + std::string(to_string(m->state)) : " (unknown)"));
        continue;
      }
      count_change(*m);
      // A member not started yet is cancelled; any other is stopped.
      m->state = m->state == S::kCreated ? S::kTerminated : S::kStopping;
      m->since = now;
    }
    for (const std::string& id : step.update) {
      RolloutMember* m = find(id);
      if (m == nullptr || m->state != S::kActive || m->on_target) {
        report_broken("update of " + id + (m ? " in state " + std::string(to_string(m->state)) : " (unknown)"));
        continue;
      }
      count_change(*m);
      *m = {m->id, S::kUpdating, true, kTargetRevision, now};
    }
    for (int i = 0; i < step.create; ++i) {
      add_member(S::kCreated, true, kTargetRevision, now);
    }
    if (step.create_old > 0 && step.old_revision != kOldRevision) {
      report_broken("create_old on revision " + std::to_string(step.old_revision));
    }
    for (int i = 0; i < step.create_old; ++i) {
      add_member(S::kCreated, false, step.old_revision, now);
    }
  }

  void count_change(const RolloutMember& m) {
    if (m.on_target) {
      ++target_retired;
    } else if (++old_changes[std::string(m.id)] > 1) {
      report_broken(std::string(m.id) + " retired or updated a second time");
    }
  }

  // One tick; `inspect` sees the step before it is applied.
  ClusterRolloutStep step_once(const std::function<void(const ClusterRolloutStep&)>& inspect = {}) {
    advance_members();
    check_invariants("after members moved");
    last_step = plan();
    if (inspect) {
      inspect(last_step);
    }
    apply(last_step);
    check_invariants("after the step");
    clock.advance(kTick);
    ++tick;
    return last_step;
  }

  void check_invariants(std::string_view moment);

  // Ticks until the planner says done; false (reported) when it does not
  // within `max_ticks` or an invariant breaks.
  bool run_until_done(int max_ticks) {
    for (int i = 0; i < max_ticks && !broken; ++i) {
      if (step_once().done) {
        return true;
      }
    }
    if (!broken) {
      const Counts c = counts();
      report_broken("not done after " + std::to_string(max_ticks) + " ticks: " + std::to_string(c.live) + " live, " +
                    std::to_string(c.live_on_target) + " on the target, " + std::to_string(c.active) +
                    " Active; waiting: " + last_step.waiting);
    }
    return false;
  }

  // Ticks until nothing moves and no member is between states; the last step.
  ClusterRolloutStep settle(int max_ticks) {
    for (int i = 0; i < max_ticks && !broken; ++i) {
      const ClusterRolloutStep step = step_once();
      if (!moves(step) && counts().in_transition == 0) {
        return step;
      }
    }
    report_broken("does not settle within " + std::to_string(max_ticks) + " ticks");
    return last_step;
  }
};

// The two invariants of updates.md; all-at-once gives up availability by design.
void ClusterSimulator::check_invariants(std::string_view moment) {
  const Counts c = counts();
  const bool rolling = policy.strategy == Strategy::kRolling;
  const bool replace = policy.method == Method::kReplace;
  const int min_active = desired - resolve_max_unavailable(policy, desired);
  const int max_exist = desired + (rolling && replace ? resolve_max_surge(policy, desired) : 0);
  if ((rolling && c.active < min_active) || c.exists > max_exist) {
    std::ostringstream s;
    s << moment << ": " << c.active << " Active (at least " << min_active << "), " << c.exists << " exist (at most "
      << max_exist << "), " << c.live_on_target << " live on the target";
    report_broken(s.str());
  }
}

// The end of a rollout: every live member on the target and Active, each old
// member retired or updated exactly once (except those that failed on their
// own), no target member stopped.
void expect_finished_cleanly(ClusterSimulator& sim) {
  ASSERT_FALSE(sim.broken);
  EXPECT_TRUE(sim.last_step.done) << sim.combo();
  const Counts c = sim.counts();
  EXPECT_EQ(c.live, sim.desired) << sim.combo();
  EXPECT_EQ(c.live_on_target, sim.desired) << sim.combo();
  for (const RolloutMember& m : sim.members) {
    if (is_live(m.state)) {
      EXPECT_EQ(to_string(m.state), "Active") << sim.combo() << ": " << m.id;
      EXPECT_EQ(m.revision, kTargetRevision) << sim.combo() << ": " << m.id;
    }
  }
  for (const auto& [id, times] : sim.old_changes) {
    if (!sim.failed_on_their_own.contains(id)) {
      EXPECT_EQ(times, 1) << sim.combo() << ": " << id;
    }
  }
  EXPECT_EQ(sim.target_retired, 0) << sim.combo();
  // Level-triggered: once done, it stays done and moves nothing.
  for (int i = 0; i < 5; ++i) {
    const ClusterRolloutStep step = sim.step_once();
    EXPECT_TRUE(step.done) << sim.combo();
    EXPECT_FALSE(moves(step)) << sim.combo();
  }
}

// Per member at most: create, start, minReady, retire, stop, plus slack.
int tick_bound(int desired) { return 50 + 10 * desired; }

const int kDesiredCounts[] = {1, 2, 3, 5, 6, 10, 20};
const IntOrPercent kBudgets[] = {count(0), count(1), count(2), percent(25), percent(50), percent(100)};

TEST(RolloutSimulation, RollingKeepsBothBoundsAndFinishesForEveryCombination) {
  int simulated = 0;
  for (Method method : {Method::kReplace, Method::kInPlace}) {
    for (int desired : kDesiredCounts) {
      for (IntOrPercent unavailable : kBudgets) {
        for (IntOrPercent surge : kBudgets) {
          const UpdatePolicy policy = policy_of(method, unavailable, surge);
          if (!manifest_accepts(policy, desired)) {
            continue;
          }
          ClusterSimulator sim(policy, desired);
          if (sim.run_until_done(tick_bound(desired))) {
            expect_finished_cleanly(sim);
          }
          ++simulated;
        }
      }
    }
  }
  EXPECT_GT(simulated, 400);
}

TEST(RolloutSimulation, StepsCarriedOutOnlyInPartKeepBothBoundsAndFinish) {
  for (Method method : {Method::kReplace, Method::kInPlace}) {
    for (int desired : kDesiredCounts) {
      for (IntOrPercent unavailable : kBudgets) {
        for (IntOrPercent surge : kBudgets) {
          const UpdatePolicy policy = policy_of(method, unavailable, surge);
          if (!manifest_accepts(policy, desired)) {
            continue;
          }
          ClusterSimulator sim(policy, desired);
          sim.steps_half_lost = true;
          if (sim.run_until_done(2 * tick_bound(desired))) {
            sim.steps_half_lost = false;
            expect_finished_cleanly(sim);
          }
        }
      }
    }
  }
}

TEST(RolloutSimulation, ReplaceMovesInBatchesAsWideAsTheBudgetsAllow) {
  // desired 10, maxUnavailable 2, maxSurge 3: the first step takes two out
  // and starts three.
  ClusterSimulator sim(policy_of(Method::kReplace, count(2), count(3)), 10);
  const ClusterRolloutStep first = sim.step_once();
  EXPECT_EQ(first.retire.size(), 2u);
  EXPECT_EQ(first.create, 3);
  EXPECT_TRUE(first.update.empty());
  ASSERT_TRUE(sim.run_until_done(tick_bound(10)));
  expect_finished_cleanly(sim);
}

TEST(RolloutSimulation, InPlaceUpdatesWithoutNewMembers) {
  ClusterSimulator sim(policy_of(Method::kInPlace, percent(50), count(1)), 6);
  const ClusterRolloutStep first = sim.step_once();
  EXPECT_EQ(first.update.size(), 3u);
  EXPECT_TRUE(first.retire.empty());
  EXPECT_EQ(first.create, 0);
  ASSERT_TRUE(sim.run_until_done(tick_bound(6)));
  expect_finished_cleanly(sim);
  EXPECT_EQ(sim.members.size(), 6u);  // no new member ids
}

// ---------------------------------------------------------------------------
// Canary

struct CanaryCase {
  Method method;
  int desired;
  int canary;
  IntOrPercent max_unavailable;
  IntOrPercent max_surge;
};

TEST(RolloutCanary, HoldsExactlyTheCanaryUntilPromoted) {
  const CanaryCase cases[] = {
      {Method::kReplace, 5, 2, count(1), count(1)},    {Method::kReplace, 3, 1, count(1), count(0)},
      {Method::kReplace, 6, 1, count(0), count(2)},    {Method::kReplace, 10, 3, percent(25), percent(25)},
      {Method::kReplace, 2, 1, count(1), count(1)},    {Method::kReplace, 20, 5, percent(100), percent(100)},
      {Method::kInPlace, 5, 2, count(1), count(0)},    {Method::kInPlace, 10, 4, count(3), count(1)},
      {Method::kInPlace, 3, 2, percent(50), count(0)}, {Method::kInPlace, 20, 1, percent(100), count(0)},
  };
  for (const CanaryCase& c : cases) {
    ClusterSimulator sim(policy_of(c.method, c.max_unavailable, c.max_surge, c.canary), c.desired);
    ASSERT_TRUE(manifest_accepts(sim.policy, c.desired)) << sim.combo();
    const ClusterRolloutStep held = sim.settle(tick_bound(c.desired));
    ASSERT_FALSE(sim.broken);
    EXPECT_TRUE(held.canary_reached) << sim.combo();
    EXPECT_FALSE(held.done) << sim.combo();
    EXPECT_EQ(held.waiting, "canary of " + std::to_string(c.canary) + " Active: waiting for promote") << sim.combo();
    const Counts counts = sim.counts();
    EXPECT_EQ(counts.live_on_target, c.canary) << sim.combo();
    EXPECT_EQ(counts.live, c.desired) << sim.combo();
    EXPECT_EQ(counts.active, c.desired) << sim.combo();

    for (int i = 0; i < 50 && !sim.broken; ++i) {
      const ClusterRolloutStep step = sim.step_once();
      EXPECT_FALSE(moves(step)) << sim.combo() << " at tick " << sim.tick;
      EXPECT_TRUE(step.canary_reached) << sim.combo() << " at tick " << sim.tick;
    }

    sim.promoted = true;
    if (sim.run_until_done(tick_bound(c.desired))) {
      expect_finished_cleanly(sim);
    }
  }
}

TEST(RolloutCanary, HoldsAndFinishesForEveryCombination) {
  for (Method method : {Method::kReplace, Method::kInPlace}) {
    for (int desired : kDesiredCounts) {
      // canary == desired is no hold: every member is in the canary.
      for (int canary : std::set<int>{1, desired / 2, desired - 1}) {
        for (IntOrPercent unavailable : kBudgets) {
          for (IntOrPercent surge : kBudgets) {
            const UpdatePolicy policy = policy_of(method, unavailable, surge, canary);
            if (canary < 1 || canary >= desired || !manifest_accepts(policy, desired)) {
              continue;
            }
            ClusterSimulator sim(policy, desired);
            const ClusterRolloutStep held = sim.settle(tick_bound(desired));
            if (sim.broken) {
              continue;
            }
            EXPECT_TRUE(held.canary_reached) << sim.combo();
            EXPECT_EQ(sim.counts().live_on_target, canary) << sim.combo();
            EXPECT_EQ(sim.counts().active, desired) << sim.combo();
            sim.promoted = true;
            if (sim.run_until_done(tick_bound(desired))) {
              expect_finished_cleanly(sim);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Pause between batches

// Runs a rollout with pauseBetweenBatchesSeconds 2 and a Starting -> Active
// time standing for minReadySeconds; at every batch start, each target member
// must have been Active for the pause. Returns the number of batches.
int expect_batches_wait_for_the_pause(UpdatePolicy policy, int desired) {
  policy.pause_between_batches_seconds = 2;
  const auto pause = std::chrono::seconds(policy.pause_between_batches_seconds);
  ClusterSimulator sim(policy, desired);
  sim.start_time = 500ms;

  int batches = 0;
  bool paused = false;
  const auto check_batch_start = [&](const ClusterRolloutStep& step) {
    paused |= step.waiting == "pausing between batches";
    // A batch starts when an Active member is taken out, or when more
    // members are created than are missing.
    bool starts = !step.update.empty() || step.create > std::max(0, sim.desired - sim.counts().live);
    for (const std::string& id : step.retire) {
      const RolloutMember* m = sim.find(id);
      starts |= m != nullptr && m->state == S::kActive;
    }
    if (!starts) {
      return;
    }
    ++batches;
    for (const RolloutMember& m : sim.members) {
      if (is_live(m.state) && m.on_target) {
        EXPECT_EQ(to_string(m.state), "Active")
            << sim.combo() << ": batch " << batches << " starts while " << m.id << " is " << to_string(m.state);
        EXPECT_GE(sim.clock.now() - m.since, pause)
            << sim.combo() << ": batch " << batches << " starts "
            << std::chrono::duration_cast<std::chrono::milliseconds>(sim.clock.now() - m.since).count() << " ms after "
            << m.id << " became Active";
      }
    }
  };
  bool done = false;
  for (int i = 0; i < 50 + 40 * desired && !done && !sim.broken; ++i) {
    done = sim.step_once(check_batch_start).done;
  }
  EXPECT_TRUE(done) << sim.combo() << "; waiting: " << sim.last_step.waiting;
  if (done) {
    expect_finished_cleanly(sim);
  }
  EXPECT_EQ(paused, batches > 1) << sim.combo() << ": " << batches << " batches";
  return batches;
}

TEST(RolloutPause, ABatchStartsOnlyWhenThePreviousHasBeenActiveForThePause) {
  // One member per batch when replacing (maxSurge 1, maxUnavailable 2 gives
  // 2 out and 1 in, then one at a time); 2, 2, 1 in place.
  EXPECT_GE(expect_batches_wait_for_the_pause(policy_of(Method::kReplace, count(2), count(1)), 5), 3);
  EXPECT_EQ(expect_batches_wait_for_the_pause(policy_of(Method::kInPlace, count(2), count(1)), 5), 3);
}

TEST(RolloutPause, HoldsForEveryCombination) {
  for (Method method : {Method::kReplace, Method::kInPlace}) {
    for (int desired : {2, 5, 10}) {
      for (IntOrPercent unavailable : kBudgets) {
        for (IntOrPercent surge : kBudgets) {
          const UpdatePolicy policy = policy_of(method, unavailable, surge);
          if (manifest_accepts(policy, desired)) {
            expect_batches_wait_for_the_pause(policy, desired);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// All at once

TEST(RolloutAllAtOnce, ReplaceStopsEveryOldMemberBeforeCreatingNewOnes) {
  for (int desired : {1, 3, 10}) {
    UpdatePolicy policy = policy_of(Method::kReplace, count(1), count(1));
    policy.strategy = Strategy::kAllAtOnce;
    ClusterSimulator sim(policy, desired);

    const ClusterRolloutStep first = sim.step_once();
    EXPECT_EQ(first.retire.size(), static_cast<size_t>(desired)) << sim.combo();
    EXPECT_EQ(first.create, 0) << sim.combo();

    bool created = false;
    const auto old_gone_before_create = [&](const ClusterRolloutStep& step) {
      if (step.create == 0) {
        return;
      }
      created = true;
      EXPECT_EQ(step.create, desired) << sim.combo();
      for (const RolloutMember& m : sim.members) {
        EXPECT_TRUE(m.on_target || !exists(m.state))
            << sim.combo() << ": creates while " << m.id << " is " << to_string(m.state);
      }
    };
    bool done = false;
    for (int i = 0; i < tick_bound(desired) && !done && !sim.broken; ++i) {
      done = sim.step_once(old_gone_before_create).done;
    }
    ASSERT_TRUE(done) << sim.combo();
    EXPECT_TRUE(created) << sim.combo();
    expect_finished_cleanly(sim);
  }
}

TEST(RolloutAllAtOnce, InPlaceUpdatesEveryMemberTogether) {
  for (int desired : {1, 3, 10}) {
    UpdatePolicy policy = policy_of(Method::kInPlace, count(1), count(0));
    policy.strategy = Strategy::kAllAtOnce;
    ClusterSimulator sim(policy, desired);

    const ClusterRolloutStep first = sim.step_once();
    EXPECT_EQ(first.update.size(), static_cast<size_t>(desired)) << sim.combo();
    EXPECT_TRUE(first.retire.empty()) << sim.combo();
    EXPECT_EQ(first.create, 0) << sim.combo();
    ASSERT_TRUE(sim.run_until_done(tick_bound(desired)));
    expect_finished_cleanly(sim);
    EXPECT_EQ(sim.members.size(), static_cast<size_t>(desired)) << sim.combo();
  }
}

// ---------------------------------------------------------------------------
// Progress deadline

TEST(RolloutDeadline, TargetMembersNotActiveInTimeAreOverdue) {
  const TimePoint now = TimePoint{std::chrono::seconds{1'800'000'000}};
  UpdatePolicy policy;
  policy.progress_deadline_seconds = 300;
  ClusterRolloutInput in{policy, 3, {}, false, now};
  in.members = {
      {"shop/web/1", S::kActive, false, kOldRevision, now - 1h},
      {"shop/web/2", S::kActive, false, kOldRevision, now - 1h},
      {"shop/web/3", S::kStarting, false, kOldRevision, now - 1h},  // not the rollout's member
      {"shop/web/4", S::kStarting, true, kTargetRevision, now - 301s},
      {"shop/web/5", S::kStarting, true, kTargetRevision, now - 299s},
      {"shop/web/6", S::kUpdating, true, kTargetRevision, now - 400s},
  };
  EXPECT_EQ(plan_cluster_rollout(in).overdue, (std::vector<std::string>{"shop/web/4", "shop/web/6"}));
}

TEST(RolloutDeadline, AStuckBatchIsReportedAndHoldsTheRolloutBack) {
  UpdatePolicy policy = policy_of(Method::kReplace, count(1), count(1));
  policy.progress_deadline_seconds = 5;
  ClusterSimulator sim(policy, 3);
  sim.target_members_hang = true;

  std::optional<int> overdue_at;  // tick
  for (int i = 0; i < 100 && !sim.broken; ++i) {
    const ClusterRolloutStep step = sim.step_once();
    if (step.overdue.empty()) {
      continue;
    }
    ASSERT_EQ(step.overdue.size(), 1u);
    const RolloutMember* stuck = sim.find(step.overdue[0]);
    ASSERT_NE(stuck, nullptr);
    EXPECT_TRUE(stuck->on_target);
    EXPECT_EQ(to_string(stuck->state), "Starting");
    const auto starting_for = sim.clock.now() - ClusterSimulator::kTick - stuck->since;
    if (!overdue_at) {
      overdue_at = sim.tick;
      EXPECT_GT(starting_for, 5s);
      EXPECT_LE(starting_for, 5s + ClusterSimulator::kTick);
    }
  }
  ASSERT_FALSE(sim.broken);
  EXPECT_TRUE(overdue_at.has_value());
  // Only the first batch went: one old member retired, the stuck one replaces it.
  int changed = 0;
  for (const auto& [id, times] : sim.old_changes) {
    changed += times;
  }
  EXPECT_EQ(changed, 1);
  EXPECT_EQ(sim.counts().live_on_target, 1);
  EXPECT_FALSE(sim.last_step.done);
}

// ---------------------------------------------------------------------------
// Healing while the canary holds

// What the fleet has done with a failed member by the time the planner looks:
// nothing yet, retired it in the same reconcile pass (Stopping, for 500 ms),
// or ended it at once (Failed -> Terminated: nothing left to stop).
enum class Cleanup { kNone, kStopping, kTerminated };

std::string describe(Cleanup cleanup) {
  switch (cleanup) {
    case Cleanup::kNone:
      return " (the failed member stays Failed)";
    case Cleanup::kStopping:
      return " (the failed member is Stopping for 500 ms)";
    case Cleanup::kTerminated:
      return " (the failed member is Terminated at once)";
  }
  return "";
}

void fail_one_old_active_member(ClusterSimulator& sim, Cleanup cleanup) {
  for (RolloutMember& m : sim.members) {
    if (!m.on_target && m.state == S::kActive) {
      m.state = cleanup == Cleanup::kNone ? S::kFailed : cleanup == Cleanup::kStopping ? S::kStopping : S::kTerminated;
      m.since = sim.clock.now();
      sim.failed_on_their_own.emplace(m.id);
      return;
    }
  }
  ADD_FAILURE() << sim.combo() << ": no old Active member to fail";
}

void expect_old_member_replaced_during_hold(const UpdatePolicy& policy, int desired, Cleanup cleanup) {
  ClusterSimulator sim(policy, desired);
  sim.stop_time = 500ms;
  const ClusterRolloutStep held = sim.settle(tick_bound(desired));
  ASSERT_FALSE(sim.broken);
  ASSERT_TRUE(held.canary_reached) << sim.combo();
  const std::string how = describe(cleanup);

  fail_one_old_active_member(sim, cleanup);
  int created_old = 0;
  std::string waiting;
  const auto record_healing = [&](const ClusterRolloutStep& step) {
    EXPECT_EQ(step.create, 0) << sim.combo() << how;
    if (step.create_old > 0) {
      created_old += step.create_old;
      EXPECT_EQ(step.old_revision, kOldRevision) << sim.combo() << how;
    }
    waiting = step.waiting;
  };
  for (int i = 0; i < tick_bound(desired) && !sim.broken; ++i) {
    sim.step_once(record_healing);
  }
  ASSERT_FALSE(sim.broken);
  EXPECT_EQ(created_old, 1) << sim.combo() << how << "; waiting: " << waiting;
  EXPECT_TRUE(sim.last_step.canary_reached) << sim.combo() << how;
  const Counts c = sim.counts();
  EXPECT_EQ(c.live, desired) << sim.combo() << how;
  EXPECT_EQ(c.active, desired) << sim.combo() << how;
  EXPECT_EQ(c.live_on_target, policy.canary) << sim.combo() << how;

  sim.promoted = true;
  if (sim.run_until_done(tick_bound(desired))) {
    expect_finished_cleanly(sim);
  }
}

TEST(RolloutHealing, AnOldMemberFailingDuringTheCanaryHoldIsReplacedOnTheOldRevision) {
  // Other old members remain to tell the old revision.
  for (Cleanup cleanup : {Cleanup::kNone, Cleanup::kStopping, Cleanup::kTerminated}) {
    expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(1), 1), 3, cleanup);
    expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(0), 1), 3, cleanup);
    expect_old_member_replaced_during_hold(policy_of(Method::kInPlace, count(1), count(0), 2), 5, cleanup);
  }
}

TEST(RolloutHealing, TheLastOldMemberFailingDuringTheCanaryHoldIsReplacedOnTheOldRevision) {
  // The failed member is still there when the replacement fits.
  expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(1), 1), 2, Cleanup::kNone);
  expect_old_member_replaced_during_hold(policy_of(Method::kInPlace, count(1), count(0), 1), 2, Cleanup::kNone);
  expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(1), 1), 2, Cleanup::kStopping);
}

TEST(RolloutHealing, TheLastOldMemberGoneBeforeItsReplacementFitsIsStillReplaced) {
  // Without surge the replacement fits only once the failed member is
  // Terminated; Terminated at once, it never is there. Either way no member
  // is left to tell the old revision: the rollout's from_revision does.
  expect_old_member_replaced_during_hold(policy_of(Method::kInPlace, count(1), count(0), 1), 2, Cleanup::kStopping);
  expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(0), 1), 2, Cleanup::kStopping);
  expect_old_member_replaced_during_hold(policy_of(Method::kReplace, count(1), count(1), 1), 2, Cleanup::kTerminated);
}

// ---------------------------------------------------------------------------
// Scaled down during the rollout

// desired lowered to 1 while an in-place rollout is still running: every live
// member is on the target, and some are still Updating.
ClusterRolloutInput scaled_down_while_updating(S first_state) {
  const TimePoint now = TimePoint{std::chrono::seconds{1'800'000'000}};
  UpdatePolicy policy = policy_of(Method::kInPlace, count(1), count(0));
  policy.strategy = Strategy::kAllAtOnce;
  ClusterRolloutInput in{policy, 1, {}, false, now};
  in.members = {
      {"shop/web/1", first_state, true, kTargetRevision, now - 10s},
      {"shop/web/2", S::kUpdating, true, kTargetRevision, now - 1s},
      {"shop/web/3", S::kUpdating, true, kTargetRevision, now - 1s},
  };
  return in;
}

// At most the surplus of two is retired, each once, and the serving member last.
void expect_only_the_surplus_retired(S first_state) {
  const ClusterRolloutInput in = scaled_down_while_updating(first_state);
  // In a child process, so that a planner reading past its candidates fails
  // this test only.
  ASSERT_EXIT(
      {
        plan_cluster_rollout(in);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  const ClusterRolloutStep step = plan_cluster_rollout(in);
  const std::set<std::string> retired(step.retire.begin(), step.retire.end());
  EXPECT_EQ(retired.size(), step.retire.size());
  EXPECT_LE(retired.size(), 2u);
  for (const std::string& id : retired) {
    EXPECT_TRUE(id == "shop/web/1" || id == "shop/web/2" || id == "shop/web/3") << id;
  }
  if (first_state == S::kActive) {
    EXPECT_FALSE(retired.contains("shop/web/1")) << "the serving member goes last";
  }
}

TEST(RolloutScaleDown, EveryMemberStillUpdating) { expect_only_the_surplus_retired(S::kUpdating); }

TEST(RolloutScaleDown, OneMemberActiveTheOthersStillUpdating) { expect_only_the_surplus_retired(S::kActive); }

// The fault campaign's seed 1358060814: an in-place rollout from 6 members
// scaled down to 4 once 4 were on the target (two of them only relabelled:
// the same template). The two old members were neither updated (the target
// had its 4) nor retired (the rollout held the cluster): it never finished.
TEST(RolloutScaleDown, OldMembersLeftOverOnceTheTargetHasItsMembersAreRetired) {
  const TimePoint now = TimePoint{std::chrono::seconds{1'800'000'000}};
  ClusterRolloutInput in{policy_of(Method::kInPlace, count(1), count(1)), 4, {}, false, now};
  in.members = {
      {"shop/web/14", S::kActive, true, kTargetRevision, now - 10s},
      {"shop/web/15", S::kActive, true, kTargetRevision, now - 10s},
      {"shop/web/18", S::kActive, false, kOldRevision, now - 10s},
      {"shop/web/19", S::kActive, false, kOldRevision, now - 10s},
      {"shop/web/22", S::kActive, true, kTargetRevision, now - 10s},
      {"shop/web/23", S::kActive, true, kTargetRevision, now - 10s},
  };
  ClusterRolloutStep step = plan_cluster_rollout(in);
  EXPECT_TRUE(step.update.empty());
  EXPECT_EQ(step.retire, (std::vector<std::string>{"shop/web/18", "shop/web/19"}));
  EXPECT_EQ(step.create, 0);
  EXPECT_FALSE(step.done);

  in.members.erase(in.members.begin() + 2, in.members.begin() + 4);  // the two stopped
  EXPECT_TRUE(plan_cluster_rollout(in).done);
}

}  // namespace
}  // namespace tranche
