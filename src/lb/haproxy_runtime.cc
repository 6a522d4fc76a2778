#include "lb/haproxy_runtime.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lb/haproxy_protocol.h"

namespace tranche::lb {

namespace {

using Clock = std::chrono::steady_clock;

// `show stat` of thousands of servers is a few MB; more is not HAProxy.
constexpr size_t kMaxAnswerBytes = 64 * 1024 * 1024;

std::string errno_text(int err) { return std::strerror(err); }

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

enum class Wait { kReady, kTimeout, kError };

// Waits until `fd` has one of `events` (or an error or hang-up, which the
// next call on it reports) or `deadline` passes.
Wait wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return Wait::kTimeout;
    }
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX)));
    if (n > 0) {
      return Wait::kReady;
    }
    if (n < 0 && errno != EINTR) {
      return Wait::kError;
    }
  }
}

// 1..65535, all digits.
std::optional<uint16_t> parse_port(std::string_view s) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(value);
}

// The dotted quad of an IPv4 address, as HAProxy will print it back.
std::optional<std::string> canonical_ipv4(const std::string& ip) {
  in_addr addr{};
  if (::inet_pton(AF_INET, ip.c_str(), &addr) != 1) {
    return std::nullopt;
  }
  char text[INET_ADDRSTRLEN];
  if (::inet_ntop(AF_INET, &addr, text, sizeof text) == nullptr) {
    return std::nullopt;
  }
  return std::string(text);
}

Status check_names(std::string_view backend, std::string_view server) {
  if (auto ok = haproxy::check_identifier(backend, "backend"); !ok) {
    return ok;
  }
  return haproxy::check_identifier(server, "server");
}

std::string server_ref(std::string_view backend, std::string_view server) {
  return std::string(backend) + "/" + std::string(server);
}

}  // namespace

Result<HaproxyEndpoint> parse_haproxy_endpoint(std::string_view address) {
  HaproxyEndpoint endpoint;
  if (address.find('/') != std::string_view::npos) {
    if (address.size() >= sizeof(sockaddr_un::sun_path)) {
      return fail(ErrorCode::kInvalid, "HAProxy socket path '" + std::string(address) + "' is longer than " +
                                           std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    }
    endpoint.unix_path = address;
    return endpoint;
  }
  const size_t colon = address.rfind(':');
  const auto ip =
      colon == std::string_view::npos ? std::nullopt : canonical_ipv4(std::string(address.substr(0, colon)));
  const auto port = colon == std::string_view::npos ? std::nullopt : parse_port(address.substr(colon + 1));
  if (!ip || !port) {
    return fail(ErrorCode::kInvalid,
                "HAProxy socket address '" + std::string(address) + "' is neither a path (with a '/') nor IPV4:PORT");
  }
  endpoint.tcp = ServerAddress{*ip, *port};
  return endpoint;
}

std::string to_string(const HaproxyEndpoint& endpoint) {
  return endpoint.unix_path.empty() ? to_string(endpoint.tcp) : endpoint.unix_path;
}

HaproxyRuntime::HaproxyRuntime(HaproxyEndpoint endpoint, HaproxyOptions options)
    : endpoint_(std::move(endpoint)), options_(options) {}

Result<std::string> HaproxyRuntime::run(std::string_view command) const {
  const auto deadline = Clock::now() + options_.timeout;
  const auto unavailable = [&](std::string_view why) {
    return fail(ErrorCode::kUnavailable, "HAProxy runtime API at " + to_string(endpoint_) + ", '" +
                                             std::string(command) + "': " + std::string(why));
  };
  const auto timed_out = [&](std::string_view waiting_for) {
    return unavailable("no " + std::string(waiting_for) + " within " + std::to_string(options_.timeout.count()) +
                       " ms");
  };

  sockaddr_storage storage{};
  socklen_t length = 0;
  if (!endpoint_.unix_path.empty()) {
    auto& addr = reinterpret_cast<sockaddr_un&>(storage);
    addr.sun_family = AF_UNIX;
    if (endpoint_.unix_path.size() >= sizeof addr.sun_path) {
      return unavailable("the socket path is longer than " + std::to_string(sizeof addr.sun_path - 1) + " bytes");
    }
    std::memcpy(addr.sun_path, endpoint_.unix_path.data(), endpoint_.unix_path.size());
    length = sizeof addr;
  } else {
    auto& addr = reinterpret_cast<sockaddr_in&>(storage);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(endpoint_.tcp.port);
    if (::inet_pton(AF_INET, endpoint_.tcp.ip.c_str(), &addr.sin_addr) != 1) {
      return unavailable("'" + endpoint_.tcp.ip + "' is not an IPv4 address");
    }
    length = sizeof addr;
  }

  const Fd fd(::socket(storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return unavailable("socket: " + errno_text(errno));
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
    // A unix socket whose backlog is full fails with EAGAIN at once: HAProxy
    // is not accepting, which is as unavailable as a refusal.
    if (errno != EINPROGRESS) {
      return unavailable("cannot connect: " + errno_text(errno));
    }
    switch (wait_for(fd.get(), POLLOUT, deadline)) {
      case Wait::kTimeout:
        return timed_out("connection");
      case Wait::kError:
        return unavailable("poll: " + errno_text(errno));
      case Wait::kReady:
        break;
    }
    int err = 0;
    socklen_t err_length = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_length) != 0) {
      err = errno;
    }
    if (err != 0) {
      return unavailable("cannot connect: " + errno_text(err));
    }
  }

  const std::string line = std::string(command) + "\n";
  for (size_t sent = 0; sent < line.size();) {
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return unavailable("send: " + errno_text(errno));
    }
    switch (wait_for(fd.get(), POLLOUT, deadline)) {
      case Wait::kTimeout:
        return timed_out("room to send the command");
      case Wait::kError:
        return unavailable("poll: " + errno_text(errno));
      case Wait::kReady:
        break;
    }
  }

  // HAProxy closes a non-interactive session after its answer: read to EOF.
  std::string answer;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n == 0) {
      return answer;
    }
    if (n > 0) {
      answer.append(chunk, static_cast<size_t>(n));
      if (answer.size() > kMaxAnswerBytes) {
        return unavailable("answer larger than " + std::to_string(kMaxAnswerBytes) + " bytes");
      }
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return unavailable("receive: " + errno_text(errno));
    }
    switch (wait_for(fd.get(), POLLIN, deadline)) {
      case Wait::kTimeout:
        return timed_out("complete answer");
      case Wait::kError:
        return unavailable("poll: " + errno_text(errno));
      case Wait::kReady:
        break;
    }
  }
}

Status HaproxyRuntime::add_server(std::string_view backend, const ServerSpec& server) {
  if (auto ok = check_names(backend, server.name); !ok) {
    return ok;
  }
  const auto ip = canonical_ipv4(server.address.ip);
  if (!ip || server.address.port == 0) {
    return fail(ErrorCode::kInvalid, "'" + to_string(server.address) + "' is not an IPv4 address and port");
  }
  const std::string ref = server_ref(backend, server.name);

  const std::string add = "add server " + ref + " " + to_string(ServerAddress{*ip, server.address.port}) +
                          (server.health_checks ? " check" : "");
  auto answer = run(add);
  if (!answer) {
    return std::unexpected(answer.error());
  }
  if (auto ok = haproxy::check_answer(haproxy::Reply::kAddServer, add, *answer); !ok) {
    return ok;
  }

  // A dynamic server starts in maintenance with its checks off. Checks go
  // first, so that they run from the moment the server takes traffic.
  std::vector<std::string> enables;
  if (server.health_checks) {
    enables.push_back("enable health " + ref);
  }
  enables.push_back("enable server " + ref);
  for (const std::string& command : enables) {
    answer = run(command);
    Status ok = answer ? haproxy::check_answer(haproxy::Reply::kSilent, command, *answer)
                       : Status(std::unexpected(answer.error()));
    if (!ok) {
      ok.error().message += "; server " + ref + " was added and stays in maintenance";
      return ok;
    }
  }
  return {};
}

Status HaproxyRuntime::set_state(std::string_view backend, std::string_view server, AdminState state) {
  if (auto ok = check_names(backend, server); !ok) {
    return ok;
  }
  const std::string command = "set server " + server_ref(backend, server) + " state " + std::string(to_string(state));
  const auto answer = run(command);
  if (!answer) {
    return std::unexpected(answer.error());
  }
  return haproxy::check_answer(haproxy::Reply::kSilent, command, *answer);
}

Result<std::optional<ServerInfo>> HaproxyRuntime::find_server(std::string_view backend, std::string_view server) {
  if (auto ok = check_names(backend, server); !ok) {
    return std::unexpected(ok.error());
  }
  auto servers = list_servers(backend);
  if (!servers) {
    return std::unexpected(servers.error());
  }
  const auto it = std::ranges::find(*servers, server, &ServerInfo::name);
  if (it == servers->end()) {
    return std::nullopt;
  }
  return std::move(*it);
}

Result<std::vector<ServerInfo>> HaproxyRuntime::list_servers(std::string_view backend) {
  if (auto ok = haproxy::check_identifier(backend, "backend"); !ok) {
    return std::unexpected(ok.error());
  }
  // Every backend and server (-1, types 2|4): selecting the proxy by name
  // would pick a frontend of the same name, a common pattern ("frontend web",
  // "backend web"), and show nothing.
  const std::string command = "show stat -1 6 -1";
  const auto answer = run(command);
  if (!answer) {
    return std::unexpected(answer.error());
  }
  return haproxy::parse_show_stat(command, *answer, backend);
}

Status HaproxyRuntime::delete_server(std::string_view backend, std::string_view server) {
  if (auto ok = check_names(backend, server); !ok) {
    return ok;
  }
  const std::string command = "del server " + server_ref(backend, server);
  const auto answer = run(command);
  if (!answer) {
    return std::unexpected(answer.error());
  }
  return haproxy::check_answer(haproxy::Reply::kDeleteServer, command, *answer);
}

}  // namespace tranche::lb
