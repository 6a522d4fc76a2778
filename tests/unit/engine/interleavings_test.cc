// Randomized interleavings of concurrent commands (issue 12): apply (scale up
// and down, new versions), maintenance restart/replace/off, autohealing,
// autoscaling with a changing load, delete, host drain, maintenance hooks
// held at the agent, agent and controller kills, on a small fleet
// (fleet_sim.h). After every step the invariants hold; at the end every
// accepted command has a recorded outcome and the fleet is what the last
// accepted commands ask for.
//
// EveryPairOfCommandsEndsAsTheLastAsk gives every ordered pair of these
// commands, the first still running (hooks held) when the second comes, and
// checks the same: the pairs the interaction table has no row for are
// tested there.
//
// Seeded and replayable: TRANCHE_INTERLEAVING_SEED=N runs seed N alone
// (with TRANCHE_INTERLEAVING_STEPS for a longer run); a failure names its
// seed and the step, and the log of commands so far.

#include <algorithm>
#include <array>
#include <cstdlib>
#include <random>

#include <gtest/gtest.h>

#include "fleet_sim.h"

namespace tranche {
namespace {

using nlohmann::json;

constexpr int kMaxUnavailable = 1;

std::string manifest(int desired, int version) {
  return "application: shop\nclusters:\n  - name: web\n    members: {min: 1, max: 10, desired: " +
         std::to_string(desired) + "}\n    artifact: {version: \"" + std::to_string(version) +
         "\", command: [\"web\"]}\n    operational: {autoscaling: \"off\"}\n"
         "    autoscaling: {windowSeconds: 3, scaleUpAbove: 0.8, scaleDownBelow: 0.2, cooldownSeconds: 2}\n"
         "    update: {minReadySeconds: 0, maxUnavailable: " +
         std::to_string(kMaxUnavailable) + ", maxSurge: 1, progressDeadlineSeconds: 600}\n";
}

class Interleaving {
 public:
  explicit Interleaving(uint64_t seed) : random_(seed) {}

  // Runs `steps` random commands; returns false at the first broken invariant.
  void run(int steps) {
    apply(3, 1);
    for (int i = 0; i < 5; ++i) {
      sim_.step();
    }
    for (step_ = 0; step_ < steps && !::testing::Test::HasFailure(); ++step_) {
      act(pick(kKinds), false);
      sim_.step();
      check();
    }
    quiesce();
  }

  // Command `first` given while hooks are held at the agents (so that it is
  // still running), then `second`, every pair of act()'s kinds: each pair
  // the interaction table has no row for (kIndependent) is tested here, the
  // others also have their own scenario (interactions_test.cc).
  void run_pair(int first, int second) {
    apply(3, 1);
    for (int i = 0; i < 5; ++i) {
      sim_.step();
    }
    hold_ = true;
    sim_.hold_maintenance(true);
    act(first, true);
    for (int i = 0; i < 2 && !::testing::Test::HasFailure(); ++i, ++step_) {
      sim_.step();
      check();
    }
    act(second, true);
    for (int i = 0; i < 3 && !::testing::Test::HasFailure(); ++i, ++step_) {
      sim_.step();
      check();
    }
    quiesce();
  }

  static constexpr int kKinds = 14;

  std::string log() const { return log_; }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(random_); }

  void note(const std::string& what) { log_ += std::to_string(step_) + ": " + what + "\n"; }

  void apply(int desired, int version) {
    auto done = sim_.apply(manifest(desired, version));
    ASSERT_TRUE(done.has_value()) << done.error().describe();
    desired_ = desired;
    version_ = version;
    deployed_ = true;
    note("apply desired " + std::to_string(desired) + " version " + std::to_string(version));
  }

  void set(const json& body) {
    auto done = sim_.set(body);
    ASSERT_TRUE(done.has_value()) << done.error().describe();
    note("set " + body.dump());
    if (body.contains("autohealing")) {
      autohealing_ = body["autohealing"];
    }
  }

  // One command of `kind`; `surely`: a delete always happens (at random it
  // is rarer, so that a run has something left to act on).
  void act(int kind, bool surely) {
    switch (kind) {
      case 0:
        apply(1 + pick(5), version_);
        break;
      case 1:
        apply(desired_, version_ + 1);
        break;
      case 2:
      case 3:
        set({{"path", "web"}, {"maintenance", pick(2) == 0 ? "restart" : "replace"}});
        break;
      case 4:
        set({{"path", "web"}, {"maintenance", "off"}});
        break;
      case 5:
        set({{"path", "web"}, {"autohealing", pick(2) == 0 ? "off" : "on"}});
        break;
      case 6:
        if (surely || pick(3) == 0) {
          ASSERT_TRUE(sim_.apps().undeploy("shop", {"t", "t"}).has_value());
          deployed_ = false;
          note("delete");
        }
        break;
      case 7:
        hold_ = !hold_;
        sim_.hold_maintenance(hold_);
        note(hold_ ? "hooks held" : "hooks run");
        break;
      case 8:
        sim_.release_all();
        note("hooks released");
        break;
      case 9:
        sim_.kill_controller();
        note("controller killed");
        break;
      case 10:
        sim_.kill_agent(static_cast<size_t>(pick(2)));
        note("agent killed");
        break;
      case 11: {
        const bool draining = pick(2) == 0;
        (void)sim_.fleet().set_host_draining(sim_.host(1), draining, {"t", "t"});
        note(draining ? "host drained" : "host undrained");
        break;
      }
      case 12:
        set({{"path", "web"}, {"autoscaling", pick(2) == 0 ? "off" : "on"}});
        break;
      case 13: {
        const double load = std::array{0.0, 0.5, 1.0}[static_cast<size_t>(pick(3))];
        sim_.set_load(load);
        note("load " + std::to_string(load));
        break;
      }
    }
  }

  // The manifest's desired, or the autoscaler's count while it holds
  // (model.md: an operator's new desired wins over it).
  int desired() {
    const auto scales = sim_.store().list_cluster_scales("shop").value();
    for (const auto& scale : scales) {
      if (scale.cluster == "web" && scale.base_desired == desired_) {
        return static_cast<int>(std::clamp<int64_t>(scale.desired, 1, 10));
      }
    }
    return desired_;
  }

  void check() {
    const auto members = sim_.members();
    const auto markers = sim_.markers();
    int active = 0;
    for (const auto& [id, m] : members) {
      active += m.state == "Active" ? 1 : 0;
      if (m.state == "Draining" || m.state == "Stopping") {
        EXPECT_FALSE(markers.contains(m.id.substr(5)))
            << id << " is being retired and still marked for maintenance; step " << step_;
      }
    }
    EXPECT_EQ(sim_.stopped_in_maintenance(), 0) << "a member was stopped in the middle of its hook; step " << step_
                                                << "\n" << recent_events();
    // The controller never takes an Active member out below the budget: when
    // Active went down, it is still at least desired - maxUnavailable.
    if (deployed_ && active < last_active_) {
      EXPECT_GE(active, desired() - kMaxUnavailable) << "step " << step_ << ", Active " << last_active_ << " -> "
                                                    << active << "\n" << recent_events();
    }
    last_active_ = active;
  }

  // The events of the last step, to see what broke an invariant.
  std::string recent_events() {
    std::string out;
    const auto events = sim_.events();
    for (size_t i = events.size() > 12 ? events.size() - 12 : 0; i < events.size(); ++i) {
      out += events[i].type + " " + events[i].member + " " + events[i].from_json + " -> " + events[i].to_json + ": " +
             events[i].message + "\n";
    }
    return out;
  }

  // Every hook finishes, the fleet settles: what the last commands ask for.
  void quiesce() {
    hold_ = false;
    sim_.hold_maintenance(false);
    sim_.set_load(0.5);  // normal: the autoscaler decides nothing more
    sim_.release_all();
    for (int i = 0; i < 80; ++i) {
      sim_.step();
      sim_.release_all();
    }
    const auto members = sim_.members();
    int active = 0;
    for (const auto& [id, m] : members) {
      if (m.state == "Terminated") {
        continue;
      }
      EXPECT_TRUE(deployed_) << id << " is " << m.state << " after delete";
      EXPECT_EQ(m.state, "Active") << id;
      EXPECT_EQ(m.version, std::to_string(version_)) << id;
      ++active;
    }
    EXPECT_EQ(active, deployed_ ? desired() : 0);
    EXPECT_TRUE(sim_.markers().empty());
    const auto node = sim_.value("web", Setting::kMaintenance);
    EXPECT_TRUE(!node || node->value == "off") << "maintenance of shop/web still " << node->value;
    const auto healing = sim_.value("web", Setting::kAutohealing);
    EXPECT_EQ(healing ? healing->value : "on", autohealing_);
    // Every accepted command has an outcome: none is still Running.
    EXPECT_TRUE(sim_.store().list_operations("shop", "Running").value().empty());
  }

  std::mt19937_64 random_;
  FleetSim sim_;
  int step_ = 0;
  int desired_ = 0;
  int version_ = 0;
  bool deployed_ = false;
  bool hold_ = false;
  std::string autohealing_ = "on";
  int last_active_ = 0;
  std::string log_;
};

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value ? std::strtoull(value, nullptr, 10) : fallback;
}

TEST(Interleavings, InvariantsHoldAndTheLastCommandsWin) {
  std::vector<std::pair<uint64_t, int>> runs;  // seed, steps
  if (std::getenv("TRANCHE_INTERLEAVING_SEED")) {
    runs.emplace_back(env_or("TRANCHE_INTERLEAVING_SEED", 0),
                      static_cast<int>(env_or("TRANCHE_INTERLEAVING_STEPS", 120)));
  } else {
    for (uint64_t seed = 1; seed <= 30; ++seed) {
      runs.emplace_back(seed, 120);
    }
    // Seeds that found a defect once (the rollout's own scale-down stopped a
    // member mid-hook while the autoscaler shrank the cluster): kept.
    for (uint64_t seed : {138, 194, 198, 285}) {
      runs.emplace_back(seed, 200);
    }
  }
  for (const auto& [seed, steps] : runs) {
    Interleaving run(seed);
    run.run(steps);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "replay: TRANCHE_INTERLEAVING_SEED=" << seed << " TRANCHE_INTERLEAVING_STEPS=" << steps
                    << "\ncommands:\n"
                    << run.log();
      return;
    }
  }
}

TEST(Interleavings, EveryPairOfCommandsEndsAsTheLastAsk) {
  for (int first = 0; first < Interleaving::kKinds; ++first) {
    for (int second = 0; second < Interleaving::kKinds; ++second) {
      const uint64_t seed = static_cast<uint64_t>(1000 + first * Interleaving::kKinds + second);
      Interleaving run(seed);
      run.run_pair(first, second);
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "pair " << first << ", " << second << " (seed " << seed << ")\ncommands:\n" << run.log();
        return;
      }
    }
  }
}

}  // namespace
}  // namespace tranche
