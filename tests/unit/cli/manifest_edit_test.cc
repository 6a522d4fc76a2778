#include "cli/manifest_edit.h"

#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/manifest.h"

namespace tranche::cli {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// Clusters at the top, in a group, and in a group of a group.
constexpr std::string_view kManifest = R"(application: shop
groups:
  - name: backend
    groups:
      - name: storage
        clusters:
          - name: db
            artifact: {version: "15.4", command: ["./db"]}
    clusters:
      - name: api
        artifact: {version: "2.0", command: ["./api"]}
clusters:
  - name: web
    artifact: {version: "1.4.2", command: ["./web"]}
)";

// The manifest as a revision holds it: the normalized JSON.
json normalized() {
  auto spec = parse_manifest(kManifest, ManifestFormat::kYaml);
  EXPECT_TRUE(spec.has_value()) << spec.error().describe();
  return to_json(*spec);
}

std::string version_at(const ApplicationSpec& spec, std::string_view path) {
  for (const auto& n : flatten(spec)) {
    if (n.cluster != nullptr && n.path == path) {
      return n.cluster->artifact.version;
    }
  }
  return "(no such cluster)";
}

// Parses the edited document as the controller would (a JSON apply).
ApplicationSpec reparse(const json& doc) {
  auto spec = parse_manifest(doc.dump(), ManifestFormat::kJson);
  EXPECT_TRUE(spec.has_value()) << spec.error().describe();
  return spec.value_or(ApplicationSpec{});
}

TEST(ManifestEditTest, ChangesTheVersionOfATopLevelClusterOnly) {
  const json before = normalized();
  auto after = with_cluster_version(before, "web", "1.4.3");
  ASSERT_TRUE(after.has_value()) << after.error().describe();
  EXPECT_EQ(json::diff(before, *after),
            json::parse(R"([{"op": "replace", "path": "/clusters/0/artifact/version", "value": "1.4.3"}])"));
  const ApplicationSpec spec = reparse(*after);
  EXPECT_EQ(version_at(spec, "web"), "1.4.3");
  EXPECT_EQ(version_at(spec, "backend/api"), "2.0");
  EXPECT_EQ(version_at(spec, "backend/storage/db"), "15.4");
}

TEST(ManifestEditTest, FindsClustersInGroups) {
  auto api = with_cluster_version(normalized(), "backend/api", "2.1");
  ASSERT_TRUE(api.has_value()) << api.error().describe();
  EXPECT_EQ(version_at(reparse(*api), "backend/api"), "2.1");

  auto db = with_cluster_version(normalized(), "backend/storage/db", "16.0");
  ASSERT_TRUE(db.has_value()) << db.error().describe();
  const ApplicationSpec spec = reparse(*db);
  EXPECT_EQ(version_at(spec, "backend/storage/db"), "16.0");
  EXPECT_EQ(version_at(spec, "backend/api"), "2.0");
  EXPECT_EQ(version_at(spec, "web"), "1.4.2");
}

TEST(ManifestEditTest, NoSuchClusterNamesThePathAndTheClustersThereAre) {
  for (std::string_view path : {"api", "backend/web", "backend/storage/api", "nope/db", "web/x"}) {
    auto r = with_cluster_version(normalized(), path, "9");
    ASSERT_FALSE(r.has_value()) << path;
    EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << path;
    EXPECT_EQ(r.error().field, "PATH");
    EXPECT_THAT(r.error().message, HasSubstr("has no cluster shop/" + std::string(path)));
    EXPECT_THAT(r.error().message, HasSubstr("its clusters: backend/storage/db, backend/api, web"));
  }
}

TEST(ManifestEditTest, AGroupIsNotACluster) {
  for (std::string_view path : {"backend", "backend/storage"}) {
    auto r = with_cluster_version(normalized(), path, "9");
    ASSERT_FALSE(r.has_value()) << path;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_THAT(r.error().message, HasSubstr("shop/" + std::string(path) + " is a group, not a cluster"));
  }
}

TEST(ManifestEditTest, AnEmptyPathIsRefused) {
  auto r = with_cluster_version(normalized(), "", "9");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
}

TEST(ManifestEditTest, DesiredChangesAlone) {
  json before = normalized();
  before["groups"][0]["clusters"][0]["members"]["max"] = 5;  // the defaults are 1..1
  auto after = with_cluster_desired(before, "backend/api", 4);
  ASSERT_TRUE(after.has_value()) << after.error().describe();
  EXPECT_EQ(json::diff(before, *after),
            json::parse(R"([{"op": "replace", "path": "/groups/0/clusters/0/members/desired", "value": 4}])"));
  reparse(*after);
}

TEST(ManifestEditTest, DesiredOutsideMinMaxIsRefusedWithTheBounds) {
  const json before = normalized();
  const json& members = before["clusters"][0]["members"];
  const int64_t min = members["min"].get<int64_t>();
  const int64_t max = members["max"].get<int64_t>();
  for (int64_t desired : {min - 1, max + 1}) {
    auto r = with_cluster_desired(before, "web", desired);
    ASSERT_FALSE(r.has_value()) << desired;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_EQ(r.error().field, "--members");
    EXPECT_THAT(r.error().message, HasSubstr(std::to_string(desired) + " members is outside the bounds of shop/web: min " +
                                             std::to_string(min) + ", max " + std::to_string(max)));
  }
  auto group = with_cluster_desired(before, "backend", 1);
  ASSERT_FALSE(group.has_value());
  EXPECT_THAT(group.error().message, HasSubstr("is a group, not a cluster"));
}

}  // namespace
}  // namespace tranche::cli
