#include "common/server_url.h"

#include <arpa/inet.h>

namespace tranche {

namespace {

std::string bracketed(std::string_view host) {
  return host.find(':') == std::string_view::npos ? std::string(host) : "[" + std::string(host) + "]";
}

}  // namespace

bool is_ip_address(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

std::string ServerUrl::authority() const { return bracketed(host) + ":" + port; }

Result<ServerUrl> parse_server_url(std::string_view url) {
  ServerUrl out;
  out.text = std::string(url);
  std::string_view rest;
  if (url.starts_with("https://")) {
    out.tls = true;
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return fail(ErrorCode::kInvalid,
                "server must look like http://HOST:PORT or https://HOST:PORT, got '" + out.text + "'", "server");
  }
  while (!rest.empty() && rest.back() == '/') {
    rest.remove_suffix(1);
  }
  std::string_view port;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return fail(ErrorCode::kInvalid, "unclosed '[' in server '" + out.text + "'", "server");
    }
    out.host = std::string(rest.substr(1, close - 1));
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) {
      return fail(ErrorCode::kInvalid, "expected ':PORT' after ']' in server '" + out.text + "'", "server");
    }
    port = after.empty() ? after : after.substr(1);
  } else {
    // An unbracketed IPv6 address (as controllers wrote it before) keeps
    // working: the port follows the last colon.
    const size_t colon = rest.rfind(':');
    out.host = std::string(rest.substr(0, colon));
    port = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  if (out.host.empty()) {
    return fail(ErrorCode::kInvalid, "no host in server '" + out.text + "'", "server");
  }
  if (port.find('/') != std::string_view::npos || out.host.find('/') != std::string::npos) {
    return fail(ErrorCode::kInvalid, "server must not have a path, got '" + out.text + "'", "server");
  }
  out.port = port.empty() ? (out.tls ? "443" : "80") : std::string(port);
  return out;
}

std::string format_server_url(bool tls, std::string_view host, unsigned short port) {
  return std::string(tls ? "https://" : "http://") + bracketed(host) + ":" + std::to_string(port);
}

}  // namespace tranche
