// End-to-end: upgrading the controller itself (updates.md, "Upgrading
// Tranche itself"). A `tranche` controller with real agents and members is
// locked for migration (`migration begin --all`), stopped, and
// `tranche-next` (the next minor version) started on its port and data dir:
// members keep running untouched, agents reconnect, the lock holds. And what
// SIGTERM promises: in-flight requests finish, new connections are refused,
// the process exits 0. And what a restart in place promises: connections
// wait while the controller reads its store, they are not refused.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = R"(application: shop
operational: {autoscaling: "off"}
clusters:
  - name: web
    members: {min: 1, max: 4, desired: 2}
    artifact: {version: "1.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health:
      http: {port: http, path: /healthz}
      intervalSeconds: 1
    update: {minReadySeconds: 0}
)";

bool process_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

// A TCP connection to 127.0.0.1:port, or -1 (errno says why).
int dial(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes (a receive timeout bounds it).
std::string read_to_end(int fd) {
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class UpgradeController : public ::testing::Test {
 protected:
  void TearDown() override {
    if (controller_.process().running()) {
      controller_.cli({"delete", "shop"});
      wait_until([&] { return get({"get", "members", "shop", "-o", "json"})["items"].empty(); }, 15s);
    }
    for (int64_t pid : pids_) {
      if (process_alive(pid)) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
  }

  void start_agent(const std::string& name) {
    agents_.push_back(std::make_unique<Process>(
        std::vector<std::string>{tranche_binary(), "agent", "--server", controller_.url(), "--join-token-file",
                                 (controller_.data_dir() / "join.token").string(), "--state-dir",
                                 (dir_.path() / name).string(), "--labels", "name=" + name},
        dir_.path(), name,
        std::map<std::string, std::string>{{"PATH", std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH")}}));
  }

  json get(const std::vector<std::string>& args) {
    auto r = controller_.cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  // Active members by id, with their pids.
  std::map<std::string, int64_t> active_members() {
    std::map<std::string, int64_t> out;
    const json members = get({"get", "members", "shop", "-o", "json"});
    for (const auto& m : members["items"]) {
      if (m["state"] == "Active" && m["pid"].is_number()) {
        out[m["id"]] = m["pid"];
        pids_.insert(m["pid"].get<int64_t>());
      }
    }
    return out;
  }

  std::vector<json> events_after(uint64_t seq) {
    std::vector<json> out;
    std::istringstream lines(controller_.cli({"events", "--since", std::to_string(seq), "-o", "json"}).out);
    for (std::string line; std::getline(lines, line);) {
      out.push_back(json::parse(line));
    }
    return out;
  }

  TempDir dir_;
  Controller controller_{dir_.path() / "data"};
  std::vector<std::unique_ptr<Process>> agents_;
  std::set<int64_t> pids_;
};

TEST_F(UpgradeController, ANewerControllerTakesOverTheStoreAndTheAgentsWhileMembersRunOn) {
  controller_.start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"});
  start_agent("a");
  start_agent("b");
  write_file(dir_.path() / "shop.yaml", kApp);
  ASSERT_EQ(controller_.cli({"apply", "-f", (dir_.path() / "shop.yaml").string()}).exit_code, 0);
  std::map<std::string, int64_t> before;
  ASSERT_TRUE(wait_until(
      [&] {
        before = active_members();
        return before.size() == 2;
      },
      20s));
  // Before an upgrade of Tranche itself: the platform's migration lock.
  const CliResult locked = controller_.cli({"migration", "begin", "--all"});
  ASSERT_EQ(locked.exit_code, 0) << locked.err;
  const json old_version = get({"version", "-o", "json"});
  ASSERT_EQ(old_version["server"]["version"].get<std::string>().substr(0, 6), "0.1.0+");
  const auto history = events_after(0);
  ASSERT_FALSE(history.empty());
  const uint64_t last_seq = history.back()["seq"];

  // The upgrade: stop the old controller, start the new one in its place.
  EXPECT_EQ(controller_.stop(), 0);
  controller_.listen_on("127.0.0.1:" + std::to_string(controller_.port()));
  controller_.use_binary(next_binary());
  controller_.start({"--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms"});

  const json new_version = get({"version", "-o", "json"});
  EXPECT_EQ(new_version["server"]["version"].get<std::string>().substr(0, 6), "0.2.0+");
  EXPECT_EQ(new_version["server"]["protocol"], 3);
  // Both agents (one minor version older: within the skew policy) back, in protocol 3.
  ASSERT_TRUE(wait_until(
      [&] {
        int back = 0;
        const json hosts = get({"get", "hosts", "-o", "json"});
        for (const auto& h : hosts["items"]) {
          back += h["connected"] == true && h["state"] == "Ready" && h["protocol"] == 3 &&
                          h["agentVersion"].is_string() && h["agentVersion"].get<std::string>().starts_with("0.1.0+")
                      ? 1
                      : 0;
        }
        return back == 2;
      },
      15s))
      << agents_[0]->out();
  // A few heartbeats on the new controller: the members are as they were.
  std::map<std::string, int64_t> after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = active_members();
        return after == before;
      },
      5s))
      << "same members, same pids, all Active";
  for (const auto& [id, pid] : before) {
    EXPECT_TRUE(process_alive(pid)) << id;
  }
  for (const auto& e : events_after(last_seq)) {
    EXPECT_NE(e["type"], "MemberStateChanged") << "nothing restarted, nothing moved: " << e.dump();
  }
  // The lock outlived the old controller: nothing changes under it.
  const CliResult scaled = controller_.cli({"scale", "shop/web", "--members", "3"});
  EXPECT_EQ(scaled.exit_code, 1);
  EXPECT_NE(scaled.err.find("migration lock"), std::string::npos) << scaled.err;
  const CliResult unlocked = controller_.cli({"migration", "complete", "--all"});
  EXPECT_EQ(unlocked.exit_code, 0) << unlocked.err;
}

TEST_F(UpgradeController, SigtermFinishesTheRequestInFlightRefusesNewConnectionsAndExitsZero) {
  controller_.start();
  const unsigned short port = controller_.port();
  // A request whose body is still on its way when SIGTERM comes.
  const std::string body = kApp;
  const int fd = dial(port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "POST /api/v1/applications HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                               controller_.admin_token() + "\r\nContent-Type: application/yaml\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, body.size() / 2)));
  // Its head is read before the signal: the controller answers a request
  // on another connection meanwhile.
  ASSERT_EQ(controller_.cli({"get", "apps"}).exit_code, 0);
  const auto signalled = std::chrono::steady_clock::now();
  controller_.process().signal(SIGTERM);

  // Draining: no new connection is accepted (the listener is closed)...
  ASSERT_TRUE(wait_until(
      [&] {
        const int other = dial(port);
        if (other >= 0) {
          ::close(other);
        }
        return other < 0 && errno == ECONNREFUSED;
      },
      5s));
  EXPECT_TRUE(controller_.process().running()) << "it waits for the request in flight";
  // ...and the request in flight gets its whole answer.
  ASSERT_TRUE(send_all(fd, body.substr(body.size() / 2)));
  const std::string answer = read_to_end(fd);
  ::close(fd);
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 201") << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  const size_t json_start = answer.find("\r\n\r\n");
  ASSERT_NE(json_start, std::string::npos);
  const json created = json::parse(answer.substr(json_start + 4));
  EXPECT_EQ(created["application"], "shop");
  EXPECT_EQ(created["revision"], 1);

  // Then it exits 0, promptly.
  EXPECT_EQ(controller_.process().wait(10s), 0) << controller_.process().out();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, 10s);
  // What it acknowledged is durable.
  controller_.start();
  const json apps = get({"get", "apps", "-o", "json"});
  ASSERT_EQ(apps["items"].size(), 1u) << apps.dump();
  EXPECT_EQ(apps["items"][0]["name"], "shop");
}

// The restarted controller listens before it reads its store: what
// connects meanwhile (here, while another process holds the store) waits in
// the accept queue and is answered once the store is read, instead of being
// refused and sent into its reconnect backoff.
TEST_F(UpgradeController, AConnectionMadeWhileTheRestartedControllerReadsItsStoreIsAnswered) {
  controller_.start();
  const std::string address = "127.0.0.1:" + std::to_string(controller_.port());
  ASSERT_EQ(controller_.stop(), 0);
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((controller_.data_dir() / "tranche.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(holder);
  Process restarted({tranche_binary(), "controller", "--listen", address, "--data-dir", controller_.data_dir().string()},
                    dir_.path(), "restarted");

  int fd = -1;
  const bool connected = wait_until(
      [&] {
        fd = dial(static_cast<unsigned short>(std::stoi(address.substr(address.rfind(':') + 1))));
        return fd >= 0;
      },
      4s);  // the store's busy timeout is 5 s
  const std::string log_when_connected = restarted.out();
  const bool sent = connected && send_all(fd, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  sqlite3_close(holder);
  ASSERT_TRUE(connected) << "refused while the controller read its store\n" << restarted.err();
  EXPECT_EQ(log_when_connected.find("serving"), std::string::npos) << log_when_connected;
  ASSERT_TRUE(sent);
  const std::string answer = read_to_end(fd);
  ::close(fd);
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 200") << answer << restarted.err();
  restarted.signal(SIGTERM);
  EXPECT_EQ(restarted.wait(10s), 0) << restarted.err();
}

}  // namespace
}  // namespace tranche::e2e
