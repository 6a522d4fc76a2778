// The command line of tranche-agent-simulator: durations ("250ms", "2s"),
// rates ("500/s"), a join token read from its file, the usage text, and
// parse_options, which checks every flag and splits --server into host and
// port. What it returns is all the simulator knows of its command line.

#include "simulator_options.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

namespace tranche::sim {

namespace {

// "250ms", "2s", "1.5m", "1h"; a bare number is seconds.
std::optional<milliseconds> parse_duration(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string unit = text.substr(used);
  double factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    return std::nullopt;
  }
  if (value < 0) {
    return std::nullopt;
  }
  return milliseconds(static_cast<int64_t>(value * factor));
}

// "500/s", "500", "30000/m".
std::optional<double> parse_rate(const std::string& text) {
  const size_t slash = text.find('/');
  double value = 0;
  try {
    value = std::stod(text.substr(0, slash));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  double per_second = value;
  if (slash != std::string::npos) {
    const std::string unit = text.substr(slash + 1);
    if (unit == "m") {
      per_second = value / 60;
    } else if (unit != "s") {
      return std::nullopt;
    }
  }
  return per_second > 0 ? std::optional(per_second) : std::nullopt;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

const char* kUsage =
    "usage: tranche-agent-simulator --server http://HOST:PORT (--join-token T | --join-token-file F) --hosts N\n"
    "         [--members-per-host M] [--duration 60s] [--connect-rate 500/s] [--threads 2]\n"
    "         [--start-delay 0ms] [--update-time 0ms] [--maintenance-time 0ms] [--slots 10000] [--progress 10s]\n"
    "         [--stats-file PATH] [--update-trace PATH] [--source-addresses K] [--kill-hosts K [--kill-after D] "
    "[--kill-mode close|silent] [--kill-file PATH]]\n"
    "Simulates N agents (one WebSocket each) and the members the controller places on them.\n"
    "With --kill-hosts, K of them die abruptly after --kill-after, or on SIGUSR1.\n";

}  // namespace

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  auto bad = [](const std::string& message) {
    std::fprintf(stderr, "tranche-agent-simulator: %s\n%s", message.c_str(), kUsage);
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      return bad(flag + " needs a value");
    }
    const std::string value = argv[++i];
    try {
      if (flag == "--server") {
        o.server = value;
      } else if (flag == "--stats-file") {
        o.stats_file = value;
      } else if (flag == "--update-trace") {
        o.update_trace = value;
      } else if (flag == "--source-addresses") {
        o.source_addresses = std::stoi(value);
      } else if (flag == "--kill-file") {
        o.kill_file = value;
      } else if (flag == "--kill-hosts") {
        o.kill_hosts = std::stoi(value);
      } else if (flag == "--kill-mode") {
        if (value != "close" && value != "silent") return bad("--kill-mode is close or silent, got '" + value + "'");
        o.kill_mode = value;
      } else if (flag == "--kill-after") {
        auto d = parse_duration(value);
        if (!d) return bad("bad --kill-after '" + value + "' (e.g. 10s)");
        o.kill_after = *d;
      } else if (flag == "--join-token") {
        o.join_token = value;
      } else if (flag == "--join-token-file") {
        o.join_token = read_first_line(value);
      } else if (flag == "--hosts") {
        o.hosts = std::stoi(value);
      } else if (flag == "--members-per-host") {
        o.members_per_host = std::stoi(value);
      } else if (flag == "--threads") {
        o.threads = std::stoi(value);
      } else if (flag == "--slots") {
        o.slots = std::stoll(value);
      } else if (flag == "--connect-rate") {
        auto r = parse_rate(value);
        if (!r) return bad("bad --connect-rate '" + value + "' (e.g. 500/s)");
        o.connect_rate = *r;
      } else if (flag == "--duration" || flag == "--start-delay" || flag == "--update-time" ||
                 flag == "--maintenance-time" || flag == "--progress") {
        auto d = parse_duration(value);
        if (!d) return bad("bad " + flag + " '" + value + "' (e.g. 60s, 250ms)");
        (flag == "--duration"           ? o.duration
         : flag == "--start-delay"      ? o.start_delay
         : flag == "--update-time"      ? o.update_time
         : flag == "--maintenance-time" ? o.maintenance_time
                                        : o.progress) = *d;
      } else {
        return bad("unknown option " + flag);
      }
    } catch (const std::exception&) {
      return bad("bad value for " + flag + ": '" + value + "'");
    }
  }
  if (o.server.empty() || o.join_token.empty() || o.hosts <= 0) {
    return bad("--server, a join token and --hosts N (N >= 1) are required");
  }
  if (o.threads < 1 || o.members_per_host < 0 || o.slots < 1) {
    return bad("--threads and --slots must be at least 1, --members-per-host at least 0");
  }
  if (o.source_addresses < 0 || o.source_addresses > 250) {
    return bad("--source-addresses is between 0 and 250 (127.0.0.2 to 127.0.0.251)");
  }
  if (o.kill_hosts < 0 || o.kill_hosts > o.hosts) {
    return bad("--kill-hosts must be between 0 and --hosts");
  }
  const std::string scheme = "http://";
  if (!o.server.starts_with(scheme)) {
    return bad("--server must be http://HOST:PORT, got '" + o.server + "'");
  }
  std::string hostport = o.server.substr(scheme.size());
  while (!hostport.empty() && hostport.back() == '/') hostport.pop_back();
  const size_t colon = hostport.rfind(':');
  o.host = hostport.substr(0, colon);
  o.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  return o;
}

}  // namespace tranche::sim
