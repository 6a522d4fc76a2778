// tranche-api-rate: an open-loop HTTP load generator for quality.md P4
// ("p99 of GET /applications/{app} and GET /members?app=&cluster= at a
// fixed 2,000 req/s"). Request i is due at start + i / rate whatever
// happened to the ones before it, and its latency runs from that due time,
// not from when a connection was free to send it: a closed-loop generator
// (wrk) sends less when the server slows down, so its percentiles leave out
// the very waits they should show ("coordinated omission").
//
//   tranche-api-rate --url http://127.0.0.1:PORT --path /api/v1/... [--path ...]
//                    [--rate 2000] [--duration 30s] [--warmup 5s]
//                    [--token-file F] [--connections 64] [--timeout 5s]
//                    [--accept-encoding gzip]
//
// Paths are asked in turn. Requests wait for one of at most --connections
// keep-alive connections (opened as needed); the wait counts in their
// latency, and one that waited longer than --timeout is not sent at all.
// Loopback only. Prints one JSON line {"bench":"api-rate", ...}: per path
// and overall, the count, the answers that were not 200 (by status, "io" for
// a failed connection or a timeout, "not sent"), the latency percentiles in
// ms of the requests due after the warm-up, and the answers' mean body size
// as sent and how many came gzip-compressed (--accept-encoding asks for it,
// as browsers and `curl --compressed` do; the body is not decompressed).

#include <utility>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

struct Options {
  std::string host;  // a loopback IPv4 address
  unsigned short port = 0;
  std::vector<std::string> paths;
  double rate = 2000;
  Clock::duration duration = std::chrono::seconds(30);
  Clock::duration warmup = std::chrono::seconds(5);
  Clock::duration timeout = std::chrono::seconds(5);
  std::string token;
  size_t connections = 64;
  std::string accept_encoding;  // empty: no Accept-Encoding field
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "tranche-api-rate: %s\n"
               "usage: tranche-api-rate --url http://127.0.0.1:PORT --path PATH [--path PATH ...] [--rate R]\n"
               "       [--duration D] [--warmup D] [--timeout D] [--token-file F] [--connections N]\n"
               "       [--accept-encoding CODINGS]\n",
               message.c_str());
  std::exit(2);
}

// "30s", "500ms", "2m".
std::optional<Clock::duration> parse_duration(const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string unit(end, text.data() + text.size());
  if (ec != std::errc() || value < 0) {
    return std::nullopt;
  }
  const double ms = unit == "ms" ? value : unit == "s" ? value * 1e3 : unit == "m" ? value * 60e3 : -1;
  if (ms < 0) {
    return std::nullopt;
  }
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      usage_error(flag + " needs a value");
    }
    const std::string value = argv[++i];
    auto duration = [&] {
      auto d = parse_duration(value);
      if (!d) {
        usage_error(flag + ": '" + value + "' is not a duration such as 30s or 500ms");
      }
      return *d;
    };
    if (flag == "--url") {
      const std::string prefix = "http://127.";
      const auto colon = value.rfind(':');
      if (!value.starts_with(prefix) || colon < prefix.size()) {
        usage_error("--url: only http://127.x.x.x:PORT (loopback) is a target, got '" + value + "'");
      }
      o.host = value.substr(7, colon - 7);
      o.port = static_cast<unsigned short>(std::stoi(value.substr(colon + 1)));
    } else if (flag == "--path") {
      if (!value.starts_with("/")) {
        usage_error("--path: '" + value + "' does not start with /");
      }
      o.paths.push_back(value);
    } else if (flag == "--rate") {
      o.rate = std::stod(value);
      if (o.rate <= 0 || o.rate > 100000) {
        usage_error("--rate: between 0 and 100000 requests per second");
      }
    } else if (flag == "--duration") {
      o.duration = duration();
    } else if (flag == "--warmup") {
      o.warmup = duration();
    } else if (flag == "--timeout") {
      o.timeout = duration();
    } else if (flag == "--connections") {
      o.connections = std::stoul(value);
      if (o.connections < 1 || o.connections > 1000) {
        usage_error("--connections: between 1 and 1000");
      }
    } else if (flag == "--accept-encoding") {
      o.accept_encoding = value;
    } else if (flag == "--token-file") {
      std::ifstream in(value);
      if (!std::getline(in, o.token)) {
        usage_error("--token-file: cannot read a token from '" + value + "'");
      }
    } else {
      usage_error("unknown option " + flag);
    }
  }
  if (o.port == 0 || o.paths.empty()) {
    usage_error("--url and at least one --path are required");
  }
  if (o.warmup >= o.duration) {
    usage_error("--warmup must be shorter than --duration");
  }
  return o;
}

struct Connection {
  explicit Connection(asio::io_context& ioc) : stream(ioc) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool open = false;
};

struct Due {
  Clock::time_point at;
  size_t path;
};

struct PathTally {
  std::vector<double> latencies_ms;  // of the requests due after the warm-up
  std::map<std::string, size_t> failures;
  size_t count = 0;
  size_t answered = 0;  // with a 200
  size_t body_bytes = 0;  // of those, as sent
  size_t gzipped = 0;     // of those, with Content-Encoding: gzip
};

class FixedRate {
 public:
  FixedRate(asio::io_context& ioc, Options options)
      : ioc_(ioc),
        options_(std::move(options)),
        endpoint_(asio::ip::make_address(options_.host), options_.port),
        tallies_(options_.paths.size()) {}

  asio::awaitable<void> run() {
    start_ = Clock::now();
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / options_.rate));
    asio::steady_timer pacer(ioc_);
    for (uint64_t i = 0;; ++i) {
      const Due due{start_ + period * static_cast<int64_t>(i), static_cast<size_t>(i % options_.paths.size())};
      if (due.at >= start_ + options_.duration) {
        break;
      }
      pacer.expires_at(due.at);
      co_await pacer.async_wait(asio::use_awaitable);
      max_lag_ = std::max(max_lag_, Clock::now() - due.at);
      waiting_.push_back(due);
      start_waiting();
    }
  }

  json report() const {
    json paths = json::array();
    PathTally all;
    for (size_t p = 0; p < tallies_.size(); ++p) {
      paths.push_back(summary(tallies_[p]));
      paths.back()["path"] = options_.paths[p];
      all.count += tallies_[p].count;
      all.latencies_ms.insert(all.latencies_ms.end(), tallies_[p].latencies_ms.begin(),
                              tallies_[p].latencies_ms.end());
      for (const auto& [kind, n] : tallies_[p].failures) {
        all.failures[kind] += n;
      }
      all.answered += tallies_[p].answered;
      all.body_bytes += tallies_[p].body_bytes;
      all.gzipped += tallies_[p].gzipped;
    }
    const double seconds = std::chrono::duration<double>(options_.duration - options_.warmup).count();
    json out = {{"bench", "api-rate"},
                {"rate", options_.rate},
                {"accept_encoding", options_.accept_encoding},
                {"measured_seconds", seconds},
                {"connections_opened", opened_},
                {"max_schedule_lag_ms", std::chrono::duration<double, std::milli>(max_lag_).count()},
                {"overall", summary(all)},
                {"paths", paths}};
    out["unanswered"] = in_flight_ + waiting_.size();
    return out;
  }

  bool idle() const { return in_flight_ == 0 && waiting_.empty(); }

 private:
  static json summary(PathTally t) {
    std::sort(t.latencies_ms.begin(), t.latencies_ms.end());
    auto q = [&](double p) {
      return t.latencies_ms.empty() ? 0.0 : t.latencies_ms[static_cast<size_t>(p * (t.latencies_ms.size() - 1))];
    };
    return {{"count", t.count},
            {"failures", t.failures},
            {"p50_ms", q(0.5)},
            {"p90_ms", q(0.9)},
            {"p99_ms", q(0.99)},
            {"p999_ms", q(0.999)},
            {"max_ms", q(1.0)},
            {"body_bytes_mean", t.answered == 0 ? 0 : t.body_bytes / t.answered},
            {"gzipped", t.gzipped}};
  }

  void record(const Due& due, Clock::time_point done, const std::string& failure,
              const http::response<http::string_body>* answer = nullptr) {
    if (due.at < start_ + options_.warmup) {
      return;
    }
    PathTally& t = tallies_[due.path];
    ++t.count;
    t.latencies_ms.push_back(std::chrono::duration<double, std::milli>(done - due.at).count());
    if (!failure.empty()) {
      ++t.failures[failure];
    } else if (answer != nullptr) {
      ++t.answered;
      t.body_bytes += answer->body().size();
      t.gzipped += (*answer)[http::field::content_encoding] == "gzip" ? 1 : 0;
    }
  }

  // Hands the requests that are due to free connections, opening new ones
  // up to the limit; the rest wait for one to come back. One that waited
  // longer than the timeout is not sent: a failure ("not sent"), so that an
  // overloaded server ends the run on time instead of an ever longer queue.
  void start_waiting() {
    const auto now = Clock::now();
    while (!waiting_.empty() && now - waiting_.front().at > options_.timeout) {
      record(waiting_.front(), now, "not sent");
      waiting_.pop_front();
    }
    while (!waiting_.empty()) {
      std::unique_ptr<Connection> conn;
      if (!free_.empty()) {
        conn = std::move(free_.back());
        free_.pop_back();
      } else if (opened_ < options_.connections) {
        conn = std::make_unique<Connection>(ioc_);
        ++opened_;
      } else {
        return;
      }
      const Due due = waiting_.front();
      waiting_.pop_front();
      ++in_flight_;
      asio::co_spawn(ioc_, exchange(std::move(conn), due), asio::detached);
    }
  }

  asio::awaitable<void> exchange(std::unique_ptr<Connection> conn, Due due) {
    beast::error_code ec;
    conn->stream.expires_after(options_.timeout);
    if (!conn->open) {
      conn->buffer.clear();
      co_await conn->stream.async_connect(endpoint_, asio::redirect_error(asio::use_awaitable, ec));
      conn->open = !ec;
    }
    http::response<http::string_body> res;
    if (!ec) {
      http::request<http::empty_body> req{http::verb::get, options_.paths[due.path], 11};
      req.set(http::field::host, options_.host + ":" + std::to_string(options_.port));
      req.set(http::field::user_agent, "tranche-api-rate");
      if (!options_.token.empty()) {
        req.set(http::field::authorization, "Bearer " + options_.token);
      }
      if (!options_.accept_encoding.empty()) {
        req.set(http::field::accept_encoding, options_.accept_encoding);
      }
      req.keep_alive(true);
      co_await http::async_write(conn->stream, req, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec) {
      co_await http::async_read(conn->stream, conn->buffer, res, asio::redirect_error(asio::use_awaitable, ec));
    }
    record(due, Clock::now(), ec ? "io" : res.result_int() != 200 ? std::to_string(res.result_int()) : "", &res);
    if (ec || !res.keep_alive()) {
      beast::error_code ignored;
      conn->stream.socket().close(ignored);
      conn->open = false;
    } else {
      conn->stream.expires_never();
    }
    --in_flight_;
    free_.push_back(std::move(conn));
    start_waiting();
  }

  asio::io_context& ioc_;
  const Options options_;
  const tcp::endpoint endpoint_;
  Clock::time_point start_;
  std::vector<PathTally> tallies_;
  std::deque<Due> waiting_;
  std::vector<std::unique_ptr<Connection>> free_;
  size_t opened_ = 0;
  size_t in_flight_ = 0;
  Clock::duration max_lag_{};
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  asio::io_context ioc(1);
  FixedRate generator(ioc, options);
  bool scheduled = false;
  asio::co_spawn(ioc, generator.run(), [&](std::exception_ptr error) {
    if (error) {
      std::rethrow_exception(error);
    }
    scheduled = true;
  });
  // Runs until every request is scheduled and answered, or timed out.
  while (!(scheduled && generator.idle()) && ioc.run_one() > 0) {
  }
  std::printf("%s\n", generator.report().dump().c_str());
  return 0;
}
