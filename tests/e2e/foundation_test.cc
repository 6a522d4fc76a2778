// End-to-end: the real controller on a free loopback port, driven by the
// real CLI (issue "Foundation").

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kShopV1 = R"(application: shop
description: e2e shop
groups:
  - name: backend
    clusters:
      - name: db
        members: {min: 1, max: 1, desired: 1}
        artifact: {version: "15.4", command: ["tranche-hello", "--port", "${PORT_MAIN}"]}
        ports: [main]
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 2, max: 10, desired: 4}
    artifact: {version: "1.0.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
)";

std::string shop_with_version(const std::string& version) {
  std::string text = kShopV1;
  text.replace(text.find("\"1.0.0\""), 7, "\"" + version + "\"");
  return text;
}

class Foundation : public ::testing::Test {
 protected:
  void SetUp() override {
    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->start();
  }

  fs::path manifest(const std::string& name, const std::string& text) {
    const fs::path path = dir_.path() / name;
    write_file(path, text);
    return path;
  }

  json get_json(const std::vector<std::string>& args) {
    auto r = controller_->cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }

  std::vector<json> events_after(uint64_t since) {
    auto r = controller_->cli({"events", "--since", std::to_string(since), "-o", "json"});
    std::vector<json> events;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      events.push_back(json::parse(line));
    }
    return events;
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(Foundation, ApplyReapplyAndChange) {
  const auto v1 = manifest("shop.yaml", kShopV1);
  auto first = controller_->cli({"apply", "-f", v1.string()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("created (revision 1)"), std::string::npos) << first.out;

  auto again = controller_->cli({"apply", "-f", v1.string()});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("unchanged (revision 1)"), std::string::npos) << again.out;

  const auto v2 = manifest("shop-v2.yaml", shop_with_version("1.1.0"));
  auto dry = controller_->cli({"apply", "-f", v2.string(), "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("dry run"), std::string::npos) << dry.out;
  EXPECT_EQ(get_json({"get", "apps", "-o", "json"})["items"][0]["revision"], 1);

  auto changed = controller_->cli({"apply", "-f", v2.string()});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_NE(changed.out.find("revision 2"), std::string::npos) << changed.out;
  EXPECT_NE(changed.out.find("web: artifact.version 1.0.0 -> 1.1.0"), std::string::npos) << changed.out;

  const json history = get_json({"rollout", "history", "shop", "-o", "json"});
  ASSERT_EQ(history["items"].size(), 2u);
  EXPECT_EQ(history["items"][0]["revision"], 2);
  EXPECT_EQ(history["items"][0]["current"], true);
  EXPECT_EQ(history["items"][0]["author"], "bootstrap-admin");

  auto table = controller_->cli({"get", "apps"});
  EXPECT_NE(table.out.find("shop"), std::string::npos);
  EXPECT_NE(table.out.find("REVISION"), std::string::npos);
}

TEST_F(Foundation, InvalidManifestsAreRejectedAndNothingIsStored) {
  struct Case {
    std::string name;
    std::string from;
    std::string to;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"unknown field", "    ports: [http]\n    health", "    ports: [http]\n    replicas: 3\n    health",
       "clusters[0].replicas"},
      {"bad name", "  - name: web", "  - name: Web_1", "clusters[0].name"},
      {"min > max", "{min: 2, max: 10, desired: 4}", "{min: 12, max: 10, desired: 4}", "clusters[0].members.min"},
      {"desired outside", "{min: 2, max: 10, desired: 4}", "{min: 2, max: 10, desired: 11}",
       "clusters[0].members.desired"},
      {"dependsOn no sibling", "dependsOn: [backend]", "dependsOn: [frontend]", "clusters[0].dependsOn"},
      {"undeclared port", "http: {port: http, path: /healthz}", "http: {port: admin, path: /healthz}",
       "clusters[0].health.http.port"},
  };
  for (const auto& c : cases) {
    std::string text = kShopV1;
    text.replace(text.find(c.from), c.from.size(), c.to);
    text.replace(text.find("application: shop"), 17, "application: broken");
    auto r = controller_->cli({"apply", "-f", manifest("broken.yaml", text).string()});
    EXPECT_EQ(r.exit_code, 1) << c.name;
    EXPECT_NE(r.err.find(c.field), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
  // A dependency cycle between siblings.
  std::string cycle = kShopV1;
  cycle.replace(cycle.find("  - name: backend\n"), 18, "  - name: backend\n    dependsOn: [web]\n");
  cycle.replace(cycle.find("application: shop"), 17, "application: broken");
  auto r = controller_->cli({"apply", "-f", manifest("cycle.yaml", cycle).string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cycle"), std::string::npos) << r.err;

  EXPECT_TRUE(get_json({"get", "apps", "-o", "json"})["items"].empty());
  EXPECT_TRUE(events_after(0).empty());
}

TEST_F(Foundation, OperationalStateInheritsAndPropagates) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"set", "autoscaling", "on", "shop/backend/db"}).exit_code, 0);
  auto off = controller_->cli({"set", "autoscaling", "off", "shop"});
  ASSERT_EQ(off.exit_code, 0) << off.err;

  auto node = [](const json& doc, const std::string& path) {
    for (const auto& n : doc["tree"]) {
      if (n["path"] == path) {
        return n;
      }
    }
    return json();
  };
  auto state = [&] { return get_json({"describe", "shop", "-o", "json"}); };
  json s = state();
  EXPECT_EQ(node(s, "web")["autoscaling"]["effective"], "off");
  EXPECT_EQ(node(s, "web")["autoscaling"]["source"], "");
  EXPECT_EQ(node(s, "backend/db")["autoscaling"]["effective"], "on") << "explicit value below is kept";
  EXPECT_EQ(node(s, "backend/db")["autoscaling"]["explicit"], "on");

  auto recursive = controller_->cli({"set", "autoscaling", "off", "shop", "--recursive"});
  ASSERT_EQ(recursive.exit_code, 0) << recursive.err;
  s = state();
  EXPECT_EQ(node(s, "backend/db")["autoscaling"]["effective"], "off");
  EXPECT_TRUE(node(s, "backend/db")["autoscaling"]["explicit"].is_null());

  // The same through the API's own view.
  cli::ApiClient api(controller_->url(), controller_->admin_token());
  auto reply = api.send("GET", "/api/v1/applications/shop/operational-state?path=backend");
  ASSERT_TRUE(reply.has_value());
  ASSERT_EQ(reply->status, 200);
  const json view = json::parse(reply->body);
  EXPECT_EQ(view["nodes"].size(), 2u);  // backend and backend/db

  auto bad = controller_->cli({"set", "autohealing", "off", "shop/nope"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("path"), std::string::npos) << bad.err;
  auto usage = controller_->cli({"set", "autohealing", "maybe", "shop"});
  EXPECT_EQ(usage.exit_code, 2);
}

TEST_F(Foundation, AuthenticationScopesAndLimits) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  std::string other = kShopV1;
  other.replace(other.find("application: shop"), 17, "application: other");
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("other.yaml", other).string()}).exit_code, 0);

  cli::ApiClient anonymous(controller_->url(), "");
  EXPECT_EQ(anonymous.send("GET", "/api/v1/applications")->status, 401);
  EXPECT_EQ(cli::ApiClient(controller_->url(), "tt_0000_bad").send("GET", "/api/v1/applications")->status, 401);
  EXPECT_EQ(anonymous.send("GET", "/healthz")->status, 200);
  auto unauth = controller_->cli({"get", "apps"}, "");
  EXPECT_EQ(unauth.exit_code, 1);
  EXPECT_NE(unauth.err.find("bearer token"), std::string::npos) << unauth.err;

  auto scoped = controller_->cli({"token", "create", "--role", "operator", "--app", "shop"});
  ASSERT_EQ(scoped.exit_code, 0) << scoped.err;
  const std::string scoped_token = scoped.out.substr(0, scoped.out.find('\n'));
  cli::ApiClient shop_only(controller_->url(), scoped_token);
  EXPECT_EQ(shop_only.send("GET", "/api/v1/applications/shop")->status, 200);
  EXPECT_EQ(shop_only.send("GET", "/api/v1/applications/other")->status, 404);
  EXPECT_EQ(shop_only.send("PUT", "/api/v1/applications/other/operational-state", R"({"autoscaling":"off"})")->status,
            404);
  const json listed = json::parse(shop_only.send("GET", "/api/v1/applications")->body);
  ASSERT_EQ(listed["items"].size(), 1u);
  EXPECT_EQ(listed["items"][0]["name"], "shop");
  EXPECT_EQ(shop_only.send("POST", "/api/v1/tokens", R"({"role":"viewer"})")->status, 403);

  auto viewer = controller_->cli({"token", "create", "--role", "viewer"});
  const std::string viewer_token = viewer.out.substr(0, viewer.out.find('\n'));
  EXPECT_EQ(cli::ApiClient(controller_->url(), viewer_token)
                .send("PUT", "/api/v1/applications/shop/operational-state", R"({"autoscaling":"off"})")
                ->status,
            403);

  cli::ApiClient admin(controller_->url(), controller_->admin_token());
  const std::string two_mib(2 * 1024 * 1024, 'x');
  auto too_large = admin.send("POST", "/api/v1/applications", two_mib, "application/yaml");
  ASSERT_TRUE(too_large.has_value()) << too_large.error().describe();
  EXPECT_EQ(too_large->status, 413);
  EXPECT_EQ(admin.send("GET", "/api/v1/applications")->status, 200) << "still serving after a 413";
}

// As a browser or `curl --compressed` asks for it: a large application view
// comes gzip-compressed, and decompressed it is the answer others get.
TEST_F(Foundation, ALargeApplicationViewIsServedGzippedToClientsThatAcceptIt) {
  json big{{"application", "big"}, {"clusters", json::array()}};
  for (int i = 0; i < 80; ++i) {
    big["clusters"].push_back({{"name", "c" + std::to_string(i)},
                               {"members", {{"min", 0}, {"max", 1}, {"desired", 0}}},
                               {"artifact", {{"version", "1"}, {"command", {"tranche-hello"}}}}});
  }
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("big.yaml", big.dump()).string()}).exit_code, 0);
  const std::string url = controller_->url() + "/api/v1/applications/big";
  const std::string auth = "Authorization: Bearer " + controller_->admin_token();
  // Headers, a blank line, then the body (decompressed by curl when it asked for gzip).
  auto fetch = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{"/usr/bin/curl", "-sS", "-D", "-", "-H", auth};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    CliResult r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t end = r.out.find("\r\n\r\n");
    EXPECT_NE(end, std::string::npos) << r.out;
    std::string headers = r.out.substr(0, end);
    std::transform(headers.begin(), headers.end(), headers.begin(), [](unsigned char c) { return std::tolower(c); });
    return std::pair{headers, end == std::string::npos ? "" : r.out.substr(end + 4)};
  };
  const auto [compressed_headers, inflated] = fetch({"--compressed"});
  EXPECT_NE(compressed_headers.find("content-encoding: gzip"), std::string::npos) << compressed_headers;
  const auto [plain_headers, plain] = fetch({});
  EXPECT_EQ(plain_headers.find("content-encoding"), std::string::npos) << plain_headers;
  EXPECT_NE(plain_headers.find("vary: accept-encoding"), std::string::npos) << plain_headers;
  ASSERT_GT(plain.size(), 16u * 1024) << "large enough to be compressed";
  EXPECT_EQ(inflated, plain) << "the same answer (kept: no event in between)";
  EXPECT_EQ(json::parse(inflated)["name"], "big");
  // The CLI asks for gzip too, and reads what it is given.
  auto described = controller_->cli({"describe", "big/c79"});
  EXPECT_EQ(described.exit_code, 0) << described.err;
  EXPECT_NE(described.out.find("c79"), std::string::npos) << described.out;
}

// /metrics times the fleet's reconcile passes (they run every 100 ms).
TEST_F(Foundation, ReconcilePassesAreTimedOnMetrics) {
  const std::regex count("\ntranche_fleet_pass_duration_seconds_count ([0-9]+)\n");
  std::string text;
  std::smatch match;
  const bool counted = wait_until(
      [&] {
        text = run({"/usr/bin/curl", "-sS", "-H", "Authorization: Bearer " + controller_->admin_token(),
                    controller_->url() + "/metrics"})
                   .out;
        return std::regex_search(text, match, count) && std::stoll(match[1]) > 0;
      },
      5s);
  EXPECT_TRUE(counted) << text;
}

// The controller's heap grows in transparent huge pages
// (src/common/huge_page_heap.cc). Where the kernel gives them only on request
// (transparent_hugepage "madvise", Debian's default) nothing else asks.
TEST_F(Foundation, TheControllersHeapGrowsInHugePages) {
#ifndef TRANCHE_HUGE_PAGE_HEAP
  GTEST_SKIP() << "built without tcmalloc: the heap is the system's or a sanitizer's";
#endif
  const std::string thp = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
  if (thp.empty() || thp.find("[never]") != std::string::npos) {
    GTEST_SKIP() << "this kernel gives no transparent huge pages: '" << thp << "'";
  }
  const std::regex huge_kib("\nAnonHugePages: +([0-9]+) kB");
  const fs::path smaps = "/proc/" + std::to_string(controller_->process().pid()) + "/smaps_rollup";
  std::string text;
  std::smatch match;
  const bool huge = wait_until(
      [&] {
        text = read_file(smaps);
        return std::regex_search(text, match, huge_kib) && std::stoll(match[1]) > 0;
      },
      5s);
  EXPECT_TRUE(huge) << text;
}

TEST_F(Foundation, EventsFollowDeliversInOrder) {
  Process follower({tranche_binary(), "events", "--follow", "-o", "json", "--server", controller_->url(), "--token",
                    controller_->admin_token()},
                   dir_.path(), "follow");
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  for (const char* v : {"on", "off", "on", "off"}) {
    ASSERT_EQ(controller_->cli({"set", "autohealing", v, "shop/web"}).exit_code, 0);
  }
  const size_t expected = events_after(0).size();
  ASSERT_GE(expected, 5u);
  std::vector<json> seen;
  ASSERT_TRUE(wait_until(
      [&] {
        seen.clear();
        std::istringstream lines(follower.out());
        for (std::string line; std::getline(lines, line);) {
          seen.push_back(json::parse(line));
        }
        return seen.size() >= expected;
      },
      10s))
      << follower.out() << follower.err();
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i]["seq"], i + 1) << "gap-free and in order";
  }
}

TEST_F(Foundation, SigkillLosesNothingAndSigtermDrains) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("v2.yaml", shop_with_version("2.0.0")).string()}).exit_code, 0);
  ASSERT_EQ(controller_->cli({"set", "autohealing", "off", "shop/web"}).exit_code, 0);
  const auto before = events_after(0);
  const json apps_before = get_json({"get", "apps", "-o", "json"});

  controller_->kill_hard();
  controller_->start();
  EXPECT_EQ(get_json({"get", "apps", "-o", "json"}), apps_before);
  EXPECT_EQ(events_after(0).size(), before.size());
  const json web = get_json({"describe", "shop/web", "-o", "json"})["tree"][0];
  EXPECT_EQ(web["autohealing"]["explicit"], "off");
  ASSERT_EQ(controller_->cli({"set", "autohealing", "on", "shop/web"}).exit_code, 0);
  EXPECT_EQ(events_after(0).back()["seq"], before.size() + 1) << "seq continues without a gap";

  // An open event stream must not hold up a graceful stop.
  Process follower(
      {tranche_binary(), "events", "--follow", "--server", controller_->url(), "--token", controller_->admin_token()},
      dir_.path(), "follow");
  ASSERT_TRUE(wait_until([&] { return !follower.out().empty(); }, 10s));
  EXPECT_EQ(controller_->stop(), 0);
  EXPECT_EQ(follower.wait(10s), 0);
}

// One controller per data dir (quality.md): a second one on the same dir
// refuses to start, on stderr, naming the dir and the pid that holds it,
// while the first goes on serving. (Both used to accept applies and
// overwrite each other's rows.)
TEST_F(Foundation, ASecondControllerOnTheSameDataDirRefusesToStart) {
  const std::string data_dir = controller_->data_dir().string();
  Process second({tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir", data_dir}, dir_.path(),
                 "second");
  const auto status = second.wait(20s);
  ASSERT_TRUE(status.has_value()) << "the second controller runs:\n" << second.out();
  EXPECT_EQ(*status, 1);
  EXPECT_NE(second.err().find("data dir " + data_dir + " is in use by another controller (pid " +
                              std::to_string(controller_->process().pid()) + ","),
            std::string::npos)
      << second.err();
  EXPECT_EQ(controller_->cli({"version"}).exit_code, 0) << "the first one still serves";
  controller_->kill_hard();
  controller_->start();  // the lock went with the process
}

// A heartbeat timeout not longer than the interval would call every host
// Unreachable between two heartbeats (seen: a fleet reconnecting without
// end): the controller refuses to start, naming the setting.
TEST_F(Foundation, AHeartbeatTimeoutNotLongerThanTheIntervalIsRefused) {
  const fs::path data_dir = dir_.path() / "heartbeats";
  Process refused({tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir", data_dir.string(),
                   "--heartbeat-interval", "10s"},
                  dir_.path(), "heartbeats");
  const auto status = refused.wait(20s);
  ASSERT_TRUE(status.has_value()) << "the controller runs:\n" << refused.out();
  EXPECT_EQ(*status, 2);
  EXPECT_NE(refused.err().find("heartbeat-timeout"), std::string::npos) << refused.err();
  EXPECT_NE(refused.err().find("the heartbeat timeout (6000 ms) must be longer than the heartbeat interval (10000 ms)"),
            std::string::npos)
      << refused.err();
  EXPECT_FALSE(fs::exists(data_dir / "tranche.db")) << "refused before anything is written";
}

// A data dir a controller has run in keeps its store: a missing or empty
// tranche.db is refused, saying what is missing. (It used to be replaced by a
// new, empty store, under which the existing admin.token no longer worked,
// and no new one was written.)
TEST_F(Foundation, AMissingOrEmptyStoreInAUsedDataDirIsRefused) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  ASSERT_EQ(controller_->stop(), 0);
  const fs::path data_dir = controller_->data_dir();
  const fs::path db = data_dir / "tranche.db";
  for (const bool empty : {false, true}) {
    SCOPED_TRACE(empty ? "empty" : "missing");
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(db.string() + suffix);
    }
    if (empty) {
      write_file(db, "");
    }
    Process again({tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir", data_dir.string()},
                  dir_.path(), "again");
    const auto status = again.wait(20s);
    ASSERT_TRUE(status.has_value()) << "the controller started on a new store:\n" << again.out();
    EXPECT_EQ(*status, 1);
    EXPECT_NE(
        again.err().find("(it has admin.token) but its store " + db.string() + (empty ? " is empty" : " is missing")),
        std::string::npos)
        << again.err();
    EXPECT_EQ(fs::exists(db), empty) << "nothing is created in its place";
    if (empty) {
      EXPECT_EQ(fs::file_size(db), 0u);
    }
  }
}

// `apply -f DIR` applies each *.yaml, *.yml and *.json in DIR by name, as
// kubectl does; a refused one does not stop the rest, and makes the exit 1.
// (It sent the directory's empty read: "the manifest is empty".)
TEST_F(Foundation, ApplyOfADirectoryAppliesEachManifestByName) {
  const fs::path dir = dir_.path() / "manifests";
  fs::create_directories(dir / "nested");
  write_file(dir / "b-shop.yaml", kShopV1);
  write_file(dir / "a-solo.json", R"({"application": "solo", "clusters": [{"name": "web",
      "artifact": {"version": "1", "command": ["tranche-hello"]}}]})");
  write_file(dir / "c-broken.yml", "application: broken\nclusters: 3\n");
  write_file(dir / "README.txt", "not a manifest");
  write_file(dir / "nested" / "other.yaml", "application: nested\n");
  const auto r = controller_->cli({"apply", "-f", dir.string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const size_t solo = r.out.find((dir / "a-solo.json").string() + ": ");
  const size_t shop = r.out.find((dir / "b-shop.yaml").string() + ": ");
  ASSERT_NE(solo, std::string::npos) << r.out;
  ASSERT_NE(shop, std::string::npos) << r.out;
  EXPECT_LT(solo, shop) << "in name order";
  EXPECT_NE(r.err.find("error: " + (dir / "c-broken.yml").string() + ": clusters"), std::string::npos) << r.err;
  std::set<std::string> names;
  const json apps = get_json({"get", "apps", "-o", "json"});
  for (const auto& a : apps["items"]) {
    names.insert(a["name"].get<std::string>());
  }
  EXPECT_EQ(names, (std::set<std::string>{"shop", "solo"}));

  fs::create_directories(dir_.path() / "empty");
  const auto empty = controller_->cli({"apply", "-f", (dir_.path() / "empty").string()});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_EQ(empty.err, "error: -f: " + (dir_.path() / "empty").string() +
                           " is a directory without *.yaml, *.yml or *.json files\n");
}

TEST_F(Foundation, TimeBoxedSettingRevertsAcrossARestart) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  auto set = controller_->cli({"set", "autoscaling", "off", "shop", "--for", "3s"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  controller_->kill_hard();
  controller_->start();
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : events_after(0)) {
          if (e["type"] == "OperationalStateExpired") {
            return true;
          }
        }
        return false;
      },
      15s));
  const json app = get_json({"describe", "shop", "-o", "json"})["tree"][0];
  EXPECT_TRUE(app["autoscaling"]["explicit"].is_null());
  EXPECT_EQ(app["autoscaling"]["effective"], "on");
}

// interfaces.md: the controller's log format is text or json. With json
// every line it writes is one object, whatever a message holds; a format it
// does not know refuses the start, naming the setting.
TEST_F(Foundation, LogLinesAreJsonObjectsWhenAskedFor) {
  Controller json_logs(dir_.path() / "json-logs");
  json_logs.start({"--log-format", "json"});
  ASSERT_EQ(json_logs.cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  const auto lines = [&] {
    std::vector<std::string> out;
    std::istringstream text(json_logs.process().out());
    for (std::string line; std::getline(text, line);) {
      out.push_back(line);
    }
    return out;
  };
  ASSERT_TRUE(wait_until(
      [&] {
        const auto all = lines();
        return std::any_of(all.begin(), all.end(), [](const std::string& l) { return l.find("shop/") != l.npos; });
      },
      10s))
      << json_logs.process().out();
  EXPECT_EQ(json_logs.stop(), 0);  // read once it has exited: no line is half written
  const auto all = lines();
  ASSERT_GE(all.size(), 3u) << json_logs.process().out();
  for (const std::string& line : all) {
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(parsed.is_object()) << line;
    EXPECT_TRUE(parsed["time"].is_string() && parsed["level"].is_string() && parsed["message"].is_string()) << line;
  }

  write_file(dir_.path() / "xml.yaml", "logFormat: xml\n");
  const auto refused = run({tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir",
                            (dir_.path() / "xml").string(), "--config", (dir_.path() / "xml.yaml").string()});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("logFormat: expected text or json, got 'xml'"), std::string::npos) << refused.err;
}

TEST_F(Foundation, UndeployKeepsHistoryAndSettings) {
  ASSERT_EQ(controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()}).exit_code, 0);
  auto del = controller_->cli({"delete", "shop"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(get_json({"get", "apps", "-o", "json"})["items"][0]["deployed"], false);
  // Configured but not deployed: settings still apply.
  ASSERT_EQ(controller_->cli({"set", "autoscaling", "off", "shop"}).exit_code, 0);
  auto redeploy = controller_->cli({"apply", "-f", manifest("shop.yaml", kShopV1).string()});
  EXPECT_NE(redeploy.out.find("redeployed"), std::string::npos) << redeploy.out;
  EXPECT_EQ(get_json({"describe", "shop", "-o", "json"})["tree"][0]["autoscaling"]["effective"], "off");
  EXPECT_EQ(controller_->cli({"delete", "nope"}).exit_code, 1);
}

// Start-up refusals of the controller and the agent go to stderr with a
// non-zero exit, stdout staying empty (they used to be logged on stdout).
TEST_F(Foundation, StartUpErrorsGoToStderr) {
  const std::string data_dir = (dir_.path() / "other").string();
  const auto bad_listen = run({tranche_binary(), "controller", "--listen", "nowhere", "--data-dir", data_dir});
  EXPECT_EQ(bad_listen.exit_code, 2);
  EXPECT_NE(bad_listen.err.find("expected ADDR:PORT, got 'nowhere'"), std::string::npos) << bad_listen.err;
  EXPECT_EQ(bad_listen.out, "");

  const std::string taken = controller_->url().substr(std::string("http://").size());
  const auto busy = run({tranche_binary(), "controller", "--listen", taken, "--data-dir", data_dir});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.err.find("cannot listen on " + taken), std::string::npos) << busy.err;
  EXPECT_EQ(busy.out.find("error"), std::string::npos) << busy.out;

  const auto no_server = run({tranche_binary(), "agent", "--state-dir", (dir_.path() / "agent").string()});
  EXPECT_EQ(no_server.exit_code, 2);
  EXPECT_NE(no_server.err.find("give --server or --server-file"), std::string::npos) << no_server.err;
  EXPECT_EQ(no_server.out, "");
}

// `agent --slots` out of range says so plainly (it printed the range as
// "0.000000 to 1797693...", a 300-digit double), exit 2.
TEST(AgentFlags, SlotsOutOfRangeSaysWhatIsExpected) {
  for (const std::string slots : {"0", "-3", "abc", "99999999999999999999"}) {
    SCOPED_TRACE(slots);
    const auto r = run({tranche_binary(), "agent", "--server", "http://127.0.0.1:1", "--slots", slots});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.err, "error: --slots: expected a whole number of capacity units from 1 to 9223372036854775807, got '" +
                         slots + "' (see tranche --help)\n");
  }
}

fs::perms mode_of(const fs::path& path) { return fs::status(path).permissions() & fs::perms::mask; }

// The controller makes a data dir it creates private, and leaves the mode of
// one that exists alone: a --data-dir shared with others (/tmp) used to be
// chmodded to 0700. What is secret in it is 0600 either way.
TEST(DataDir, OnlyADirTheControllerCreatesIsMadePrivate) {
  TempDir dir;
  const fs::path shared = dir.path() / "shared";
  fs::create_directory(shared);
  const auto sticky_for_all = fs::perms::all | fs::perms::sticky_bit;
  fs::permissions(shared, sticky_for_all);
  const fs::path created = dir.path() / "data";
  for (const fs::path& data_dir : {shared, created}) {
    SCOPED_TRACE(data_dir.string());
    Controller controller(data_dir);
    controller.start();
    EXPECT_EQ(mode_of(data_dir), data_dir == shared ? sticky_for_all : fs::perms::owner_all);
    for (const char* secret : {"admin.token", "join.token", "tranche.db"}) {
      EXPECT_EQ(mode_of(data_dir / secret), fs::perms::owner_read | fs::perms::owner_write) << secret;
    }
    EXPECT_EQ(controller.stop(), 0);
  }
}

}  // namespace
}  // namespace tranche::e2e
