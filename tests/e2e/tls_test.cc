// End-to-end: TLS for the API and the agents' WebSocket (issue 14 item 11,
// quality.md "Security"). A controller with --tls-cert/--tls-key serves the
// CLI and a real agent that pin its CA, and refuses plain HTTP; one with
// --dev --tls makes its CA once, and its local agent and the CLI find it
// through the data dir.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/tls_files.h"
#include "harness.h"

namespace tranche::e2e {
namespace {

using nlohmann::json;

constexpr const char* kApp = R"(application: secure
operational: {autoscaling: "off"}
clusters:
  - name: web
    members: {desired: 1}
    artifact: {version: "1", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
    health: {http: {port: http, path: /healthz}}
    update: {minReadySeconds: 0}
)";

std::string path_with_hello() { return std::string(TRANCHE_BIN_DIR) + ":" + std::getenv("PATH"); }

// Sends a plain HTTP request to 127.0.0.1:port and returns every byte the
// server sends back until it closes (or 10 s pass).
std::string plain_http_exchange(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string received;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        received += "<still open>";
        break;
      }
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) {
        break;  // closed (or reset): what the server had to say is in
      }
      received.append(buffer, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return received;
}

bool host_ready(const Controller& controller, size_t hosts) {
  const auto r = controller.cli({"get", "hosts", "-o", "json"});
  if (r.exit_code != 0) {
    return false;
  }
  const json items = json::parse(r.out)["items"];
  size_t ready = 0;
  for (const auto& h : items) {
    ready += h["connected"] == true && h["state"] == "Ready" ? 1 : 0;
  }
  return ready == hosts;
}

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

TEST(Tls, ControllerWithACertificateServesTheCliAndAnAgentThatPinItsCa) {
  TempDir dir;
  auto ca = create_certificate_authority("e2e CA");
  auto stranger = create_certificate_authority("someone else's CA");
  ASSERT_TRUE(ca && stranger);
  auto server = issue_server_certificate(*ca, {"127.0.0.1", "localhost"}, 24h);
  ASSERT_TRUE(server) << server.error().describe();
  write_file(dir.path() / "ca.crt", ca->certificate);
  write_file(dir.path() / "stranger.crt", stranger->certificate);
  write_file(dir.path() / "server.crt", server->certificate);
  write_file(dir.path() / "server.key", server->private_key);

  Controller controller(dir.path() / "data");
  controller.trust_ca(dir.path() / "ca.crt");
  controller.start({"--tls-cert", (dir.path() / "server.crt").string(), "--tls-key",
                    (dir.path() / "server.key").string(), "--heartbeat-interval", "300ms"});
  ASSERT_TRUE(controller.url().starts_with("https://127.0.0.1:")) << controller.url();

  // The CLI checks the certificate against the CA it is given.
  const auto version = controller.cli({"version", "-o", "json"});
  ASSERT_EQ(version.exit_code, 0) << version.err;
  const auto distrusted = run({tranche_binary(), "version", "--server", controller.url(), "--token",
                               controller.admin_token(), "--ca", (dir.path() / "stranger.crt").string()});
  EXPECT_EQ(distrusted.exit_code, 1);
  EXPECT_NE(distrusted.err.find("certificate verify failed"), std::string::npos) << distrusted.err;

  // Plain HTTP on the TLS listener: no request is served, the connection ends.
  const std::string answer = plain_http_exchange(controller.port());
  EXPECT_EQ(answer.find("HTTP/1."), std::string::npos) << answer;
  EXPECT_EQ(answer.find("<still open>"), std::string::npos) << "the connection is closed";
  EXPECT_EQ(controller.cli({"version"}).exit_code, 0) << "and the controller serves on";

  // A real agent over wss://, trusting the CA; a member reaches Active.
  Process agent({tranche_binary(), "agent", "--server", controller.url(), "--ca", (dir.path() / "ca.crt").string(),
                 "--join-token-file", (controller.data_dir() / "join.token").string(), "--state-dir",
                 (dir.path() / "agent").string()},
                dir.path(), "agent", {{"PATH", path_with_hello()}});
  ASSERT_TRUE(wait_until([&] { return host_ready(controller, 1); }, 20s)) << agent.err() << agent.out();
  write_file(dir.path() / "app.yaml", kApp);
  const auto applied = controller.cli({"apply", "-f", (dir.path() / "app.yaml").string()});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  std::vector<int64_t> pids;
  auto active = [&] {
    const auto r = controller.cli({"get", "members", "secure", "-o", "json"});
    const json items = r.exit_code == 0 ? json::parse(r.out)["items"] : json::array();
    for (const auto& m : items) {
      if (m["pid"].is_number()) {
        pids.push_back(m["pid"].get<int64_t>());
      }
    }
    return items.size() == 1 && items[0]["state"] == "Active";
  };
  EXPECT_TRUE(wait_until(active, 30s)) << agent.err() << agent.out();

  // An agent that trusts another CA never joins, and says why.
  Process distrustful(
      {tranche_binary(), "agent", "--server", controller.url(), "--ca", (dir.path() / "stranger.crt").string(),
       "--join-token-file", (controller.data_dir() / "join.token").string(), "--state-dir",
       (dir.path() / "distrustful").string()},
      dir.path(), "distrustful", {{"PATH", path_with_hello()}});
  EXPECT_TRUE(wait_until(
      [&] { return (distrustful.out() + distrustful.err()).find("certificate verify failed") != std::string::npos; },
      15s))
      << distrustful.out() << distrustful.err();
  EXPECT_TRUE(host_ready(controller, 1)) << "only the agent that trusts the CA is a host";

  EXPECT_EQ(controller.cli({"delete", "secure"}).exit_code, 0);
  EXPECT_TRUE(wait_until(
      [&] { return std::ranges::none_of(pids, [](int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }); },
      15s))
      << "delete stops the member";
}

TEST(Tls, DevTlsMakesItsCaOnceAndTheLocalAgentAndTheCliFindItInTheDataDir) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  Controller controller(data);
  controller.trust_ca(data / "ca.crt");
  const std::vector<std::string> args = {"--dev", "--tls", "--heartbeat-interval", "300ms", "--heartbeat-timeout",
                                         "10s"};
  controller.start(args);
  std::string agent_pid;
  ASSERT_TRUE(wait_until([&] { return !(agent_pid = read_file(data / "agent" / "agent.pid")).empty(); }, 10s));
  // The local agent outlives the controller by design: stopped however the test ends.
  const std::unique_ptr<const std::string, void (*)(const std::string*)> stop_agent(
      &agent_pid, [](const std::string* pid) { ::kill(std::stoi(*pid), SIGTERM); });
  ASSERT_TRUE(controller.url().starts_with("https://")) << controller.url();
  EXPECT_EQ(mode_of(data / "ca.key"), 0600u);
  EXPECT_EQ(mode_of(data / "server.key"), 0600u);

  // The local agent can only be a host over wss:// (the listener speaks TLS alone).
  EXPECT_TRUE(wait_until([&] { return host_ready(controller, 1); }, 20s)) << read_file(data / "agent" / "agent.log");

  // The CLI through the data dir: no server, token or CA given, only where the token file is.
  const std::map<std::string, std::string> through_data_dir = {{"TRANCHE_SERVER", ""},
                                                               {"TRANCHE_TOKEN", ""},
                                                               {"TRANCHE_CA", ""},
                                                               {"TRANCHE_TOKEN_FILE", (data / "admin.token").string()}};
  const auto hosts = run({tranche_binary(), "get", "hosts", "-o", "json"}, through_data_dir);
  ASSERT_EQ(hosts.exit_code, 0) << hosts.err;
  EXPECT_EQ(json::parse(hosts.out)["items"].size(), 1u);

  // A restart reuses the CA and the certificate; the agent comes back.
  const std::string ca = read_file(data / "ca.crt");
  const std::string certificate = read_file(data / "server.crt");
  EXPECT_EQ(controller.stop(), 0);
  ASSERT_NO_THROW(controller.start(args));
  EXPECT_EQ(read_file(data / "ca.crt"), ca);
  EXPECT_EQ(read_file(data / "server.crt"), certificate);
  EXPECT_EQ(read_file(data / "agent" / "agent.pid"), agent_pid) << "the same local agent";
  auto welcomes = [&] {
    const std::string log = read_file(data / "agent" / "agent.log");
    size_t n = 0;
    for (size_t at = log.find("connected as host"); at != std::string::npos;
         at = log.find("connected as host", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_TRUE(wait_until([&] { return welcomes() >= 2 && host_ready(controller, 1); }, 20s))
      << "the agent reconnects over wss:// to the restarted controller: " << read_file(data / "agent" / "agent.log");
  EXPECT_EQ(run({tranche_binary(), "get", "hosts"}, through_data_dir).exit_code, 0);
}

TEST(Tls, TheConfigFileMayGiveTheCertificateAndKey) {
  TempDir dir;
  auto ca = create_certificate_authority("e2e CA");
  ASSERT_TRUE(ca);
  auto server = issue_server_certificate(*ca, {"127.0.0.1"}, 24h);
  ASSERT_TRUE(server) << server.error().describe();
  write_file(dir.path() / "ca.crt", ca->certificate);
  write_file(dir.path() / "server.crt", server->certificate);
  write_file(dir.path() / "server.key", server->private_key);
  write_file(dir.path() / "controller.yaml", "tlsCert: " + (dir.path() / "server.crt").string() +
                                                 "\ntlsKey: " + (dir.path() / "server.key").string() + "\n");
  Controller controller(dir.path() / "data");
  controller.trust_ca(dir.path() / "ca.crt");
  controller.start({"--config", (dir.path() / "controller.yaml").string()});
  EXPECT_TRUE(controller.url().starts_with("https://")) << controller.url();
  EXPECT_EQ(controller.cli({"get", "apps"}).exit_code, 0);
}

TEST(Tls, TlsFlagsThatDoNotGoTogetherAreUsageErrors) {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tls"}, std::vector<std::string>{"--tls-cert", "x.crt"},
        std::vector<std::string>{"--dev", "--tls", "--tls-cert", "x.crt", "--tls-key", "x.key"}}) {
    std::vector<std::string> argv = {tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir", data};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const auto r = run(argv);
    EXPECT_EQ(r.exit_code, 2) << flags[0] << ": " << r.err;
    EXPECT_NE(r.err.find("tls"), std::string::npos) << r.err;
  }
  const auto missing = run({tranche_binary(), "controller", "--listen", "127.0.0.1:0", "--data-dir", data, "--tls-cert",
                            (dir.path() / "none.crt").string(), "--tls-key", (dir.path() / "none.key").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("none.crt"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace tranche::e2e
