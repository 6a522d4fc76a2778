// End-to-end: zero-downtime changes behind a real HAProxy (updates.md, "load
// balancer"; quality.md P6, shortened). A real controller with
// --haproxy-socket, real agents, tranche-hello members, HAProxy 2.6 with an
// empty backend (every server is added at run time), and tranche-loadgen
// sending keep-alive and new-connection requests through it the whole time.
// No request may fail while members are replaced, updated in place or
// restarted for maintenance; when HAProxy's runtime socket disappears the
// rollout pauses and no member is stopped while it cannot be drained.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kHaproxy = "/usr/sbin/haproxy";
constexpr int kMembers = 4;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The maintenance hook leaves one line per run in `markers`.
json manifest(const std::string& version, const std::string& method, const fs::path& markers) {
  json cluster = {
      {"name", "web"},
      {"members", {{"min", 1}, {"max", 10}, {"desired", kMembers}}},
      {"artifact", {{"version", version}, {"command", {"tranche-hello", "--port", "${PORT_HTTP}"}}}},
      {"ports", {"http"}},
      {"health", {{"http", {{"port", "http"}, {"path", "/healthz"}}}, {"intervalSeconds", 1}}},
      {"hooks", {{"update", {"true"}}, {"maintenance", {"sh", "-c", "echo $TRANCHE_MEMBER >> " + markers.string()}}}},
      {"update",
       {{"method", method}, {"maxUnavailable", method == "replace" ? 0 : 1}, {"maxSurge", 1}, {"minReadySeconds", 1}}},
      {"loadBalancer", {{"haproxy", {{"backend", "web"}}}, {"drainTimeoutSeconds", 5}}},
      {"operational", {{"autoscaling", "off"}}},
  };
  return json{{"application", "shop"}, {"clusters", json::array({cluster})}};
}

class ZeroDowntime : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kHaproxy, X_OK) != 0) {
      GTEST_SKIP() << "no HAProxy at " << kHaproxy;
    }
    socket_ = dir_.path() / "admin.sock";
    frontend_port_ = free_port();
    const fs::path config = dir_.path() / "haproxy.cfg";
    write_file(config, "global\n  stats socket " + socket_.string() +
                           " level admin\n"
                           // retries 0: a refused connection is a failed request, never hidden;
                           // and HAProxy 2.6.12 can crash deleting a server with retries pending.
                           "defaults\n  mode http\n  retries 0\n  timeout connect 1s\n  timeout client 10s\n"
                           "  timeout server 10s\n"
                           "frontend www\n  bind 127.0.0.1:" +
                           std::to_string(frontend_port_) +
                           "\n  default_backend web\n"
                           "backend web\n  balance roundrobin\n");
    haproxy_ = std::make_unique<Process>(std::vector<std::string>{kHaproxy, "-f", config.string(), "-db"}, dir_.path(),
                                         "haproxy");
    ASSERT_TRUE(wait_until([&] { return fs::exists(socket_) || !haproxy_->running(); }, 10s));
    ASSERT_TRUE(haproxy_->running()) << haproxy_->err();

    controller_ = std::make_unique<Controller>(dir_.path() / "data");
    controller_->start(
        {"--heartbeat-interval", "300ms", "--heartbeat-timeout", "3000ms", "--haproxy-socket", socket_.string()});
    for (int i = 0; i < 2; ++i) {
      agents_.push_back(std::make_unique<Process>(
          std::vector<std::string>{tranche_binary(), "agent", "--server-file",
                                   (controller_->data_dir() / "controller.url").string(), "--join-token-file",
                                   (controller_->data_dir() / "join.token").string(), "--state-dir",
                                   (dir_.path() / ("agent" + std::to_string(i))).string()},
          dir_.path(), "agent" + std::to_string(i),
          std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}}));
    }
  }

  void TearDown() override {
    if (!controller_) {
      return;
    }
    if (HasFailure()) {
      std::cout << "--- controller log (tail)\n" << tail(controller_->process().err(), 60) << std::flush;
    }
    if (fs::exists(dir_.path() / "hidden.sock")) {
      fs::rename(dir_.path() / "hidden.sock", socket_);
    }
    api("DELETE", "/api/v1/applications/shop");
    wait_until([&] { return members().empty(); }, 30s);
  }

  static std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> out;
    for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      out.push_back(text.substr(start, end - start));
    }
    return out;
  }

  static std::string tail(const std::string& text, size_t n) {
    const auto lines = split_lines(text);
    std::string out;
    for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
      out += lines[i] + '\n';
    }
    return out;
  }

  struct Answer {
    int status = 0;
    json body;
  };

  Answer api(const std::string& method, const std::string& target, const json& body = nullptr) const {
    cli::ApiClient client(controller_->url(), controller_->admin_token());
    auto reply = client.send(method, target, body.is_null() ? "" : body.dump());
    if (!reply) {
      return Answer{0, json{{"transport error", reply.error().describe()}}};
    }
    return Answer{reply->status, json::parse(reply->body, nullptr, false)};
  }

  void apply(const json& m) {
    const Answer a = api("POST", "/api/v1/applications", m);
    ASSERT_TRUE(a.status == 200 || a.status == 201) << a.status << " " << a.body.dump();
  }

  std::vector<json> members() const {
    auto a = api("GET", "/api/v1/members?app=shop");
    return a.status == 200 ? a.body.value("items", json::array()).get<std::vector<json>>() : std::vector<json>{};
  }

  // Every member is Active on `version` and HAProxy sends it traffic.
  bool all_serving(const std::string& version) const {
    const auto ms = members();
    int serving = 0;
    for (const auto& m : ms) {
      serving += m["state"] == "Active" && m["version"] == version && m.contains("loadBalancer") &&
                         m["loadBalancer"]["state"] == "serving"
                     ? 1
                     : 0;
    }
    return serving == kMembers && ms.size() == static_cast<size_t>(kMembers);
  }

  fs::path markers() const { return dir_.path() / "maintained"; }

  std::string phase() const {
    const Answer a = api("GET", "/api/v1/applications/shop/rollout");
    return a.status == 200 ? a.body.value("phase", "") : "";
  }

  std::unique_ptr<Process> start_load(const std::string& name, const std::string& duration) {
    return std::make_unique<Process>(
        std::vector<std::string>{std::string(TRANCHE_BIN_DIR) + "/tranche-loadgen", "--url",
                                 "http://127.0.0.1:" + std::to_string(frontend_port_) + "/", "--connections", "3",
                                 "--keep-alive-rate", "40/s", "--new-connection-rate", "20/s", "--duration", duration,
                                 "--stop-file", (dir_.path() / (name + ".stop")).string(), "--json"},
        dir_.path(), name);
  }

  // Ends a load run (or, with `run_out`, lets it end at its --duration) and
  // returns its JSON line.
  json finish_load(const std::string& name, Process& load, bool run_out = false) {
    if (!run_out) {
      write_file(dir_.path() / (name + ".stop"), "");
    }
    EXPECT_EQ(load.wait(20s), 0) << load.err();
    const std::string out = load.out();
    const size_t line = out.rfind("{\"bench\"");
    EXPECT_NE(line, std::string::npos) << out;
    return line == std::string::npos ? json::object() : json::parse(out.substr(line, out.find('\n', line) - line));
  }

  void deploy(const std::string& method) {
    apply(manifest("1.0.0", method, markers()));
    ASSERT_TRUE(wait_until([&] { return all_serving("1.0.0"); }, 60s)) << json(members()).dump(1);
  }

  // Every request of the run was answered 2xx, and the run had enough of them
  // to mean something.
  static void expect_no_failure(const json& run) {
    EXPECT_EQ(run.value("failed", -1), 0) << run.dump();
    EXPECT_GT(run.value("sent", 0), 100) << run.dump();
  }

  TempDir dir_;
  fs::path socket_;
  int frontend_port_ = 0;
  std::unique_ptr<Process> haproxy_;
  std::unique_ptr<Controller> controller_;
  std::vector<std::unique_ptr<Process>> agents_;
};

TEST_F(ZeroDowntime, ARollingReplaceUnderLoadFailsNoRequestAndEndsOnTheNewVersion) {
  deploy("replace");
  auto load = start_load("replace", "180s");
  apply(manifest("2.0.0", "replace", markers()));
  ASSERT_TRUE(wait_until([&] { return phase() == "Succeeded"; }, 120s)) << phase();
  ASSERT_TRUE(wait_until([&] { return all_serving("2.0.0"); }, 20s)) << json(members()).dump(1);
  const json during = finish_load("replace", *load);
  expect_no_failure(during);
  EXPECT_GT(during["versions"].value("2.0.0", 0), 0) << during.dump();

  auto after = start_load("after", "2s");
  const json tail = finish_load("after", *after, true);
  expect_no_failure(tail);
  EXPECT_EQ(tail["versions"].size(), 1u) << tail.dump();
  EXPECT_EQ(tail["versions"].value("2.0.0", 0), tail.value("ok", -1)) << tail.dump();
}

TEST_F(ZeroDowntime, AnInPlaceUpdateAndAMaintenanceRestartUnderLoadFailNoRequest) {
  deploy("in-place");
  auto load = start_load("in-place", "240s");
  apply(manifest("2.0.0", "in-place", markers()));
  ASSERT_TRUE(wait_until([&] { return phase() == "Succeeded"; }, 120s)) << phase();
  ASSERT_TRUE(wait_until([&] { return all_serving("2.0.0"); }, 20s)) << json(members()).dump(1);

  const Answer set = api("PUT", "/api/v1/applications/shop/operational-state", json{{"maintenance", "restart"}});
  ASSERT_EQ(set.status, 200) << set.body.dump();
  // Back to off by itself once every member has run its hook and resumed.
  ASSERT_TRUE(wait_until(
      [&] {
        const CliResult d = controller_->cli({"describe", "shop", "-o", "json"});
        const json tree = json::parse(d.out, nullptr, false);
        return !tree.is_discarded() && tree["tree"][0]["maintenance"]["effective"] == "off" && all_serving("2.0.0");
      },
      120s))
      << json(members()).dump(1);
  std::set<std::string> maintained;
  for (const auto& line : split_lines(read_file(markers()))) {
    maintained.insert(line);
  }
  EXPECT_EQ(maintained.size(), static_cast<size_t>(kMembers)) << read_file(markers());
  const json run = finish_load("in-place", *load);
  expect_no_failure(run);
}

TEST_F(ZeroDowntime, WithoutItsRuntimeSocketTheRolloutPausesAndNoMemberIsStoppedUndrained) {
  deploy("replace");
  std::set<std::string> old_members;
  for (const auto& m : members()) {
    old_members.insert(m["id"]);
  }
  auto load = start_load("outage", "240s");
  apply(manifest("2.0.0", "replace", markers()));
  // The first successor exists: the rollout is under way.
  ASSERT_TRUE(wait_until([&] { return members().size() > static_cast<size_t>(kMembers); }, 60s));
  fs::rename(socket_, dir_.path() / "hidden.sock");
  ASSERT_TRUE(wait_until([&] { return phase() == "Paused"; }, 20s)) << phase();
  const Answer r = api("GET", "/api/v1/applications/shop/rollout");
  EXPECT_NE(r.body.value("reason", "").find("load balancer does not answer"), std::string::npos) << r.body.dump();

  // Old members that were still in the backend stay up: none moves on to
  // Stopping while the balancer cannot drain it.
  std::set<std::string> held;
  for (const auto& m : members()) {
    if (old_members.contains(m["id"]) && m["state"] != "Stopping") {
      held.insert(m["id"]);
    }
  }
  ASSERT_FALSE(held.empty());
  const bool any_stopped = wait_until(
      [&] {
        for (const auto& m : members()) {
          if (held.contains(m["id"]) && m["state"] == "Stopping") {
            return true;
          }
        }
        return members().size() < old_members.size();
      },
      3s);
  EXPECT_FALSE(any_stopped) << json(members()).dump(1);

  fs::rename(dir_.path() / "hidden.sock", socket_);
  const Answer resumed = api("POST", "/api/v1/applications/shop/rollout/resume");
  EXPECT_EQ(resumed.status, 200) << resumed.body.dump();
  ASSERT_TRUE(wait_until([&] { return phase() == "Succeeded"; }, 120s)) << phase();
  ASSERT_TRUE(wait_until([&] { return all_serving("2.0.0"); }, 20s)) << json(members()).dump(1);
  expect_no_failure(finish_load("outage", *load));
}

}  // namespace
}  // namespace tranche::e2e
