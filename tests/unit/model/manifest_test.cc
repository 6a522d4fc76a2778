#include "model/manifest.h"

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace tranche {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::StartsWith;

// The example of model.md, "The manifest", verbatim.
constexpr std::string_view kSpecExample = R"(application: shop
description: Online shop            # optional
updateOrder: dependencies           # dependencies | reverse | parallel
revisionHistoryLimit: 20            # revisions kept
groups:
  - name: backend
    dependsOn: []                   # sibling names that start/update first
    clusters:
      - name: db
        members: {min: 1, max: 1, desired: 1}
        artifact:
          version: "15.4"
          command: ["./bin/db", "--port", "${PORT_MAIN}"]
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 2, max: 10, desired: 4}
    artifact:
      version: "1.4.2"              # changing it (or env/command) makes a new revision
      command: ["./bin/web", "--port", "${PORT_HTTP}", "--version", "${VERSION}"]
      env: {LOG_LEVEL: info}
      workdir: /srv/web             # optional
    ports: [http]                   # agent allocates one port each: ${PORT_HTTP}
    health:
      http: {port: http, path: /healthz}   # or tcp: {port: http} or exec: [cmd…]
      intervalSeconds: 1
      timeoutSeconds: 1
      unhealthyThreshold: 3
    stats: {http: {port: http, path: /admin/load}}   # optional, for autoscaling
    hooks:                          # each optional; run by the agent with TRANCHE_* env
      update: ["sh", "-c", "apt-get -y upgrade"]      # in-place update
      maintenance: ["sh", "-c", "./bin/selfcheck"]    # maintenance restart
      drain: ["sh", "-c", "./bin/web-drain"]          # before stop
    update:
      method: replace               # replace | in-place
      strategy: rolling             # rolling | all-at-once (not backward compatible)
      maxUnavailable: 1             # number or "25%"
      maxSurge: 1                   # number or "25%"; replace only
      canary: 0                     # members updated first, then the rollout pauses
      minReadySeconds: 2
      pauseBetweenBatchesSeconds: 0
      progressDeadlineSeconds: 300
      maxFailures: 0                # failed members tolerated before onFailure applies
      onFailure: rollback           # rollback | pause
    autoscaling:
      windowSeconds: 30
      scaleUpAbove: 0.8
      scaleDownBelow: 0.2
      cooldownSeconds: 60
    operational: {autoscaling: "on", autohealing: "on"}   # initial explicit values
    loadBalancer:
      haproxy: {backend: web}       # register members, drain before stop/update
      drainTimeoutSeconds: 30       # most time a member may take to lose its sessions
    placement:
      hostLabels: {zone: a}
      slots: 1                      # capacity units a member uses
)";

constexpr std::string_view kMinimal = R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
)";

// kMinimal with `extra` (indented by four spaces) added to cluster `web`.
std::string web_with(std::string_view extra) { return std::string(kMinimal) + std::string(extra); }

ApplicationSpec parse_ok(std::string_view text, ManifestFormat format = ManifestFormat::kYaml) {
  auto spec = parse_manifest(text, format);
  EXPECT_TRUE(spec.has_value()) << (spec ? "" : spec.error().describe()) << "\n" << text;
  return spec ? *spec : ApplicationSpec{};
}

::testing::AssertionResult Rejects(std::string_view text, std::string_view field, std::string_view message,
                                   ManifestFormat format = ManifestFormat::kYaml,
                                   ErrorCode code = ErrorCode::kUnprocessable) {
  auto spec = parse_manifest(text, format);
  if (spec) {
    return ::testing::AssertionFailure() << "accepted:\n" << text;
  }
  const Error& e = spec.error();
  if (e.code != code || e.field != field || e.message.find(message) == std::string::npos) {
    return ::testing::AssertionFailure() << "got " << to_string(e.code) << " field '" << e.field << "' message '"
                                         << e.message << "'; wanted " << to_string(code) << " field '" << field
                                         << "' message containing '" << message << "'";
  }
  return ::testing::AssertionSuccess();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---------------------------------------------------------------------------
// Acceptance

TEST(ManifestParse, AcceptsTheSpecExample) {
  const ApplicationSpec app = parse_ok(kSpecExample);
  EXPECT_EQ(app.name, "shop");
  EXPECT_EQ(app.description, "Online shop");
  EXPECT_EQ(app.update_order, ApplicationSpec::UpdateOrder::kDependencies);
  EXPECT_EQ(app.revision_history_limit, 20);

  ASSERT_EQ(app.groups.size(), 1u);
  const GroupSpec& backend = app.groups[0];
  EXPECT_EQ(backend.name, "backend");
  EXPECT_TRUE(backend.depends_on.empty());
  ASSERT_EQ(backend.clusters.size(), 1u);
  EXPECT_EQ(backend.clusters[0].name, "db");
  EXPECT_EQ(backend.clusters[0].artifact.version, "15.4");
  EXPECT_THAT(backend.clusters[0].artifact.command, ElementsAre("./bin/db", "--port", "${PORT_MAIN}"));

  ASSERT_EQ(app.clusters.size(), 1u);
  const ClusterSpec& web = app.clusters[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_THAT(web.depends_on, ElementsAre("backend"));
  EXPECT_EQ(web.members.min, 2);
  EXPECT_EQ(web.members.max, 10);
  EXPECT_EQ(web.members.desired, 4);
  EXPECT_EQ(web.artifact.version, "1.4.2");
  EXPECT_EQ(web.artifact.command.size(), 5u);
  EXPECT_THAT(web.artifact.env, ElementsAre(Pair("LOG_LEVEL", "info")));
  EXPECT_EQ(web.artifact.workdir, "/srv/web");
  EXPECT_THAT(web.ports, ElementsAre("http"));
  EXPECT_EQ(web.health.kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(web.health.port, "http");
  EXPECT_EQ(web.health.path, "/healthz");
  EXPECT_EQ(web.health.unhealthy_threshold, 3);
  ASSERT_TRUE(web.stats.has_value());
  EXPECT_EQ(web.stats->port, "http");
  EXPECT_EQ(web.stats->path, "/admin/load");
  EXPECT_THAT(web.hooks.update, ElementsAre("sh", "-c", "apt-get -y upgrade"));
  EXPECT_THAT(web.hooks.maintenance, ElementsAre("sh", "-c", "./bin/selfcheck"));
  EXPECT_THAT(web.hooks.drain, ElementsAre("sh", "-c", "./bin/web-drain"));
  EXPECT_EQ(web.update.method, UpdatePolicy::Method::kReplace);
  EXPECT_EQ(web.update.strategy, UpdatePolicy::Strategy::kRolling);
  EXPECT_EQ(web.update.max_unavailable.value, 1);
  EXPECT_FALSE(web.update.max_unavailable.percent);
  EXPECT_EQ(web.update.progress_deadline_seconds, 300);
  EXPECT_EQ(web.update.on_failure, UpdatePolicy::OnFailure::kRollback);
  EXPECT_EQ(web.autoscaling.window_seconds, 30);
  EXPECT_DOUBLE_EQ(web.autoscaling.scale_up_above, 0.8);
  EXPECT_DOUBLE_EQ(web.autoscaling.scale_down_below, 0.2);
  EXPECT_EQ(web.operational.autoscaling, "on");
  EXPECT_EQ(web.operational.autohealing, "on");
  EXPECT_EQ(web.load_balancer.haproxy_backend, "web");
  EXPECT_EQ(web.load_balancer.drain_timeout_seconds, 30);
  EXPECT_THAT(web.placement.host_labels, ElementsAre(Pair("zone", "a")));
  EXPECT_EQ(web.placement.slots, 1);
}

TEST(ManifestParse, AcceptsTheShopExampleFile) {
  const std::string text = read_file(std::string(TRANCHE_SOURCE_DIR) + "/examples/shop.yaml");
  ASSERT_FALSE(text.empty());
  const ApplicationSpec app = parse_ok(text);
  EXPECT_EQ(app.name, "shop");
  ASSERT_EQ(app.groups.size(), 1u);
  EXPECT_EQ(app.groups[0].name, "backend");
  ASSERT_EQ(app.groups[0].clusters.size(), 1u);
  const ClusterSpec& db = app.groups[0].clusters[0];
  EXPECT_EQ(db.name, "db");
  EXPECT_THAT(db.ports, ElementsAre("main"));
  EXPECT_THAT(db.artifact.command, ElementsAre("tranche-hello", "--port", "${PORT_MAIN}"));
  ASSERT_EQ(app.clusters.size(), 1u);
  const ClusterSpec& web = app.clusters[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_THAT(web.depends_on, ElementsAre("backend"));
  EXPECT_THAT(web.ports, ElementsAre("http"));
  EXPECT_THAT(web.artifact.command, ElementsAre("tranche-hello", "--port", "${PORT_HTTP}"));
  EXPECT_EQ(web.health.kind, HealthCheck::Kind::kHttp);
  EXPECT_EQ(web.health.path, "/healthz");
  EXPECT_TRUE(web.load_balancer.haproxy_backend.empty());
}

TEST(ManifestParse, FillsDefaults) {
  const ApplicationSpec app = parse_ok(kMinimal);
  const json expected = json::parse(R"({
    "application": "shop", "description": "", "updateOrder": "dependencies", "revisionHistoryLimit": 20,
    "operational": {}, "groups": [],
    "clusters": [{
      "name": "web", "dependsOn": [], "members": {"min": 1, "max": 1, "desired": 1},
      "artifact": {"version": "1", "command": ["run"], "env": {}, "workdir": ""},
      "ports": [], "hooks": {},
      "update": {"method": "replace", "strategy": "rolling", "maxUnavailable": 1, "maxSurge": 1, "canary": 0,
                 "minReadySeconds": 2, "pauseBetweenBatchesSeconds": 0, "progressDeadlineSeconds": 300,
                 "maxFailures": 0, "onFailure": "rollback"},
      "autoscaling": {"windowSeconds": 30, "scaleUpAbove": 0.8, "scaleDownBelow": 0.2, "cooldownSeconds": 60},
      "operational": {},
      "placement": {"hostLabels": {}, "slots": 1}
    }]
  })");
  EXPECT_EQ(to_json(app), expected) << to_json(app).dump(2);
  EXPECT_EQ(app.clusters[0].health.kind, HealthCheck::Kind::kNone);
  EXPECT_FALSE(app.clusters[0].stats.has_value());
}

TEST(ManifestParse, DerivesAbsentMemberCounts) {
  auto counts = [](std::string_view members) {
    const ApplicationSpec app = parse_ok(web_with("    members: " + std::string(members) + "\n"));
    const MemberCounts m = app.clusters.empty() ? MemberCounts{} : app.clusters[0].members;
    return std::to_string(m.min) + ".." + std::to_string(m.desired) + ".." + std::to_string(m.max);
  };
  EXPECT_EQ(counts("{}"), "1..1..1");
  EXPECT_EQ(counts("{desired: 4}"), "1..4..4");
  EXPECT_EQ(counts("{min: 2, max: 10}"), "2..2..10");
  EXPECT_EQ(counts("{max: 5}"), "1..1..5");
  EXPECT_EQ(counts("{desired: 0}"), "0..0..0");
  EXPECT_EQ(counts("{max: 0}"), "0..0..0");
}

TEST(ManifestParse, NullCountsAsAbsent) {
  const ApplicationSpec app = parse_ok(web_with("    hooks:\n    dependsOn: ~\n    placement: null\n"));
  EXPECT_TRUE(app.clusters[0].hooks.update.empty());
  EXPECT_TRUE(app.clusters[0].depends_on.empty());
  EXPECT_EQ(app.clusters[0].placement.slots, 1);
}

TEST(ManifestParse, UsesTheYamlCoreSchema) {
  // `on`, `off` and `yes` are strings in YAML 1.2, not booleans.
  const ApplicationSpec app = parse_ok(R"(application: shop
clusters:
  - name: web
    operational: {autoscaling: off, autohealing: on}
    artifact: {version: "1.10", command: [run, 'true', "42"], env: {A: yes, B: "1"}}
)");
  ASSERT_EQ(app.clusters.size(), 1u);
  const ClusterSpec& web = app.clusters[0];
  EXPECT_EQ(web.operational.autoscaling, "off");
  EXPECT_EQ(web.operational.autohealing, "on");
  EXPECT_EQ(web.artifact.version, "1.10");
  EXPECT_THAT(web.artifact.command, ElementsAre("run", "true", "42"));
  EXPECT_THAT(web.artifact.env, ElementsAre(Pair("A", "yes"), Pair("B", "1")));
  // Plain numbers in a command are numbers, so they must be quoted.
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    health: {exec: [check, 42]}\n"), "clusters[0].health.exec[1]",
                      "expected a string, got number (quote it)"));
  EXPECT_TRUE(Rejects(web_with("    health: {exec: [check, true]}\n"), "clusters[0].health.exec[1]",
                      "expected a string, got boolean"));
}

TEST(ManifestParse, AcceptsPercentagesAndSerializesThem) {
  const ApplicationSpec app = parse_ok(web_with(R"(    members: {min: 2, max: 10, desired: 8}
    update: {maxUnavailable: "25%", maxSurge: 0}
)"));
  const UpdatePolicy& u = app.clusters[0].update;
  EXPECT_EQ(u.max_unavailable.value, 25);
  EXPECT_TRUE(u.max_unavailable.percent);
  EXPECT_EQ(u.max_surge.value, 0);
  EXPECT_FALSE(u.max_surge.percent);
  const json doc = to_json(app);
  EXPECT_EQ(doc["clusters"][0]["update"]["maxUnavailable"], "25%");
  EXPECT_EQ(doc["clusters"][0]["update"]["maxSurge"], 0);
}

TEST(ManifestParse, YamlAndJsonGiveTheSameSpec) {
  const std::string yaml = R"(application: shop
updateOrder: parallel
operational: {autohealing: "off"}
groups:
  - name: backend
    operational: {autoscaling: "off"}
    clusters:
      - name: db
        artifact: {version: "15.4", command: [db, --port, "${PORT_MAIN}"]}
        ports: [main]
        health: {tcp: {port: main}}
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 2, max: 10, desired: 4}
    artifact:
      version: "1.4.2"
      command: [web]
      env: {LOG_LEVEL: info, WORKERS: "4"}
    ports: [http, admin]
    health: {http: {port: http, path: /healthz}, intervalSeconds: 2}
    update: {method: in-place, maxUnavailable: "50%", canary: 1, onFailure: pause}
    autoscaling: {scaleUpAbove: 1, scaleDownBelow: 0.25}
    loadBalancer: {haproxy: {backend: web_be}}
    placement: {hostLabels: {zone: a, disk: ssd}, slots: 2}
)";
  const std::string json_text = R"({
  "application": "shop",
  "updateOrder": "parallel",
  "operational": {"autohealing": "off"},
  "groups": [{
    "name": "backend",
    "operational": {"autoscaling": "off"},
    "clusters": [{"name": "db", "artifact": {"version": "15.4", "command": ["db", "--port", "${PORT_MAIN}"]},
                  "ports": ["main"], "health": {"tcp": {"port": "main"}}}]
  }],
  "clusters": [{
    "name": "web",
    "dependsOn": ["backend"],
    "members": {"min": 2, "max": 10, "desired": 4},
    "artifact": {"version": "1.4.2", "command": ["web"], "env": {"LOG_LEVEL": "info", "WORKERS": "4"}},
    "ports": ["http", "admin"],
    "health": {"http": {"port": "http", "path": "/healthz"}, "intervalSeconds": 2},
    "update": {"method": "in-place", "maxUnavailable": "50%", "canary": 1, "onFailure": "pause"},
    "autoscaling": {"scaleUpAbove": 1, "scaleDownBelow": 0.25},
    "loadBalancer": {"haproxy": {"backend": "web_be"}},
    "placement": {"hostLabels": {"zone": "a", "disk": "ssd"}, "slots": 2}
  }]
})";
  const ApplicationSpec from_yaml = parse_ok(yaml);
  const ApplicationSpec from_json = parse_ok(json_text, ManifestFormat::kJson);
  EXPECT_EQ(to_json(from_yaml), to_json(from_json));
  // JSON is YAML too.
  EXPECT_EQ(to_json(parse_ok(json_text, ManifestFormat::kYaml)), to_json(from_json));
  EXPECT_EQ(from_json.clusters[0].update.method, UpdatePolicy::Method::kInPlace);
  EXPECT_EQ(from_json.groups[0].operational.autoscaling, "off");
  EXPECT_EQ(from_json.operational.autohealing, "off");
}

TEST(ManifestParse, RoundTripsThroughTheNormalizedDocument) {
  for (const std::string& text :
       {std::string(kSpecExample), std::string(kMinimal),
        read_file(std::string(TRANCHE_SOURCE_DIR) + "/examples/shop.yaml"),
        web_with("    ports: [p]\n    health: {exec: [check, --fast]}\n    hooks: {drain: [stop]}\n"
                 "    update: {maxSurge: \"10%\", maxUnavailable: \"0%\"}\n")}) {
    const ApplicationSpec first = parse_ok(text);
    const json doc = to_json(first);
    const ApplicationSpec again = parse_ok(doc.dump(), ManifestFormat::kJson);
    EXPECT_EQ(to_json(again), doc) << text;
    EXPECT_EQ(to_json(parse_ok(doc.dump(2), ManifestFormat::kYaml)), doc) << text;
    EXPECT_EQ(diff_summary(&first, again), "");
  }
}

TEST(ManifestParse, NormalizedDocumentOmitsWhatIsNotThere) {
  const json doc = to_json(parse_ok(kMinimal));
  const json& web = doc["clusters"][0];
  EXPECT_FALSE(web.contains("health"));
  EXPECT_FALSE(web.contains("stats"));
  EXPECT_FALSE(web.contains("loadBalancer"));
  EXPECT_EQ(web["hooks"], json::object());
  EXPECT_EQ(web["operational"], json::object());

  const json full = to_json(parse_ok(kSpecExample));
  const json& w = full["clusters"][0];
  EXPECT_EQ(w["health"], json::parse(R"({"http": {"port": "http", "path": "/healthz"}, "intervalSeconds": 1,
                                         "timeoutSeconds": 1, "unhealthyThreshold": 3})"));
  EXPECT_EQ(w["stats"], json::parse(R"({"http": {"port": "http", "path": "/admin/load"}})"));
  EXPECT_EQ(w["loadBalancer"], json::parse(R"({"haproxy": {"backend": "web"}, "drainTimeoutSeconds": 30})"));
  EXPECT_EQ(w["operational"], json::parse(R"({"autoscaling": "on", "autohealing": "on"})"));
  EXPECT_EQ(full["groups"][0]["clusters"][0]["name"], "db");
}

// ---------------------------------------------------------------------------
// Documents

TEST(ManifestDocument, YamlSyntaxErrorIsInvalidWithLine) {
  const auto r = parse_manifest("application: shop\nclusters: [\n  - name: web\n", ManifestFormat::kYaml);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("line"));
  EXPECT_THAT(r.error().message, StartsWith("invalid YAML"));
}

TEST(ManifestDocument, JsonSyntaxErrorIsInvalidWithLine) {
  const auto r = parse_manifest("{\n  \"application\": \"shop\",\n  oops\n}", ManifestFormat::kJson);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("line 3"));
  EXPECT_THAT(r.error().message, StartsWith("invalid JSON"));
}

TEST(ManifestDocument, YamlGivenAsJsonIsInvalid) {
  EXPECT_TRUE(Rejects(kMinimal, "", "invalid JSON", ManifestFormat::kJson, ErrorCode::kInvalid));
}

TEST(ManifestDocument, EmptyDocumentIsUnprocessable) {
  EXPECT_TRUE(Rejects("", "", "empty"));
  EXPECT_TRUE(Rejects("# nothing here\n", "", "empty"));
  EXPECT_TRUE(Rejects("~\n", "", "empty"));
  EXPECT_TRUE(Rejects("", "", "empty", ManifestFormat::kJson));
  EXPECT_TRUE(Rejects(" \n", "", "empty", ManifestFormat::kJson));
  EXPECT_TRUE(Rejects("null", "", "empty", ManifestFormat::kJson));
}

TEST(ManifestDocument, NonMappingIsUnprocessable) {
  EXPECT_TRUE(Rejects("- application: shop\n", "", "must be a mapping, got list"));
  EXPECT_TRUE(Rejects("just text\n", "", "must be a mapping, got string"));
  EXPECT_TRUE(Rejects("[1, 2]", "", "must be a mapping, got list", ManifestFormat::kJson));
}

TEST(ManifestDocument, DuplicateKeysAreInvalid) {
  EXPECT_TRUE(Rejects("application: shop\napplication: shop2\n", "", "duplicate key 'application'",
                      ManifestFormat::kYaml, ErrorCode::kInvalid));
  EXPECT_TRUE(Rejects(R"({"application": "shop", "application": "shop2"})", "", "duplicate key 'application'",
                      ManifestFormat::kJson, ErrorCode::kInvalid));
}

TEST(ManifestDocument, SeveralYamlDocumentsAreInvalid) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "---\n" + std::string(kMinimal), "", "expected one document",
                      ManifestFormat::kYaml, ErrorCode::kInvalid));
}

TEST(ManifestDocument, StrayCommaIsInvalidNotEndless) {
  // yaml-cpp 0.7 alone would read these as endless empty documents.
  EXPECT_TRUE(Rejects(",", "", "line 1, column 1", ManifestFormat::kYaml, ErrorCode::kInvalid));
  EXPECT_TRUE(Rejects(",\napplication: shop\n", "", "invalid YAML", ManifestFormat::kYaml, ErrorCode::kInvalid));
  EXPECT_TRUE(Rejects(std::string(kMinimal) + ",\n", "", "invalid YAML", ManifestFormat::kYaml, ErrorCode::kInvalid));
}

TEST(ManifestDocument, UnknownYamlTagIsInvalid) {
  EXPECT_TRUE(Rejects("application: !shell shop\n", "", "unsupported tag", ManifestFormat::kYaml, ErrorCode::kInvalid));
}

TEST(ManifestDocument, AliasBombIsRefused) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'i'; ++c) {
    text += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) {
      text += std::string(i ? ", " : "") + "*" + prev;
    }
    text += "]\n";
    prev = c;
  }
  // Nine levels of ten aliases each would be a billion nodes.
  const auto r = parse_manifest(text, ManifestFormat::kYaml);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(r.error().message, HasSubstr("aliases"));
}

TEST(ManifestDocument, ModestAliasesAreFine) {
  const ApplicationSpec app = parse_ok(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: &cmd [run, --fast], env: &env {A: "1", B: "2"}}
  - name: api
    artifact: {version: "1", command: *cmd, env: *env}
)");
  EXPECT_EQ(app.clusters[1].artifact.command, app.clusters[0].artifact.command);
  EXPECT_EQ(app.clusters[1].artifact.env, app.clusters[0].artifact.env);
}

TEST(ManifestDocument, DeepGroupNestingIsRefused) {
  json doc = {{"name", "c"}, {"artifact", {{"version", "1"}, {"command", {"run"}}}}};
  json node = {{"name", "g"}, {"clusters", json::array({doc})}};
  for (int i = 0; i < 40; ++i) {
    node = {{"name", "g"}, {"groups", json::array({node})}};
  }
  const json app = {{"application", "shop"}, {"groups", json::array({node})}};
  const auto r = parse_manifest(app.dump(), ManifestFormat::kJson);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnprocessable);
  EXPECT_THAT(r.error().message, HasSubstr("levels deep"));
}

// yaml-cpp's parser gives up on deep nesting with "bad file"; the error says
// what is wrong, where, and the limit, as for nesting our converter refuses.
TEST(ManifestDocument, DeepYamlNestingIsRefusedSayingSo) {
  for (const int depth : {300, 5000}) {
    SCOPED_TRACE(depth);
    const std::string text = "application: shop\nclusters: " + std::string(depth, '[') + std::string(depth, ']') + "\n";
    const auto r = parse_manifest(text, ManifestFormat::kYaml);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_THAT(r.error().message, ::testing::MatchesRegex("invalid YAML at line 2, column [0-9]+: the manifest nests "
                                                           "deeper than 256 levels"));
  }
}

// ---------------------------------------------------------------------------
// Rejections: unknown fields and types

TEST(ManifestReject, UnknownClusterField) {
  EXPECT_TRUE(Rejects(web_with("    replicas: 3\n"), "clusters[0].replicas", "unknown field 'replicas'"));
}

TEST(ManifestReject, UnknownTopLevelField) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "version: 2\n", "version", "unknown field 'version'"));
}

TEST(ManifestReject, UnknownNestedField) {
  EXPECT_TRUE(Rejects(web_with("    update: {method: replace, maxSurges: 1}\n"), "clusters[0].update.maxSurges",
                      "unknown field 'maxSurges'"));
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run], image: postgres}
)",
                      "groups[0].clusters[0].artifact.image", "unknown field 'image'"));
}

TEST(ManifestReject, NumericVersionMustBeQuoted) {
  const std::string text = R"(application: shop
clusters:
  - name: web
    artifact: {version: 1.4, command: [run]}
)";
  EXPECT_TRUE(Rejects(text, "clusters[0].artifact.version", "expected a string, got number"));
  EXPECT_TRUE(Rejects(text, "clusters[0].artifact.version", "(quote it)"));
}

TEST(ManifestReject, WrongTypes) {
  EXPECT_TRUE(Rejects(web_with("    members: {desired: four}\n"), "clusters[0].members.desired",
                      "expected an integer, got string"));
  EXPECT_TRUE(Rejects(web_with("    members: {desired: 1.5}\n"), "clusters[0].members.desired",
                      "expected an integer, got 1.5"));
  EXPECT_TRUE(Rejects(web_with("    members: [1]\n"), "clusters[0].members", "expected a mapping, got list"));
  EXPECT_TRUE(Rejects(web_with("    ports: http\n"), "clusters[0].ports", "expected a list, got string"));
  EXPECT_TRUE(Rejects("application: shop\nclusters: {web: {}}\n", "clusters", "expected a list, got mapping"));
  EXPECT_TRUE(
      Rejects("application: shop\ndescription: [a]\nclusters: []\n", "description", "expected a string, got list"));
  EXPECT_TRUE(
      Rejects(web_with("    members: {desired: 99999999999}\n"), "clusters[0].members.desired", "out of range"));
}

TEST(ManifestReject, WrongTypeInJson) {
  EXPECT_TRUE(Rejects(R"({"application": "shop", "clusters": [{"name": "web",
      "artifact": {"version": 2, "command": ["run"]}}]})",
                      "clusters[0].artifact.version", "expected a string, got number", ManifestFormat::kJson));
}

// Required fields

TEST(ManifestReject, MissingApplication) {
  EXPECT_TRUE(Rejects("clusters:\n  - name: web\n    artifact: {version: \"1\", command: [run]}\n", "application",
                      "missing required field 'application'"));
}

TEST(ManifestReject, MissingClusterName) {
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - artifact: {version: \"1\", command: [run]}\n",
                      "clusters[0].name", "missing required field 'name'"));
}

TEST(ManifestReject, MissingArtifact) {
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n", "clusters[0].artifact",
                      "missing required field 'artifact'"));
}

TEST(ManifestReject, MissingArtifactVersion) {
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {command: [run]}\n",
                      "clusters[0].artifact.version", "missing required field 'version'"));
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {version: '', command: [run]}\n",
                      "clusters[0].artifact.version", "must not be empty"));
}

TEST(ManifestReject, MissingOrEmptyArtifactCommand) {
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {version: '1'}\n",
                      "clusters[0].artifact.command", "missing required field 'command'"));
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {version: '1', command: []}\n",
                      "clusters[0].artifact.command", "must not be empty"));
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {version: '1', command: run}\n",
                      "clusters[0].artifact.command", "expected a list, got string"));
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [db, {port: 1}]}
)",
                      "groups[0].clusters[0].artifact.command[1]", "expected a string, got mapping"));
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web\n    artifact: {version: '1', command: ['', x]}\n",
                      "clusters[0].artifact.command[0]", "program name must not be empty"));
}

TEST(ManifestReject, MissingGroupName) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "groups:\n  - clusters: []\n", "groups[0].name",
                      "missing required field 'name'"));
}

// Names

TEST(ManifestReject, BadApplicationName) {
  EXPECT_TRUE(Rejects("application: Shop\nclusters:\n  - name: web\n    artifact: {version: '1', command: [run]}\n",
                      "application", "'Shop' is not a valid name"));
}

TEST(ManifestReject, BadGroupName) {
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    groups:
      - name: ok
      - name: not_ok
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
)",
                      "groups[0].groups[1].name", "'not_ok' is not a valid name"));
}

TEST(ManifestReject, BadClusterName) {
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: web-\n    artifact: {version: '1', command: [run]}\n",
                      "clusters[0].name", "'web-' is not a valid name"));
  // A number is not a name either until quoted.
  EXPECT_TRUE(Rejects("application: shop\nclusters:\n  - name: 42\n    artifact: {version: '1', command: [run]}\n",
                      "clusters[0].name", "expected a string, got number"));
}

TEST(ManifestReject, BadPortName) {
  EXPECT_TRUE(Rejects(web_with("    ports: [http, HTTP2]\n"), "clusters[0].ports[1]", "'HTTP2' is not a valid name"));
}

TEST(ManifestReject, BadDependsOnEntry) {
  EXPECT_TRUE(
      Rejects(web_with("    dependsOn: [Backend]\n"), "clusters[0].dependsOn[0]", "'Backend' is not a valid name"));
}

// Siblings

TEST(ManifestReject, DuplicateSiblingClusters) {
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
      - name: db
        artifact: {version: "2", command: [run]}
)",
                      "groups[0].clusters[1].name", "'db' is already the name"));
}

TEST(ManifestReject, GroupAndClusterShareOneNamespace) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "groups:\n  - name: web\n", "clusters[0].name",
                      "'web' is already the name of another group or cluster"));
}

TEST(ManifestAccept, SameNameUnderDifferentParents) {
  parse_ok(R"(application: shop
groups:
  - name: a
    clusters:
      - name: web
        artifact: {version: "1", command: [run]}
  - name: b
    clusters:
      - name: web
        artifact: {version: "1", command: [run]}
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
)");
}

TEST(ManifestReject, DuplicatePorts) {
  EXPECT_TRUE(
      Rejects(web_with("    ports: [http, admin, http]\n"), "clusters[0].ports[2]", "port 'http' is declared twice"));
}

// Members

TEST(ManifestReject, NegativeMin) {
  EXPECT_TRUE(Rejects(web_with("    members: {min: -1, max: 3, desired: 1}\n"), "clusters[0].members.min",
                      "must be at least 0, got -1"));
}

TEST(ManifestReject, MinGreaterThanMax) {
  EXPECT_TRUE(Rejects(web_with("    members: {min: 5, max: 3, desired: 4}\n"), "clusters[0].members.min",
                      "min 5 is greater than max 3"));
}

TEST(ManifestReject, DesiredOutsideMinMax) {
  EXPECT_TRUE(Rejects(web_with("    members: {min: 2, max: 10, desired: 12}\n"), "clusters[0].members.desired",
                      "desired 12 is outside min..max 2..10"));
  EXPECT_TRUE(Rejects(web_with("    members: {min: 2, max: 10, desired: 1}\n"), "clusters[0].members.desired",
                      "desired 1 is outside min..max 2..10"));
}

// Dependencies

TEST(ManifestReject, DependsOnNonSibling) {
  EXPECT_TRUE(
      Rejects(web_with("    dependsOn: [api]\n"), "clusters[0].dependsOn[0]", "'api' is not a sibling of 'web'"));
  // A cluster inside a group is not a sibling of a top-level cluster.
  EXPECT_TRUE(Rejects(web_with(R"(    dependsOn: [db]
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
)"),
                      "clusters[0].dependsOn[0]", "'db' is not a sibling of 'web'"));
}

TEST(ManifestReject, SelfDependency) {
  EXPECT_TRUE(Rejects(web_with("    dependsOn: [web]\n"), "clusters[0].dependsOn[0]", "'web' cannot depend on itself"));
}

TEST(ManifestReject, DuplicateDependency) {
  EXPECT_TRUE(Rejects(web_with("    dependsOn: [api, api]\n"), "clusters[0].dependsOn[1]", "'api' is listed twice"));
}

TEST(ManifestReject, DependencyCycle) {
  EXPECT_TRUE(Rejects(R"(application: shop
clusters:
  - name: web
    dependsOn: [api]
    artifact: {version: "1", command: [run]}
  - name: api
    dependsOn: [web]
    artifact: {version: "1", command: [run]}
)",
                      "clusters[0].dependsOn", "dependency cycle: web -> api -> web"));
}

TEST(ManifestReject, LongerDependencyCycleAcrossGroupsAndClusters) {
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    dependsOn: [cache]
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
  - name: cache
    dependsOn: [web]
clusters:
  - name: web
    dependsOn: [backend]
    artifact: {version: "1", command: [run]}
)",
                      "groups[0].dependsOn", "dependency cycle: backend -> cache -> web -> backend"));
}

TEST(ManifestReject, DependencyCycleInsideAGroup) {
  EXPECT_TRUE(Rejects(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: ok
        artifact: {version: "1", command: [run]}
      - name: a
        dependsOn: [ok, b]
        artifact: {version: "1", command: [run]}
      - name: b
        dependsOn: [a]
        artifact: {version: "1", command: [run]}
)",
                      "groups[0].clusters[1].dependsOn", "a -> b -> a"));
}

TEST(ManifestAccept, DiamondDependenciesAreNoCycle) {
  parse_ok(R"(application: shop
clusters:
  - name: db
    artifact: {version: "1", command: [run]}
  - name: api
    dependsOn: [db]
    artifact: {version: "1", command: [run]}
  - name: worker
    dependsOn: [db]
    artifact: {version: "1", command: [run]}
  - name: web
    dependsOn: [api, worker, db]
    artifact: {version: "1", command: [run]}
)");
}

// Health and stats

TEST(ManifestReject, HealthPortNotDeclared) {
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    health: {http: {port: admin, path: /healthz}}\n"),
                      "clusters[0].health.http.port", "port 'admin' is not declared in ports"));
  EXPECT_TRUE(Rejects(web_with("    health: {tcp: {port: main}}\n"), "clusters[0].health.tcp.port",
                      "port 'main' is not declared in ports"));
}

TEST(ManifestReject, StatsPortNotDeclared) {
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    stats: {http: {port: admin, path: /load}}\n"),
                      "clusters[0].stats.http.port", "port 'admin' is not declared in ports"));
}

TEST(ManifestReject, HealthNeedsExactlyOneKind) {
  EXPECT_TRUE(
      Rejects(web_with("    health: {intervalSeconds: 2}\n"), "clusters[0].health", "one of http, tcp or exec"));
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    health: {http: {port: http, path: /}, tcp: {port: http}}\n"),
                      "clusters[0].health", "exactly one of http, tcp or exec"));
}

TEST(ManifestReject, HttpPathMustStartWithSlash) {
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    health: {http: {port: http, path: healthz}}\n"),
                      "clusters[0].health.http.path", "must start with '/'"));
  EXPECT_TRUE(Rejects(web_with("    ports: [http]\n    stats: {http: {port: http, path: load}}\n"),
                      "clusters[0].stats.http.path", "must start with '/'"));
}

TEST(ManifestReject, HealthTimingsAtLeastOne) {
  EXPECT_TRUE(Rejects(web_with("    health: {exec: [check], intervalSeconds: 0}\n"),
                      "clusters[0].health.intervalSeconds", "must be at least 1, got 0"));
  EXPECT_TRUE(Rejects(web_with("    health: {exec: [check], timeoutSeconds: 0}\n"), "clusters[0].health.timeoutSeconds",
                      "must be at least 1, got 0"));
  EXPECT_TRUE(Rejects(web_with("    health: {exec: [check], unhealthyThreshold: -2}\n"),
                      "clusters[0].health.unhealthyThreshold", "must be at least 1, got -2"));
}

TEST(ManifestReject, EmptyHook) {
  EXPECT_TRUE(Rejects(web_with("    hooks: {drain: []}\n"), "clusters[0].hooks.drain", "must not be empty"));
}

// Update policy

TEST(ManifestReject, UpdateMethodAndStrategy) {
  EXPECT_TRUE(Rejects(web_with("    update: {method: recreate}\n"), "clusters[0].update.method",
                      "'recreate' is not one of replace, in-place"));
  EXPECT_TRUE(Rejects(web_with("    update: {strategy: blue-green}\n"), "clusters[0].update.strategy",
                      "'blue-green' is not one of rolling, all-at-once"));
  EXPECT_TRUE(Rejects(web_with("    update: {onFailure: ignore}\n"), "clusters[0].update.onFailure",
                      "'ignore' is not one of rollback, pause"));
}

TEST(ManifestReject, MaxUnavailableAndSurgeFormat) {
  EXPECT_TRUE(Rejects(web_with("    update: {maxUnavailable: -1}\n"), "clusters[0].update.maxUnavailable",
                      "must be at least 0, got -1"));
  EXPECT_TRUE(Rejects(web_with("    update: {maxSurge: \"150%\"}\n"), "clusters[0].update.maxSurge", "more than 100%"));
  EXPECT_TRUE(
      Rejects(web_with("    update: {maxSurge: \"-5%\"}\n"), "clusters[0].update.maxSurge", "percentage like \"25%\""));
  EXPECT_TRUE(
      Rejects(web_with("    update: {maxSurge: \"2\"}\n"), "clusters[0].update.maxSurge", "percentage like \"25%\""));
  // A plain 25% is a string in YAML: no quotes needed.
  EXPECT_EQ(parse_ok(web_with("    update: {maxSurge: 25%}\n")).clusters.at(0).update.max_surge.value, 25);
  EXPECT_TRUE(Rejects(web_with("    update: {maxSurge: true}\n"), "clusters[0].update.maxSurge", "got boolean"));
}

TEST(ManifestReject, MaxUnavailableAndSurgeBothZero) {
  EXPECT_TRUE(Rejects(web_with("    update: {maxUnavailable: 0, maxSurge: \"0%\"}\n"),
                      "clusters[0].update.maxUnavailable", "both zero"));
}

TEST(ManifestReject, MaxUnavailableAndSurgeBothResolveToZero) {
  // 10% of 4 rounds down to 0 members unavailable; maxSurge 0 adds none.
  EXPECT_TRUE(Rejects(web_with("    members: {min: 1, max: 10, desired: 4}\n"
                               "    update: {maxUnavailable: \"10%\", maxSurge: 0}\n"),
                      "clusters[0].update.maxUnavailable", "both resolve to 0 at desired 4"));
  // A surge rounds up: 1% of 4 is one member.
  parse_ok(web_with("    members: {min: 1, max: 10, desired: 4}\n    update: {maxUnavailable: 0, maxSurge: \"1%\"}\n"));
}

TEST(ManifestReject, InPlaceUpdateNeedsUnavailability) {
  EXPECT_TRUE(Rejects(web_with("    update: {method: in-place, maxUnavailable: 0, maxSurge: 1}\n"),
                      "clusters[0].update.maxUnavailable", "in-place update cannot surge"));
}

TEST(ManifestReject, CanaryOutOfRange) {
  EXPECT_TRUE(Rejects(web_with("    members: {min: 1, max: 10, desired: 4}\n    update: {canary: 5}\n"),
                      "clusters[0].update.canary", "canary 5 is greater than desired 4"));
  EXPECT_TRUE(Rejects(web_with("    update: {canary: -1}\n"), "clusters[0].update.canary", "must be at least 0"));
}

TEST(ManifestReject, UpdateDurationsAndCounts) {
  EXPECT_TRUE(Rejects(web_with("    update: {minReadySeconds: -1}\n"), "clusters[0].update.minReadySeconds",
                      "must be at least 0, got -1"));
  EXPECT_TRUE(Rejects(web_with("    update: {pauseBetweenBatchesSeconds: -3}\n"),
                      "clusters[0].update.pauseBetweenBatchesSeconds", "must be at least 0, got -3"));
  EXPECT_TRUE(Rejects(web_with("    update: {progressDeadlineSeconds: 0}\n"),
                      "clusters[0].update.progressDeadlineSeconds", "must be at least 1, got 0"));
  EXPECT_TRUE(Rejects(web_with("    update: {maxFailures: -1}\n"), "clusters[0].update.maxFailures",
                      "must be at least 0, got -1"));
}

// Autoscaling

TEST(ManifestReject, AutoscalingWindowAndCooldown) {
  EXPECT_TRUE(Rejects(web_with("    autoscaling: {windowSeconds: 0}\n"), "clusters[0].autoscaling.windowSeconds",
                      "must be at least 1, got 0"));
  EXPECT_TRUE(Rejects(web_with("    autoscaling: {cooldownSeconds: -1}\n"), "clusters[0].autoscaling.cooldownSeconds",
                      "must be at least 0, got -1"));
}

TEST(ManifestReject, AutoscalingThresholds) {
  EXPECT_TRUE(Rejects(web_with("    autoscaling: {scaleUpAbove: 0.5, scaleDownBelow: 0.5}\n"),
                      "clusters[0].autoscaling.scaleDownBelow",
                      "scaleDownBelow 0.5 must be less than scaleUpAbove 0.5"));
  EXPECT_TRUE(Rejects(web_with("    autoscaling: {scaleDownBelow: -0.1}\n"), "clusters[0].autoscaling.scaleDownBelow",
                      "must be at least 0"));
  EXPECT_TRUE(Rejects(web_with("    autoscaling: {scaleUpAbove: high}\n"), "clusters[0].autoscaling.scaleUpAbove",
                      "expected a number, got string"));
  EXPECT_TRUE(
      Rejects(web_with("    autoscaling: {scaleUpAbove: .inf}\n"), "clusters[0].autoscaling.scaleUpAbove", "finite"));
}

// Operational

TEST(ManifestReject, OperationalUnknownKey) {
  EXPECT_TRUE(Rejects(web_with("    operational: {maintenance: restart}\n"), "clusters[0].operational.maintenance",
                      "unknown field 'maintenance'"));
}

TEST(ManifestReject, OperationalValue) {
  EXPECT_TRUE(Rejects(web_with("    operational: {autoscaling: yes}\n"), "clusters[0].operational.autoscaling",
                      "'yes' is not one of on, off"));
  EXPECT_TRUE(Rejects(R"({"application": "shop", "operational": {"autohealing": true},
      "clusters": [{"name": "web", "artifact": {"version": "1", "command": ["run"]}}]})",
                      "operational.autohealing", "expected one of on, off, got boolean", ManifestFormat::kJson));
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "groups:\n  - name: g\n    operational: {autoscaling: paused}\n",
                      "groups[0].operational.autoscaling", "'paused' is not one of on, off"));
}

// Load balancer and placement

TEST(ManifestReject, LoadBalancerBackend) {
  EXPECT_TRUE(Rejects(web_with("    loadBalancer: {drainTimeoutSeconds: 5}\n"), "clusters[0].loadBalancer.haproxy",
                      "missing required field 'haproxy'"));
  EXPECT_TRUE(Rejects(web_with("    loadBalancer: {haproxy: {backend: \"\"}}\n"),
                      "clusters[0].loadBalancer.haproxy.backend", "must not be empty"));
  EXPECT_TRUE(Rejects(web_with("    loadBalancer: {haproxy: {backend: 7}}\n"),
                      "clusters[0].loadBalancer.haproxy.backend", "expected a string, got number"));
  EXPECT_TRUE(Rejects(web_with("    loadBalancer: {haproxy: {backend: \"web; shutdown sessions\"}}\n"),
                      "clusters[0].loadBalancer.haproxy.backend", "not a valid HAProxy backend name"));
}

TEST(ManifestReject, LoadBalancerDrainTimeout) {
  EXPECT_TRUE(Rejects(web_with("    loadBalancer: {haproxy: {backend: web}, drainTimeoutSeconds: -1}\n"),
                      "clusters[0].loadBalancer.drainTimeoutSeconds", "must be at least 0, got -1"));
}

TEST(ManifestReject, PlacementLabelsAndSlots) {
  EXPECT_TRUE(Rejects(web_with("    placement: {hostLabels: {rack: 12}}\n"), "clusters[0].placement.hostLabels.rack",
                      "expected a string, got number (quote it)"));
  EXPECT_TRUE(Rejects(web_with("    placement: {hostLabels: [zone]}\n"), "clusters[0].placement.hostLabels",
                      "expected a mapping, got list"));
  EXPECT_TRUE(
      Rejects(web_with("    placement: {slots: 0}\n"), "clusters[0].placement.slots", "must be at least 1, got 0"));
}

// Application-level fields and the environment

TEST(ManifestReject, UpdateOrder) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "updateOrder: random\n", "updateOrder",
                      "'random' is not one of dependencies, reverse, parallel"));
}

TEST(ManifestReject, RevisionHistoryLimit) {
  EXPECT_TRUE(Rejects(std::string(kMinimal) + "revisionHistoryLimit: 0\n", "revisionHistoryLimit",
                      "must be at least 1, got 0"));
}

TEST(ManifestReject, EnvValuesMustBeStrings) {
  EXPECT_TRUE(Rejects(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run], env: {WORKERS: 4}}
)",
                      "clusters[0].artifact.env.WORKERS", "expected a string, got number (quote it)"));
}

TEST(ManifestReject, EnvNames) {
  EXPECT_TRUE(Rejects(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run], env: {LOG-LEVEL: info}}
)",
                      "clusters[0].artifact.env.LOG-LEVEL", "not a valid environment variable name"));
  EXPECT_TRUE(Rejects(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run], env: {VERSION: "2"}}
)",
                      "clusters[0].artifact.env.VERSION", "set by Tranche"));
  EXPECT_TRUE(Rejects(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run], env: {PORT_HTTP_ALT: "80"}}
    ports: [http-alt]
)",
                      "clusters[0].artifact.env.PORT_HTTP_ALT", "port allocated for 'http-alt'"));
}

TEST(ManifestReject, ApplicationWithoutClusters) {
  EXPECT_TRUE(Rejects("application: shop\n", "clusters", "at least one cluster"));
  EXPECT_TRUE(Rejects("application: shop\ngroups:\n  - name: a\n    groups:\n      - name: b\n", "clusters",
                      "at least one cluster"));
}

TEST(ManifestAccept, ClusterOnlyInANestedGroup) {
  const ApplicationSpec app = parse_ok(R"(application: shop
groups:
  - name: a
    groups:
      - name: b
        clusters:
          - name: c
            artifact: {version: "1", command: [run]}
)");
  EXPECT_EQ(app.groups[0].groups[0].clusters[0].name, "c");
}

// ---------------------------------------------------------------------------
// flatten

TEST(ManifestFlatten, DepthFirstGroupsBeforeClusters) {
  const ApplicationSpec app = parse_ok(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
  - name: edge
    artifact: {version: "1", command: [run]}
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
    groups:
      - name: cache
        clusters:
          - name: redis
            artifact: {version: "1", command: [run]}
      - name: empty
  - name: jobs
    clusters:
      - name: worker
        artifact: {version: "1", command: [run]}
)");
  const auto nodes = flatten(app);
  std::vector<std::string> seen;
  for (const auto& n : nodes) {
    seen.push_back(std::string(to_string(n.kind)) + ":" + n.path);
  }
  EXPECT_THAT(seen, ElementsAre("application:", "group:backend", "group:backend/cache", "cluster:backend/cache/redis",
                                "group:backend/empty", "cluster:backend/db", "group:jobs", "cluster:jobs/worker",
                                "cluster:web", "cluster:edge"));
  EXPECT_EQ(nodes[0].operational, &app.operational);
  EXPECT_EQ(nodes[0].group, nullptr);
  EXPECT_EQ(nodes[0].cluster, nullptr);
  EXPECT_EQ(nodes[1].group, &app.groups[0]);
  EXPECT_EQ(nodes[1].operational, &app.groups[0].operational);
  EXPECT_EQ(nodes[3].cluster, &app.groups[0].groups[0].clusters[0]);
  EXPECT_EQ(nodes[3].operational, &app.groups[0].groups[0].clusters[0].operational);
  EXPECT_EQ(nodes[3].group, nullptr);
  EXPECT_EQ(nodes.back().cluster, &app.clusters[1]);
}

TEST(ManifestFlatten, KindNames) {
  EXPECT_EQ(to_string(NodeView::Kind::kApplication), "application");
  EXPECT_EQ(to_string(NodeView::Kind::kGroup), "group");
  EXPECT_EQ(to_string(NodeView::Kind::kCluster), "cluster");
}

// ---------------------------------------------------------------------------
// diff_summary

TEST(ManifestDiff, FirstRevision) {
  EXPECT_EQ(diff_summary(nullptr, parse_ok(kSpecExample)), "created with 2 clusters in 1 group");
  EXPECT_EQ(diff_summary(nullptr, parse_ok(kMinimal)), "created with 1 cluster");
}

TEST(ManifestDiff, IdenticalIsEmpty) {
  const ApplicationSpec a = parse_ok(kSpecExample);
  const ApplicationSpec b = parse_ok(kSpecExample);
  EXPECT_EQ(diff_summary(&a, b), "");
}

TEST(ManifestDiff, VersionChange) {
  const ApplicationSpec a = parse_ok(kSpecExample);
  ApplicationSpec b = a;
  b.clusters[0].artifact.version = "1.4.3";
  EXPECT_EQ(diff_summary(&a, b), "web: artifact.version 1.4.2 -> 1.4.3");
}

TEST(ManifestDiff, SeveralLeafChanges) {
  const ApplicationSpec a = parse_ok(kSpecExample);
  ApplicationSpec b = a;
  b.update_order = ApplicationSpec::UpdateOrder::kParallel;
  b.clusters[0].members.desired = 6;
  b.clusters[0].artifact.env["EXTRA"] = "1";
  b.clusters[0].update.max_surge = IntOrPercent{25, true};
  b.groups[0].clusters[0].artifact.version = "15.5";
  EXPECT_EQ(diff_summary(&a, b),
            "updateOrder dependencies -> parallel; backend/db: artifact.version 15.4 -> 15.5; "
            "web: artifact.env changed; web: members.desired 4 -> 6; web: update.maxSurge 1 -> 25%");
}

TEST(ManifestDiff, AddedAndRemovedNodes) {
  const ApplicationSpec a = parse_ok(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
  - name: old
    clusters:
      - name: legacy
        artifact: {version: "1", command: [run]}
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
)");
  const ApplicationSpec b = parse_ok(R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        artifact: {version: "1", command: [run]}
      - name: cache
        artifact: {version: "1", command: [run]}
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
  - name: api
    artifact: {version: "1", command: [run]}
)");
  EXPECT_EQ(diff_summary(&a, b), "+cluster backend/cache; +cluster api; -group old");
  EXPECT_EQ(diff_summary(&b, a), "+group old; -cluster backend/cache; -cluster api");
}

TEST(ManifestDiff, AddedAndRemovedOptionalParts) {
  const ApplicationSpec a = parse_ok(kMinimal);
  const ApplicationSpec b =
      parse_ok(web_with("    ports: [http]\n    health: {http: {port: http, path: /healthz}}\n    operational: "
                        "{autoscaling: \"off\"}\n"));
  EXPECT_EQ(diff_summary(&a, b), "web: health added; web: operational.autoscaling unset -> off; web: ports changed");
  EXPECT_EQ(diff_summary(&b, a), "web: health removed; web: operational.autoscaling off -> unset; web: ports changed");
}

TEST(ManifestDiff, ReorderingIsAChange) {
  const ApplicationSpec a = parse_ok(R"(application: shop
clusters:
  - name: web
    artifact: {version: "1", command: [run]}
  - name: api
    artifact: {version: "1", command: [run]}
)");
  ApplicationSpec b = a;
  std::swap(b.clusters[0], b.clusters[1]);
  EXPECT_NE(diff_summary(&a, b), "");
}

TEST(ManifestDiff, LongSummaryIsCut) {
  std::string text = "application: shop\nclusters:\n";
  for (int i = 0; i < 30; ++i) {
    text += "  - name: cluster-number-" + std::to_string(i) + "\n    artifact: {version: \"1.0.0\", command: [run]}\n";
  }
  const ApplicationSpec a = parse_ok(text);
  ApplicationSpec b = a;
  for (auto& c : b.clusters) {
    c.artifact.version = "1.0.1";
  }
  const std::string summary = diff_summary(&a, b);
  EXPECT_THAT(summary, StartsWith("cluster-number-0: artifact.version 1.0.0 -> 1.0.1; "));
  EXPECT_THAT(summary, HasSubstr("; \u2026 ("));
  EXPECT_THAT(summary, HasSubstr(" more)"));
  EXPECT_LE(summary.size(), 200u + std::string_view("; \u2026 (30 more)").size());
  // The shown items and the counted rest add up to all 30.
  const size_t shown = static_cast<size_t>(std::count(summary.begin(), summary.end(), '>'));
  EXPECT_THAT(summary, HasSubstr("(" + std::to_string(30 - shown) + " more)"));
}

}  // namespace
}  // namespace tranche
