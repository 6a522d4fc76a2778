// The controller's one parsed-spec cache (engine/spec_cache.h): shared by
// the ApplicationService and the Fleet, each revision parsed once, an
// application's older revisions let go of while their holders keep them.

#include "engine/spec_cache.h"
#include "fake_agent_link.h"

#include <barrier>
#include <thread>

#include <gtest/gtest.h>

#include "engine/application_service.h"
#include "engine/fleet/fleet.h"

namespace tranche {
namespace {

using namespace std::chrono_literals;

std::string shop(const std::string& version, int desired = 2) {
  return R"(application: shop
clusters:
  - name: web
    members: {min: 1, max: 4, desired: )" +
         std::to_string(desired) + R"(}
    artifact: {version: ")" +
         version + R"(", command: ["web"]}
)";
}

const std::string& web_version(const ApplicationSpec& spec) { return spec.clusters.at(0).artifact.version; }

class SpecCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    specs_ = std::make_shared<SpecCache>(*store_);
    apps_ = std::make_unique<ApplicationService>(*store_, clock_, specs_);
  }

  void apply(const std::string& version, int desired = 2) {
    auto applied = apps_->apply(shop(version, desired), ManifestFormat::kYaml, false, {"t", "t"});
    ASSERT_TRUE(applied.has_value()) << applied.error().describe();
  }

  std::shared_ptr<const ApplicationSpec> get(int64_t revision) {
    auto spec = specs_->get("shop", revision);
    EXPECT_TRUE(spec.has_value()) << spec.error().describe();
    return spec.value_or(nullptr);
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<SpecCache> specs_;
  std::unique_ptr<ApplicationService> apps_;
};

TEST_F(SpecCacheTest, ARevisionIsParsedOnceForTheServiceAndTheFleet) {
  Fleet fleet(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"}, specs_);
  ASSERT_TRUE(fleet.load().has_value());
  JoinedHost host = join_host(fleet, "a");
  apply("1");
  ASSERT_TRUE(apps_->describe_application("shop").has_value());
  EXPECT_EQ(specs_->parses(), 1u);
  fleet.tick();
  EXPECT_EQ(host.link->commands("start").size(), 2u) << "the fleet placed the revision's members";
  ASSERT_TRUE(apps_->describe_application("shop").has_value());
  EXPECT_EQ(specs_->parses(), 1u);
}

TEST_F(SpecCacheTest, AnOlderRevisionLivesWhileHeldAndIsForgottenAfter) {
  apply("1");
  auto first = get(1);
  apply("2");
  EXPECT_EQ(web_version(*get(2)), "2");
  EXPECT_EQ(get(1), first) << "held, so found without parsing again";
  EXPECT_EQ(specs_->parses(), 2u);

  std::weak_ptr<const ApplicationSpec> watched = first;
  first.reset();
  EXPECT_TRUE(watched.expired()) << "the cache let revision 1 go once revision 2 came";
  EXPECT_EQ(web_version(*get(1)), "1");
  EXPECT_EQ(specs_->parses(), 3u);

  EXPECT_EQ(web_version(*get(2)), "2");
  EXPECT_EQ(specs_->parses(), 3u) << "an application's newest revision is kept with no holder";
}

TEST_F(SpecCacheTest, TheFleetKeepsTheRevisionsItsMembersRun) {
  Fleet fleet(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"}, specs_);
  ASSERT_TRUE(fleet.load().has_value());
  JoinedHost host = join_host(fleet, "a");
  apply("1");
  fleet.tick();
  apply("2");
  fleet.tick();
  const size_t parsed = specs_->parses();
  EXPECT_EQ(web_version(*get(1)), "1");
  EXPECT_EQ(specs_->parses(), parsed) << "revision 1's members hold it through the fleet";
}

TEST_F(SpecCacheTest, TheFleetLetsGoOfARevisionNoMemberRunsAtTheNextResync) {
  FleetOptions options{1s, 3s, 10s, "jt_secret"};
  options.resync_interval = 0ms;  // every pass resyncs
  Fleet fleet(*store_, clock_, options, specs_);
  ASSERT_TRUE(fleet.load().has_value());
  JoinedHost host = join_host(fleet, "a");
  apply("1");
  fleet.tick();
  apply("1", 3);  // revision 2: one member more, the same member template
  fleet.tick();   // relabels revision 1's members
  auto members = store_->list_members(MemberQuery{"shop"});
  ASSERT_TRUE(members.has_value());
  ASSERT_EQ(members->size(), 3u);
  for (const auto& m : *members) {
    ASSERT_EQ(m.revision, 2) << m.id;
  }
  fleet.tick();  // a resync: revision 1 is nobody's any more
  const size_t parsed = specs_->parses();
  EXPECT_EQ(web_version(*get(1)), "1");
  EXPECT_EQ(specs_->parses(), parsed + 1) << "the fleet no longer held revision 1: it was parsed again";
}

TEST_F(SpecCacheTest, AMissingRevisionIsNotFound) {
  apply("1");
  auto missing = specs_->get("shop", 7);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(specs_->get("other", 1).error().code, ErrorCode::kNotFound);
}

TEST_F(SpecCacheTest, ConcurrentGetsParseEachRevisionOnce) {
  for (const char* version : {"1", "2", "3"}) {
    apply(version);
  }
  SpecCache fresh(*store_);  // the applies above parsed some revisions in specs_
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  // Each thread keeps what it got until the end: nothing is let go and
  // parsed again, so every revision is parsed exactly once.
  std::vector<std::vector<std::shared_ptr<const ApplicationSpec>>> got(kThreads);
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        const int64_t revision = 1 + (t + i) % 3;
        auto spec = fresh.get("shop", revision);
        got[t].push_back(spec.value_or(nullptr));
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(fresh.parses(), 3u);
  std::map<int64_t, const ApplicationSpec*> seen;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kRounds; ++i) {
      const int64_t revision = 1 + (t + i) % 3;
      ASSERT_NE(got[t][i], nullptr);
      EXPECT_EQ(web_version(*got[t][i]), std::to_string(revision));
      auto [first, inserted] = seen.emplace(revision, got[t][i].get());
      EXPECT_EQ(first->second, got[t][i].get()) << "one parsed spec per revision";
    }
  }
}

}  // namespace
}  // namespace tranche
