#include "options.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "common/time_format.h"

namespace tranche::loadgen {

const char* const kUsage =
    "usage: tranche-loadgen --url http://127.0.0.1:PORT/[PATH] [options]\n"
    "  --connections N            keep-alive connections (default 4; 0: none)\n"
    "  --keep-alive-rate R/s      requests per second on each of them (default 50/s)\n"
    "  --new-connection-rate R/s  requests per second each on a fresh connection (default 10/s; 0: none)\n"
    "  --slow-rate R/s            requests per second to --slow-path, each on a fresh connection (default 0)\n"
    "  --slow-path PATH           what they ask for (default /slow?ms=1000)\n"
    "  --phase-file PATH          count requests under the phase its first line names when they start\n"
    "  --duration D               stop after D at the latest (default 60s, at most 1h)\n"
    "  --stop-file PATH           stop as soon as PATH exists (also on SIGINT/SIGTERM)\n"
    "  --timeout D                per request, connect included (default 2s)\n"
    "  --interval D               width of the version-share time buckets (default 1s, at least 100ms)\n"
    "  --json                     also print one JSON line {\"bench\":\"loadgen\", ...}\n";

namespace {

Status invalid(std::string message, std::string field) {
  return fail(ErrorCode::kInvalid, std::move(message), std::move(field));
}

bool is_loopback_v4(const std::string& host) {
  in_addr addr{};
  return ::inet_pton(AF_INET, host.c_str(), &addr) == 1 && (ntohl(addr.s_addr) >> 24) == 127;
}

std::optional<long> parse_long(std::string_view s, long lo, long hi) {
  long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

Result<Target> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return fail(ErrorCode::kInvalid, "the URL must start with http:// (got '" + std::string(url) + "')", "--url");
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  Target target;
  if (slash != std::string_view::npos) {
    target.path = std::string(rest.substr(slash));
  }
  target.host_header = std::string(authority);

  std::string_view host = authority;
  std::optional<std::string_view> port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return fail(ErrorCode::kInvalid, "bad host in '" + std::string(url) + "'", "--url");
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) {
        return fail(ErrorCode::kInvalid, "bad host in '" + std::string(url) + "'", "--url");
      }
      port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (port) {
    auto p = parse_long(*port, 1, 65535);
    if (!p) {
      return fail(ErrorCode::kInvalid, "bad port in '" + std::string(url) + "'", "--url");
    }
    target.port = static_cast<uint16_t>(*p);
  }

  const std::string h(host);
  if (h == "localhost" || is_loopback_v4(h)) {
    target.address = h == "localhost" ? "127.0.0.1" : h;
  } else if (h == "::1" && authority.starts_with('[')) {
    target.address = h;
  } else {
    return fail(ErrorCode::kInvalid,
                "refusing host '" + h + "': tranche-loadgen only loads loopback (127.0.0.0/8, localhost, [::1])",
                "--url");
  }
  return target;
}

Result<double> parse_rate(std::string_view text) {
  std::string_view number = text;
  if (number.ends_with("/s")) {
    number.remove_suffix(2);
  }
  double rate = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), rate);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || !std::isfinite(rate) || rate < 0 ||
      rate > kMaxRate) {
    return fail(ErrorCode::kInvalid, "bad rate '" + std::string(text) + "' (expected R/s with 0 <= R <= 10000)");
  }
  return rate;
}

std::optional<std::string> phase_label(std::string_view file_content) {
  std::string_view line = file_content.substr(0, file_content.find('\n'));
  constexpr std::string_view kBlanks = " \t\r";
  const size_t first = line.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  line = line.substr(first, line.find_last_not_of(kBlanks) - first + 1);
  const bool usable = line.size() <= kMaxPhaseLength && std::all_of(line.begin(), line.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                      });
  if (!usable) {
    return std::nullopt;
  }
  return std::string(line);
}

Result<Options> parse_options(const std::vector<std::string_view>& args) {
  Options opts;
  bool have_url = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name == "--help" || name == "-h") {
      opts.help = true;
      return opts;
    }
    if (name == "--json") {
      if (value) {
        return fail(ErrorCode::kInvalid, "--json takes no value", "--json");
      }
      opts.json = true;
      continue;
    }
    if (name != "--url" && name != "--connections" && name != "--keep-alive-rate" && name != "--new-connection-rate" &&
        name != "--slow-rate" && name != "--slow-path" && name != "--phase-file" && name != "--duration" &&
        name != "--stop-file" && name != "--timeout" && name != "--interval") {
      return fail(ErrorCode::kInvalid, "unknown argument '" + std::string(arg) + "'");
    }
    const std::string field(name);
    if (!value) {
      if (i + 1 >= args.size()) {
        return fail(ErrorCode::kInvalid, "missing value", field);
      }
      value = args[++i];
    }

    Status status;
    if (name == "--url") {
      auto target = parse_url(*value);
      if (!target) {
        return std::unexpected(target.error());
      }
      opts.target = std::move(*target);
      have_url = true;
    } else if (name == "--connections") {
      auto n = parse_long(*value, 0, kMaxConnections);
      if (!n) {
        status = invalid("expected 0..1000, got '" + std::string(*value) + "'", field);
      } else {
        opts.connections = static_cast<int>(*n);
      }
    } else if (name == "--keep-alive-rate" || name == "--new-connection-rate" || name == "--slow-rate") {
      auto rate = parse_rate(*value);
      if (!rate) {
        status = invalid(rate.error().message, field);
      } else if (name == "--keep-alive-rate") {
        if (*rate == 0) {
          // Back to back on loopback would take every core the controller needs.
          status = invalid("must be above 0 (use --connections 0 for none)", field);
        }
        opts.keep_alive_rate = *rate;
      } else if (name == "--new-connection-rate") {
        opts.new_connection_rate = *rate;
      } else {
        opts.slow_rate = *rate;
      }
    } else if (name == "--slow-path") {
      if (!value->starts_with('/')) {
        status = invalid("must start with / (got '" + std::string(*value) + "')", field);
      }
      opts.slow_path = std::string(*value);
    } else if (name == "--stop-file" || name == "--phase-file") {
      if (value->empty()) {
        status = invalid("empty path", field);
      }
      (name == "--stop-file" ? opts.stop_file : opts.phase_file) = std::string(*value);
    } else {
      auto d = parse_duration(*value);
      if (!d) {
        status = invalid(d.error().message, field);
      } else if (name == "--duration") {
        if (*d > kMaxDuration) {
          status = invalid("at most 1h", field);
        }
        opts.duration = *d;
      } else if (name == "--timeout") {
        opts.timeout = *d;
      } else {
        if (*d < kMinInterval) {
          status = invalid("at least 100ms", field);
        }
        opts.interval = *d;
      }
    }
    if (!status) {
      return std::unexpected(status.error());
    }
  }
  if (!have_url) {
    return fail(ErrorCode::kInvalid, "--url is required", "--url");
  }
  if (opts.connections == 0 && opts.new_connection_rate == 0 && opts.slow_rate == 0) {
    return fail(ErrorCode::kInvalid, "nothing to send: --connections 0, --new-connection-rate 0 and --slow-rate 0");
  }
  return opts;
}

}  // namespace tranche::loadgen
