#include "agent/health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/spawn.h"

namespace tranche::agent {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxResponseBytes = 1024 * 1024;

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const int left = ms_left(deadline);
    pollfd pfd{fd, events, 0};
    const int r = ::poll(&pfd, 1, left);
    if (r > 0) {
      return true;
    }
    if (r == 0 && left == 0) {
      return false;
    }
    if (r < 0 && errno != EINTR) {
      return true;  // let the following call report the error
    }
  }
}

std::string describe_errno(int err) {
  if (err == ECONNREFUSED) {
    return "connect refused";
  }
  return std::strerror(err);
}

// A non-blocking connect to 127.0.0.1:port; the error is a probe message.
Result<std::unique_ptr<Socket>> connect_loopback(int port, Clock::time_point deadline) {
  if (port <= 0 || port > 65535) {
    return fail(ErrorCode::kInvalid, "invalid port " + std::to_string(port));
  }
  auto sock = std::make_unique<Socket>(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock->get() < 0) {
    const int err = errno;
    return fail(ErrorCode::kInternal, describe_errno(err));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(sock->get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      const int err = errno;
      return fail(ErrorCode::kUnavailable, describe_errno(err));
    }
    if (!wait_for(sock->get(), POLLOUT, deadline)) {
      return fail(ErrorCode::kUnavailable, "timeout");
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(sock->get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      err = errno;
    }
    if (err != 0) {
      return fail(ErrorCode::kUnavailable, describe_errno(err));
    }
  }
  return sock;
}

struct HttpResponse {
  int status = 0;
  std::string headers;  // lower-cased header block, "\r\n"-separated
  std::string body;
};

std::string lower(std::string text) {
  for (char& c : text) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return text;
}

// The value of a header in the lower-cased header block, or nullopt.
std::optional<std::string> header(const std::string& headers, const std::string& name) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t end = headers.find("\r\n", pos);
    if (end == std::string::npos) {
      end = headers.size();
    }
    const std::string_view line(headers.data() + pos, end - pos);
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      std::string_view value = line.substr(name.size() + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
      }
      return std::string(value);
    }
    pos = end + 2;
  }
  return std::nullopt;
}

// Decodes a complete chunked body; nullopt while it is incomplete or malformed.
std::optional<std::string> dechunk(std::string_view data) {
  std::string body;
  size_t pos = 0;
  while (true) {
    const size_t line_end = data.find("\r\n", pos);
    if (line_end == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view size_text = data.substr(pos, line_end - pos);
    if (const size_t semi = size_text.find(';'); semi != std::string_view::npos) {
      size_text = size_text.substr(0, semi);
    }
    size_t size = 0;
    const auto [ptr, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec != std::errc() || ptr == size_text.data()) {
      return std::nullopt;
    }
    pos = line_end + 2;
    if (size == 0) {
      return body;  // trailers, if any, are ignored
    }
    if (data.size() < pos + size + 2) {
      return std::nullopt;
    }
    body.append(data.substr(pos, size));
    pos += size + 2;
  }
}

// GET http://127.0.0.1:port/path with one deadline for everything. With
// `want_body` false, returns once the status line is in.
Result<HttpResponse> http_get(int port, const std::string& path, std::chrono::milliseconds timeout, bool want_body) {
  const auto deadline = Clock::now() + timeout;
  auto sock = connect_loopback(port, deadline);
  if (!sock) {
    return std::unexpected(sock.error());
  }
  const int fd = (*sock)->get();
  const std::string target = path.empty() || path[0] != '/' ? "/" + path : path;
  const std::string request =
      "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nUser-Agent: tranche-agent\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, deadline)) {
        return fail(ErrorCode::kUnavailable, "timeout");
      }
      continue;
    }
    const int err = errno;
    return fail(ErrorCode::kUnavailable, describe_errno(err));
  }

  std::string data;
  HttpResponse response;
  size_t header_end = std::string::npos;
  std::optional<size_t> content_length;
  bool chunked = false;
  char buffer[16 * 1024];
  while (true) {
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t line_end = data.find("\r\n");
        const std::string_view line(data.data(), line_end);
        // "HTTP/1.1 200 OK"
        if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line.find(' ') == std::string_view::npos) {
          return fail(ErrorCode::kUnavailable, "bad response");
        }
        const std::string_view code = line.substr(line.find(' ') + 1, 3);
        const auto [ptr, ec] = std::from_chars(code.data(), code.data() + code.size(), response.status);
        if (ec != std::errc() || ptr != code.data() + 3 || response.status < 100 || response.status > 999) {
          return fail(ErrorCode::kUnavailable, "bad response");
        }
        if (!want_body) {
          return response;
        }
        response.headers = lower(data.substr(line_end + 2, header_end - line_end - 2));
        if (const auto te = header(response.headers, "transfer-encoding");
            te && te->find("chunked") != std::string::npos) {
          chunked = true;
        } else if (const auto cl = header(response.headers, "content-length")) {
          size_t length = 0;
          const auto [p, e] = std::from_chars(cl->data(), cl->data() + cl->size(), length);
          if (e != std::errc() || p != cl->data() + cl->size()) {
            return fail(ErrorCode::kUnavailable, "bad response");
          }
          content_length = length;
        }
      }
    }
    if (header_end != std::string::npos) {
      const std::string_view rest = std::string_view(data).substr(header_end + 4);
      if (content_length && rest.size() >= *content_length) {
        response.body = std::string(rest.substr(0, *content_length));
        return response;
      }
      if (chunked) {
        if (auto body = dechunk(rest)) {
          response.body = std::move(*body);
          return response;
        }
      }
    }
    if (data.size() > kMaxResponseBytes) {
      return fail(ErrorCode::kTooLarge, "response too large");
    }
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      data.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {  // closed by the server
      if (header_end == std::string::npos) {
        return fail(ErrorCode::kUnavailable, data.empty() ? "connection closed without a response" : "bad response");
      }
      if (content_length || chunked) {
        return fail(ErrorCode::kUnavailable, "truncated response");
      }
      response.body = data.substr(header_end + 4);
      return response;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      if (!wait_for(fd, POLLIN, deadline)) {
        return fail(ErrorCode::kUnavailable, "timeout");
      }
      continue;
    }
    const int err = errno;
    return fail(ErrorCode::kUnavailable, describe_errno(err));
  }
}

}  // namespace

ProbeResult probe_http(int port, const std::string& path, std::chrono::milliseconds timeout) {
  auto response = http_get(port, path, timeout, false);
  if (!response) {
    return ProbeResult{false, response.error().message};
  }
  const bool ok = response->status >= 200 && response->status < 400;
  return ProbeResult{ok, "status " + std::to_string(response->status)};
}

ProbeResult probe_tcp(int port, std::chrono::milliseconds timeout) {
  auto sock = connect_loopback(port, Clock::now() + timeout);
  if (!sock) {
    return ProbeResult{false, sock.error().message};
  }
  return ProbeResult{true, "connected"};
}

ProbeResult probe_exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  detail::SpawnRequest request;
  request.argv = argv;
  request.env = detail::base_environment();
  request.new_session = true;  // stdout/stderr: /dev/null
  auto pid = detail::spawn(request);
  if (!pid) {
    return ProbeResult{false, "cannot start: " + pid.error().message};
  }
  const auto waited = detail::wait_or_kill(*pid, timeout);
  if (waited.timed_out) {
    return ProbeResult{false, "timeout"};
  }
  if (waited.lost) {
    return ProbeResult{false, "exit status lost"};
  }
  if (WIFEXITED(waited.status)) {
    const int code = WEXITSTATUS(waited.status);
    return ProbeResult{code == 0, "exit " + std::to_string(code)};
  }
  return ProbeResult{false,
                     "killed by signal " + std::to_string(WIFSIGNALED(waited.status) ? WTERMSIG(waited.status) : 0)};
}

std::optional<Stats> read_stats(int port, const std::string& path, std::chrono::milliseconds timeout) {
  auto response = http_get(port, path, timeout, true);
  if (!response || response->status < 200 || response->status >= 300) {
    return std::nullopt;
  }
  const auto doc = nlohmann::json::parse(response->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return std::nullopt;
  }
  const auto load = doc.find("load");
  if (load == doc.end() || !load->is_number()) {
    return std::nullopt;
  }
  Stats stats;
  stats.load = load->get<double>();
  if (!std::isfinite(stats.load)) {
    return std::nullopt;
  }
  if (const auto in_flight = doc.find("requestsInFlight"); in_flight != doc.end() && in_flight->is_number()) {
    if (in_flight->is_number_float()) {
      const double value = in_flight->get<double>();
      if (std::isfinite(value) && std::fabs(value) < 9e18) {
        stats.requests_in_flight = std::llround(value);
      }
    } else if (in_flight->is_number_unsigned()) {
      stats.requests_in_flight = static_cast<int64_t>(std::min<uint64_t>(in_flight->get<uint64_t>(), INT64_MAX));
    } else {
      stats.requests_in_flight = in_flight->get<int64_t>();
    }
  }
  return stats;
}

double host_load() {
  std::ifstream file("/proc/loadavg");
  double load = 0;
  if (!(file >> load)) {
    return 0;
  }
  const unsigned cores = std::thread::hardware_concurrency();
  return load / (cores == 0 ? 1 : cores);
}

}  // namespace tranche::agent
