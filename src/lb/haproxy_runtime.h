#pragma once
// LoadBalancer over HAProxy 2.6's runtime API: a `stats socket ... level admin`
// (add/del server need admin level), on a unix socket path or a TCP address.
// Backends must use a dynamic balancing algorithm (e.g. `balance roundrobin`)
// for servers to be added at run time.
//
// One short connection per command: HAProxy answers a non-interactive session
// and closes it, so the end of the answer is the end of the stream. Every
// command has a deadline covering connect, send and the whole answer, so a
// hung HAProxy costs a caller at most `timeout` per command. The object holds
// only its configuration: calls from several threads at once are safe.

#include <chrono>
#include <string>
#include <string_view>

#include "common/error.h"
#include "lb/load_balancer.h"

namespace tranche::lb {

// Where the runtime API listens.
struct HaproxyEndpoint {
  std::string unix_path;  // a unix socket when set; else TCP to `tcp`
  ServerAddress tcp;
};

// "PATH" (any address holding a '/': "/run/haproxy/admin.sock",
// "./admin.sock") or "IPV4:PORT" ("127.0.0.1:9999"); kInvalid otherwise.
Result<HaproxyEndpoint> parse_haproxy_endpoint(std::string_view address);

std::string to_string(const HaproxyEndpoint& endpoint);

struct HaproxyOptions {
  std::chrono::milliseconds timeout{2000};  // per command
};

class HaproxyRuntime final : public LoadBalancer {
 public:
  explicit HaproxyRuntime(HaproxyEndpoint endpoint, HaproxyOptions options = {});

  // add server [check], enable health (with checks), enable server: three
  // commands, so up to three timeouts.
  Status add_server(std::string_view backend, const ServerSpec& server) override;
  Status set_state(std::string_view backend, std::string_view server, AdminState state) override;
  Result<std::optional<ServerInfo>> find_server(std::string_view backend, std::string_view server) override;
  Result<std::vector<ServerInfo>> list_servers(std::string_view backend) override;
  Status delete_server(std::string_view backend, std::string_view server) override;

 private:
  // Sends one command and returns HAProxy's whole answer.
  Result<std::string> run(std::string_view command) const;

  HaproxyEndpoint endpoint_;
  HaproxyOptions options_;
};

}  // namespace tranche::lb
