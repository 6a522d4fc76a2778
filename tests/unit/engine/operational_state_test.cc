#include "engine/operational_state.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

OperationalValueRecord value(std::string path, Setting s, std::string v) {
  return OperationalValueRecord{"shop", std::move(path), s, std::move(v), std::nullopt, std::nullopt, "t", {}};
}

TEST(OperationalState, DefaultsWhenNothingIsExplicit) {
  for (Setting s : kAllSettings) {
    const SettingView v = resolve({}, "backend/db/3", s);
    EXPECT_EQ(v.effective, default_value(s));
    EXPECT_FALSE(v.explicit_value.has_value());
    EXPECT_FALSE(v.source.has_value());
  }
  EXPECT_EQ(default_value(Setting::kAutoscaling), "on");
  EXPECT_EQ(default_value(Setting::kAutohealing), "on");
  EXPECT_EQ(default_value(Setting::kMaintenance), "off");
}

TEST(OperationalState, NearestExplicitValueWins) {
  const std::vector<OperationalValueRecord> values = {value("", Setting::kAutoscaling, "off"),
                                                      value("backend/db", Setting::kAutoscaling, "on")};
  EXPECT_EQ(resolve(values, "web", Setting::kAutoscaling).effective, "off");
  EXPECT_EQ(resolve(values, "web", Setting::kAutoscaling).source, "");
  EXPECT_EQ(resolve(values, "backend", Setting::kAutoscaling).effective, "off");
  const SettingView db = resolve(values, "backend/db", Setting::kAutoscaling);
  EXPECT_EQ(db.effective, "on");
  EXPECT_EQ(db.explicit_value, "on");
  const SettingView member = resolve(values, "backend/db/7", Setting::kAutoscaling);
  EXPECT_EQ(member.effective, "on");
  EXPECT_EQ(member.source, "backend/db");
  EXPECT_FALSE(member.explicit_value.has_value());
  // Settings are independent of one another.
  EXPECT_EQ(resolve(values, "backend/db", Setting::kAutohealing).effective, "on");
}

TEST(OperationalState, SiblingPrefixIsNotAnAncestor) {
  const std::vector<OperationalValueRecord> values = {value("web", Setting::kAutohealing, "off")};
  EXPECT_EQ(resolve(values, "webshop", Setting::kAutohealing).effective, "on");
  EXPECT_FALSE(is_below("webshop", "web"));
  EXPECT_TRUE(is_below("web/1", "web"));
  EXPECT_TRUE(is_below("web", ""));
  EXPECT_FALSE(is_below("", ""));
  EXPECT_FALSE(is_below("web", "web"));
}

TEST(OperationalState, ParentPaths) {
  EXPECT_EQ(parent_path("a/b/c"), "a/b");
  EXPECT_EQ(parent_path("a"), "");
  EXPECT_FALSE(parent_path("").has_value());
}

TEST(OperationalState, AllowedValues) {
  EXPECT_TRUE(is_allowed_value(Setting::kMaintenance, "replace"));
  EXPECT_FALSE(is_allowed_value(Setting::kMaintenance, "on"));
  EXPECT_TRUE(is_allowed_value(Setting::kAutohealing, "off"));
  EXPECT_FALSE(is_allowed_value(Setting::kAutohealing, "restart"));
}

TEST(OperationalState, ResolveAllKeepsOrderAndKinds) {
  const auto views = resolve_all({value("", Setting::kMaintenance, "restart")},
                                 {{"", "application"}, {"web", "cluster"}, {"web/1", "member"}});
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[2].kind, "member");
  EXPECT_EQ(views[2].maintenance.effective, "restart");
  EXPECT_EQ(views[0].maintenance.explicit_value, "restart");
}

}  // namespace
}  // namespace tranche
