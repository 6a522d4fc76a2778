// What the API reads of the fleet (fleet/views.cc): the clusters' counts for
// the application's view, and GET /members a page at a time. With the
// manual clock and fake agent links of the other fleet tests.

#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

#include <gtest/gtest.h>

#include "engine/application_service.h"

namespace tranche {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kTwoClusters = R"(application: shop
clusters:
  - name: api
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "1", command: ["api"]}
  - name: web
    members: {min: 1, max: 20, desired: 3}
    artifact: {version: "1", command: ["web"]}
    update: {minReadySeconds: 0}
)";

class FleetViewsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{1s, 3s, 10s, "jt_secret"});
    ASSERT_TRUE(fleet_->load().has_value());
    host_ = join_host(*fleet_, "a");
  }

  void apply(std::string text = kTwoClusters, int web_desired = 3) {
    text.replace(text.find("desired: 3"), 10, "desired: " + std::to_string(web_desired));
    ASSERT_TRUE(apps_->apply(text, ManifestFormat::kYaml, false, {"t", "t"}).has_value());
    fleet_->tick();
  }

  void heartbeat(std::vector<protocol::MemberReport> members) {
    deliver(*fleet_, host_.id, protocol::to_json(protocol::Heartbeat{++hb_seq_, std::move(members)}));
    fleet_->tick();
  }

  Fleet::ClusterCounts counts(const std::string& cluster) {
    return fleet_->cluster_counts("shop", {cluster}).at(cluster);
  }

  int64_t in_state(const Fleet::ClusterCounts& c, MemberState s) { return c.by_state[static_cast<size_t>(s)]; }

  json page(const MemberQuery& query, std::optional<size_t> limit, const std::string& after = {},
            const std::optional<std::string>& visible = std::nullopt) {
    return fleet_->members_json(query, visible, Fleet::MemberPage{limit, after}).value();
  }

  static std::vector<std::string> ids(const json& answer) {
    std::vector<std::string> out;
    for (const auto& m : answer["items"]) {
      out.push_back(m["id"]);
    }
    return out;
  }

  // Every page of `limit` from the start, following the cursor.
  std::vector<std::vector<std::string>> pages(const MemberQuery& query, size_t limit) {
    std::vector<std::vector<std::string>> out;
    std::string after;
    for (int i = 0; i < 100; ++i) {
      const json answer = page(query, limit, after);
      out.push_back(ids(answer));
      if (answer["continue"].is_null()) {
        return out;
      }
      after = answer["continue"];
    }
    ADD_FAILURE() << "the cursor never ended";
    return out;
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  JoinedHost host_;
  uint64_t hb_seq_ = 0;
};

TEST_F(FleetViewsTest, ClusterCountsFollowTheMembersStates) {
  apply();
  Fleet::ClusterCounts web = counts("web");
  EXPECT_EQ(web.count, 3);
  EXPECT_EQ(in_state(web, MemberState::kStarting), 3);
  EXPECT_EQ(in_state(web, MemberState::kActive), 0);
  EXPECT_EQ(web.healthy, 0);
  EXPECT_EQ(web.by_revision, (std::map<int64_t, int64_t>{{1, 3}}));
  const Fleet::ClusterCounts api = counts("api");
  EXPECT_EQ(api.count, 2);
  EXPECT_EQ(in_state(api, MemberState::kStarting), 2) << "each cluster counts its own";

  // Two healthy, one running but not healthy: two Active.
  heartbeat({{"shop/web/1", "Running", true, {}, 11, {}},
             {"shop/web/2", "Running", true, {}, 12, {}},
             {"shop/web/3", "Running", false, {}, 13, {}}});
  web = counts("web");
  EXPECT_EQ(web.count, 3);
  EXPECT_EQ(in_state(web, MemberState::kActive), 2);
  EXPECT_EQ(in_state(web, MemberState::kStarting), 1);
  EXPECT_EQ(web.healthy, 2);
  EXPECT_EQ(web.updating, 0);

  const json shown = Fleet::to_json(web);
  EXPECT_EQ(shown["count"], 3);
  EXPECT_EQ(shown["states"], (json{{"Active", 2}, {"Starting", 1}})) << "only the states someone is in";
  EXPECT_EQ(shown["available"], 2);
  EXPECT_EQ(shown["healthy"], 2);
  EXPECT_EQ(shown["revisions"], (json{{"1", 3}}));

  // A scale-down retires one: it is counted in its way out until it has left.
  apply(kTwoClusters, 2);
  web = counts("web");
  EXPECT_EQ(web.count, 3);
  EXPECT_EQ(in_state(web, MemberState::kActive) + in_state(web, MemberState::kStarting), 2);
  EXPECT_EQ(in_state(web, MemberState::kStopping) + in_state(web, MemberState::kDraining), 1);
  EXPECT_EQ(web.by_revision, (std::map<int64_t, int64_t>{{2, 3}})) << "relabelled: revision 2 has the same template";
  EXPECT_EQ(web.live_by_revision, (std::map<int64_t, int64_t>{{2, 2}})) << "the one on its way out is not live";

  const Fleet::ClusterCounts none = counts("nothing");
  EXPECT_EQ(none.count, 0) << "a cluster without members, or unknown, counts nothing";
  EXPECT_TRUE(none.by_revision.empty());
}

TEST_F(FleetViewsTest, AClustersMembersPageInIdOrderUntilTheCursorEnds) {
  apply(kTwoClusters, 12);
  const MemberQuery web{std::string("shop"), std::string("web"), std::nullopt};
  // Ids order as strings: shop/web/10 comes before shop/web/2.
  const std::vector<std::string> all = ids(page(web, std::nullopt));
  ASSERT_EQ(all.size(), 12u);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_EQ(all[1], "shop/web/10");
  EXPECT_TRUE(page(web, std::nullopt)["continue"].is_null()) << "without a limit, every member and no cursor";

  const json first = page(web, 5);
  EXPECT_EQ(ids(first), std::vector<std::string>(all.begin(), all.begin() + 5));
  EXPECT_EQ(first["continue"], all[4]) << "the cursor is the page's last id";

  for (size_t limit : {1u, 5u, 6u, 11u, 12u, 13u}) {
    std::vector<std::string> walked;
    const auto got = pages(web, limit);
    for (const auto& p : got) {
      EXPECT_LE(p.size(), limit);
      walked.insert(walked.end(), p.begin(), p.end());
    }
    EXPECT_EQ(walked, all) << "limit " << limit << ": every member once, in order";
    EXPECT_EQ(got.size(), (all.size() + limit - 1) / limit)
        << "limit " << limit << ": a page that ends exactly at the last member says there is no next one";
  }
  const json past = page(web, 5, "shop/web/99");
  EXPECT_TRUE(past["items"].empty());
  EXPECT_TRUE(past["continue"].is_null());
}

TEST_F(FleetViewsTest, AnApplicationsMembersPageAcrossItsClustersWithTheirFilters) {
  apply();
  heartbeat({{"shop/web/1", "Running", true, {}, 11, {}},
             {"shop/web/2", "Running", true, {}, 12, {}},
             {"shop/web/3", "Running", true, {}, 13, {}}});  // web Active, api still Starting
  const MemberQuery shop{std::string("shop"), std::nullopt, std::nullopt};
  EXPECT_EQ(pages(shop, 3), (std::vector<std::vector<std::string>>{{"shop/api/1", "shop/api/2", "shop/web/1"},
                                                                   {"shop/web/2", "shop/web/3"}}));
  const MemberQuery starting{std::string("shop"), std::nullopt, std::string("Starting")};
  EXPECT_EQ(pages(starting, 1), (std::vector<std::vector<std::string>>{{"shop/api/1"}, {"shop/api/2"}}));
  const MemberQuery anywhere{std::nullopt, std::nullopt, std::string("Active")};
  EXPECT_EQ(pages(anywhere, 2),
            (std::vector<std::vector<std::string>>{{"shop/web/1", "shop/web/2"}, {"shop/web/3"}}));
  // Each member carries its maintenance mark, read after the fleet's lock.
  EXPECT_EQ(page(shop, 1)["items"][0]["maintenance"], "off");
  // A token scoped to another application sees none of them.
  const json hidden = page(shop, 2, "", std::string("other"));
  EXPECT_TRUE(hidden["items"].empty());
  EXPECT_TRUE(hidden["continue"].is_null());
}

}  // namespace
}  // namespace tranche
