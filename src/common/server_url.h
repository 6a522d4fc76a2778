#pragma once
// A controller's address as clients and agents are given it:
// "http://HOST[:PORT]" or, over TLS, "https://HOST[:PORT]"; HOST is a name,
// an IPv4 address or a bracketed IPv6 address ("https://[::1]:7468").

#include <string>
#include <string_view>

#include "common/error.h"

namespace tranche {

struct ServerUrl {
  bool tls = false;
  std::string host;  // without brackets: what name checks and resolvers take
  std::string port;
  std::string text;  // as given, for messages

  // "HOST:PORT", IPv6 bracketed: what a Host header carries.
  std::string authority() const;
};

Result<ServerUrl> parse_server_url(std::string_view url);

// Whether `host` is an IPv4 or IPv6 address rather than a name.
bool is_ip_address(const std::string& host);

// The URL a controller serving on HOST:PORT is reached at.
std::string format_server_url(bool tls, std::string_view host, unsigned short port);

}  // namespace tranche
