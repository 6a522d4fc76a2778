// tranche-hello: the sample workload of Tranche.
//
// A small HTTP/1.1 server used by the examples, the e2e tests and the
// zero-downtime demo (interfaces.md, "Sample workload"):
//
//   tranche-hello --port P [--host ADDR] [--start-delay-ms N]
//
//   GET  /                      200 {"version": $VERSION, "member": $TRANCHE_MEMBER}
//   GET  /healthz               200 "ok", or 500 while unhealthy
//                               (starts unhealthy when HELLO_HEALTHY=false)
//   POST /admin/health?ok=0|1   sets health
//   POST /admin/load?value=X    sets the reported load (X >= 0; else 400)
//   GET  /admin/load            {"load": X, "requestsInFlight": N}; N counts the
//                               requests being handled, NOT counting this one
//   GET  /slow?ms=N             answers after N ms (0..60000), to test draining:
//                               {"sleptMs": N, "version": ..., "member": ...}
//
// It binds only after --start-delay-ms. On SIGTERM or SIGINT it closes the
// listening socket, closes idle keep-alive connections, lets every connection
// finish the request it is handling (answered with "Connection: close") and
// exits 0 once none is left, or after at most 10 s (a second signal ends the
// wait at once).
//
// Boost.Asio + Beast with C++20 coroutines on a single-threaded io_context:
// all state below is touched by that one thread only, so it needs no locks.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using namespace std::chrono_literals;

constexpr auto kDrainTimeout = 10s;
constexpr long kMaxSlowMs = 60'000;
constexpr std::uint64_t kBodyLimit = 1 << 20;

// ---- command line ---------------------------------------------------------

struct Options {
  asio::ip::address host = asio::ip::make_address("127.0.0.1");
  unsigned short port = 0;
  long start_delay_ms = 0;
};

constexpr const char* kUsage = "usage: tranche-hello --port P [--host ADDR] [--start-delay-ms N]\n";

std::optional<long> parse_long(std::string_view s, long lo, long hi) {
  long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
  return v;
}

// Accepts "--name value" and "--name=value". Returns an error message, or
// nothing when the options are valid.
std::optional<std::string> parse_args(int argc, char** argv, Options& opts) {
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name != "--port" && name != "--host" && name != "--start-delay-ms") {
      return "unknown argument '" + std::string(arg) + "'";
    }
    if (!value) {
      if (i + 1 >= argc) return "missing value for " + std::string(name);
      value = argv[++i];
    }
    if (name == "--port") {
      auto p = parse_long(*value, 0, 65535);
      if (!p) return "invalid port '" + std::string(*value) + "'";
      opts.port = static_cast<unsigned short>(*p);
      have_port = true;
    } else if (name == "--host") {
      error_code ec;
      opts.host = asio::ip::make_address(std::string(*value), ec);
      if (ec) return "invalid host address '" + std::string(*value) + "'";
    } else {
      auto d = parse_long(*value, 0, 24L * 3600 * 1000);
      if (!d) return "invalid --start-delay-ms '" + std::string(*value) + "'";
      opts.start_delay_ms = *d;
    }
  }
  if (!have_port) return "--port is required";
  return std::nullopt;
}

// ---- HTTP helpers ---------------------------------------------------------

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Value of `key` in the query string ("a=1&b=2"); no percent-decoding, the
// values this server takes are plain numbers.
std::optional<std::string_view> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return std::nullopt;
}

Response make_response(http::status status, std::string body, beast::string_view content_type = "text/plain") {
  Response res{status, 11};
  res.set(http::field::server, "tranche-hello");
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

Response json_response(const nlohmann::ordered_json& j, http::status status = http::status::ok) {
  return make_response(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

Response error_response(http::status status, std::string_view message) {
  return json_response({{"error", message}}, status);
}

// Completion handler for co_spawn: logs what a coroutine threw.
auto log_exception(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "tranche-hello: %s: %s\n", what, ex.what());
    }
  };
}

// ---- server ---------------------------------------------------------------

struct Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  bool idle = false;  // waiting for the first byte of its next request
};

class Server {
 public:
  Server(asio::io_context& ioc, Options opts)
      : ioc_(ioc),
        opts_(opts),
        version_(env_or_empty("VERSION")),
        member_(env_or_empty("TRANCHE_MEMBER")),
        name_(version_.empty() ? "tranche-hello" : "tranche-hello " + version_),
        healthy_(env_or_empty("HELLO_HEALTHY") != "false"),
        acceptor_(ioc),
        signals_(ioc, SIGTERM, SIGINT),
        start_timer_(ioc),
        drain_deadline_(ioc) {}

  void start() {
    wait_for_signal();
    asio::co_spawn(ioc_, listen_and_accept(), log_exception("acceptor"));
  }

  // Called after io_context::run() returns; gives the exit code.
  int finish() {
    if (exit_code_ == 0) {
      std::fprintf(stderr, "%s stopped (served %llu requests)\n", name_.c_str(),
                   static_cast<unsigned long long>(served_));
    }
    return exit_code_;
  }

  // True when the drain was cut short: coroutines may still be suspended and
  // must not be destroyed after this object, so main() exits at once.
  bool forced() const { return forced_; }

 private:
  asio::awaitable<void> listen_and_accept() {
    if (opts_.start_delay_ms > 0) {
      error_code ec;
      start_timer_.expires_after(std::chrono::milliseconds(opts_.start_delay_ms));
      co_await start_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (stopping_) co_return;

    tcp::endpoint endpoint(opts_.host, opts_.port);
    error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      std::fprintf(stderr, "tranche-hello: cannot listen on %s:%u: %s\n", opts_.host.to_string().c_str(), opts_.port,
                   ec.message().c_str());
      exit_code_ = 1;
      acceptor_.close(ec);
      signals_.cancel();
      co_return;
    }
    auto local = acceptor_.local_endpoint(ec);
    std::fprintf(stderr, "%s listening on %s:%u\n", name_.c_str(), local.address().to_string().c_str(), local.port());

    while (acceptor_.is_open()) {
      tcp::socket socket(ioc_);
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
        // Out of file descriptors or similar: back off a little, keep going.
        std::fprintf(stderr, "tranche-hello: accept: %s\n", ec.message().c_str());
        asio::steady_timer backoff(ioc_, 50ms);
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto conn = std::make_shared<Connection>(std::move(socket));
      connections_.insert(conn);
      asio::co_spawn(ioc_, serve(conn), log_exception("connection"));
    }
    maybe_finish();
  }

  asio::awaitable<void> serve(std::shared_ptr<Connection> conn) {
    // Whatever happens, the connection leaves the set when this ends.
    struct Forget {
      Server* server;
      std::shared_ptr<Connection> conn;
      ~Forget() {
        error_code ignored;
        conn->socket.close(ignored);
        server->connections_.erase(conn);
        server->maybe_finish();
      }
    } forget{this, conn};

    tcp::socket& socket = conn->socket;
    beast::flat_buffer buffer;
    for (;;) {
      error_code ec;
      if (buffer.size() == 0) {
        // Idle between requests. Shutdown cancels this wait unless bytes of
        // a request have already arrived.
        if (stopping_ && socket.available(ec) == 0) break;
        conn->idle = true;
        co_await socket.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
        conn->idle = false;
        if (ec) break;
      }

      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      co_await http::async_read(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::end_of_stream) break;
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
          // Malformed request: say so, then close.
          auto res = error_response(http::status::bad_request, ec.message());
          res.keep_alive(false);
          res.prepare_payload();
          co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
        }
        break;
      }
      Request req = parser.release();

      ++in_flight_;
      struct Done {
        int& n;
        ~Done() { --n; }
      } done{in_flight_};

      Response res = co_await handle(req);
      bool keep_alive = req.keep_alive() && !stopping_;
      res.version(req.version());
      res.keep_alive(keep_alive);
      res.prepare_payload();
      co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
      ++served_;
      if (ec || !keep_alive) break;
    }
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<Response> handle(const Request& req) {
    std::string_view target(req.target().data(), req.target().size());
    auto question = target.find('?');
    std::string_view path = target.substr(0, question);
    std::string_view query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
    auto method = req.method();
    auto allow = [](http::verb v) {
      auto res = error_response(http::status::method_not_allowed, "method not allowed");
      res.set(http::field::allow, http::to_string(v));
      return res;
    };

    if (path == "/") {
      if (method != http::verb::get) co_return allow(http::verb::get);
      co_return json_response({{"version", version_}, {"member", member_}});
    }
    if (path == "/healthz") {
      if (method != http::verb::get) co_return allow(http::verb::get);
      co_return healthy_ ? make_response(http::status::ok, "ok")
                         : make_response(http::status::internal_server_error, "unhealthy");
    }
    if (path == "/admin/health") {
      if (method != http::verb::post) co_return allow(http::verb::post);
      auto ok = query_param(query, "ok");
      if (ok == "1" || ok == "true") {
        healthy_ = true;
      } else if (ok == "0" || ok == "false") {
        healthy_ = false;
      } else {
        co_return error_response(http::status::bad_request, "ok must be 0 or 1");
      }
      co_return json_response({{"healthy", healthy_}});
    }
    if (path == "/admin/load") {
      if (method == http::verb::get) {
        co_return json_response({{"load", load_}, {"requestsInFlight", in_flight_ - 1}});
      }
      if (method != http::verb::post) co_return allow(http::verb::get);
      auto value = query_param(query, "value").value_or("");
      double load = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), load);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() || !std::isfinite(load) ||
          load < 0) {
        co_return error_response(http::status::bad_request, "value must be a non-negative number");
      }
      load_ = load;
      co_return json_response({{"load", load_}});
    }
    if (path == "/slow") {
      if (method != http::verb::get) co_return allow(http::verb::get);
      auto ms = parse_long(query_param(query, "ms").value_or(""), 0, kMaxSlowMs);
      if (!ms) co_return error_response(http::status::bad_request, "ms must be 0..60000");
      asio::steady_timer timer(ioc_, std::chrono::milliseconds(*ms));
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return json_response({{"sleptMs", *ms}, {"version", version_}, {"member", member_}});
    }
    co_return error_response(http::status::not_found, "not found");
  }

  void wait_for_signal() {
    signals_.async_wait([this](const error_code& ec, int signo) {
      if (ec) return;  // cancelled: we are done
      if (stopping_) {
        force_stop("second signal");
        return;
      }
      begin_shutdown(signo);
      wait_for_signal();
      maybe_finish();
    });
  }

  void begin_shutdown(int signo) {
    stopping_ = true;
    std::fprintf(stderr, "%s: %s, shutting down (%zu connections open, %d requests in flight)\n", name_.c_str(),
                 signo == SIGINT ? "SIGINT" : "SIGTERM", connections_.size(), in_flight_);
    error_code ec;
    start_timer_.cancel();
    acceptor_.close(ec);
    for (const auto& conn : connections_) {
      if (conn->idle && conn->socket.available(ec) == 0) conn->socket.cancel(ec);
    }
    drain_deadline_.expires_after(kDrainTimeout);
    drain_deadline_.async_wait([this](const error_code& ec) {
      if (!ec) force_stop("drain timeout");
    });
  }

  // Once stopping and nothing is left, drop the last pending waits so that
  // io_context::run() returns.
  void maybe_finish() {
    if (!stopping_ || !connections_.empty() || acceptor_.is_open()) return;
    drain_deadline_.cancel();
    signals_.cancel();
  }

  void force_stop(const char* why) {
    std::fprintf(stderr, "tranche-hello: %s, exiting with %zu connections open\n", why, connections_.size());
    forced_ = true;
    ioc_.stop();
  }

  asio::io_context& ioc_;
  Options opts_;
  std::string version_;
  std::string member_;
  std::string name_;  // "tranche-hello VERSION", for log lines
  bool healthy_;
  double load_ = 0;
  int in_flight_ = 0;
  std::uint64_t served_ = 0;
  bool stopping_ = false;
  bool forced_ = false;
  int exit_code_ = 0;
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer start_timer_;
  asio::steady_timer drain_deadline_;
  std::set<std::shared_ptr<Connection>> connections_;
};

// Many concurrent clients need many descriptors: use the hard limit.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (auto error = parse_args(argc, argv, opts)) {
    std::fprintf(stderr, "tranche-hello: %s\n%s", error->c_str(), kUsage);
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();

  asio::io_context ioc(1);
  Server server(ioc, opts);
  server.start();
  ioc.run();
  int code = server.finish();
  if (server.forced()) {
    std::fflush(nullptr);
    std::_Exit(code);
  }
  return code;
}
