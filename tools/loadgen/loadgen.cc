// tranche-loadgen: a bounded HTTP load generator for loopback, written for the
// zero-downtime demo and bench/zero-downtime (README.md in this folder).
//
// Boost.Asio + Beast with C++20 coroutines on one single-threaded io_context:
// the tally and every other piece of state are touched by that thread only.
// Each keep-alive connection sends one request at a time at its own pace; the
// new-connection and slow tickers open a fresh connection per request. One
// deadline (--timeout) covers a request's connect, write and read. The stop
// and phase files are polled on the same thread, so a request's phase is the
// one current when it began.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "options.h"
#include "report.h"
#include "stats.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace tranche::loadgen;

constexpr auto kFilePoll = 100ms;
constexpr std::streamsize kPhaseFileLimit = 256;  // a label is at most kMaxPhaseLength
constexpr std::uint64_t kBodyLimit = 64 * 1024;   // tranche-hello answers ~50 bytes

Kind classify(const error_code& ec) {
  if (ec == beast::error::timeout) {
    return Kind::kTimeout;
  }
  if (ec == asio::error::connection_refused) {
    return Kind::kRefused;
  }
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe || ec == asio::error::eof ||
      ec == asio::error::connection_aborted || ec == http::error::end_of_stream || ec == http::error::partial_message) {
    return Kind::kReset;
  }
  return Kind::kOther;
}

std::string version_of(const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_object()) {
    if (auto it = json.find("version"); it != json.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return {};
}

// The phase --phase-file names now, if any.
std::optional<std::string> read_phase(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return std::nullopt;
  }
  std::string content(static_cast<size_t>(kPhaseFileLimit), '\0');
  in.read(content.data(), kPhaseFileLimit);
  content.resize(static_cast<size_t>(in.gcount()));
  return phase_label(content);
}

auto log_exception(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) {
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "tranche-loadgen: %s: %s\n", what, ex.what());
    }
  };
}

struct Connection {
  explicit Connection(asio::io_context& ioc) : stream(ioc) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool open = false;
};

class LoadGenerator {
 public:
  LoadGenerator(asio::io_context& ioc, const Options& opts)
      : ioc_(ioc),
        opts_(opts),
        endpoint_(asio::ip::make_address(opts.target.address), opts.target.port),
        tally_(opts.interval, opts.phase_file.empty() ? "run" : read_phase(opts.phase_file).value_or("run")),
        signals_(ioc, SIGINT, SIGTERM),
        deadline_(ioc),
        file_timer_(ioc),
        ticker_(ioc),
        slow_ticker_(ioc) {}

  void start() {
    started_ = Clock::now();
    wait_for_signal();
    deadline_.expires_after(opts_.duration);
    deadline_.async_wait([this](const error_code& ec) {
      if (!ec) {
        stop();
      }
    });
    if (!opts_.stop_file.empty() || !opts_.phase_file.empty()) {
      asio::co_spawn(ioc_, watch_files(), log_exception("stop and phase files"));
    }
    for (int i = 0; i < opts_.connections; ++i) {
      pacers_.push_back(std::make_unique<asio::steady_timer>(ioc_));
      asio::co_spawn(ioc_, keep_alive_loop(static_cast<size_t>(i)), log_exception("keep-alive connection"));
    }
    if (opts_.new_connection_rate > 0) {
      asio::co_spawn(ioc_, ticker_loop(Mode::kNewConnection, opts_.new_connection_rate, ticker_),
                     log_exception("new connections"));
    }
    if (opts_.slow_rate > 0) {
      asio::co_spawn(ioc_, ticker_loop(Mode::kSlow, opts_.slow_rate, slow_ticker_), log_exception("slow requests"));
    }
  }

  // No new requests; those in flight finish (each within --timeout), then
  // io_context::run() returns.
  void stop() {
    if (stopping_) {
      return;
    }
    stopping_ = true;
    stopped_ = Clock::now();
    deadline_.cancel();
    file_timer_.cancel();
    ticker_.cancel();
    slow_ticker_.cancel();
    for (auto& pacer : pacers_) {
      pacer->cancel();
    }
    maybe_finish();
  }

  const Tally& tally() const { return tally_; }
  // How long requests were sent: the wait for those in flight at the stop
  // (up to a slow request's delay) would understate the rate.
  std::chrono::milliseconds elapsed() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>((stopping_ ? stopped_ : Clock::now()) - started_);
  }
  bool aborted() const { return aborted_; }

 private:
  // Counts a running coroutine so the run ends when the last one does.
  struct Active {
    explicit Active(LoadGenerator& g) : gen(g) { ++gen.active_; }
    ~Active() {
      --gen.active_;
      gen.maybe_finish();
    }
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;
    LoadGenerator& gen;
  };

  void maybe_finish() {
    if (stopping_ && active_ == 0) {
      error_code ignored;
      signals_.cancel(ignored);
    }
  }

  void wait_for_signal() {
    signals_.async_wait([this](const error_code& ec, int) {
      if (ec) {
        return;  // cancelled: the run is over
      }
      if (stopping_) {
        // A second signal: give up on the requests in flight.
        aborted_ = true;
        ioc_.stop();
        return;
      }
      stop();
      wait_for_signal();
    });
  }

  asio::awaitable<void> watch_files() {
    Active active(*this);
    while (!stopping_) {
      std::error_code fs_ec;
      if (!opts_.stop_file.empty() && std::filesystem::exists(opts_.stop_file, fs_ec)) {
        stop();
        break;
      }
      if (!opts_.phase_file.empty()) {
        follow_phase_file();
      }
      error_code ec;
      file_timer_.expires_after(kFilePoll);
      co_await file_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  void follow_phase_file() {
    const auto label = read_phase(opts_.phase_file);
    if (!label || *label == refused_phase_) {
      return;
    }
    const auto now = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
    if (!tally_.enter_phase(*label, now)) {
      refused_phase_ = *label;
      std::fprintf(stderr, "tranche-loadgen: phase '%s' ignored: at most %zu phases; still counting under '%s'\n",
                   label->c_str(), kMaxPhases, tally_.phases()[tally_.current_phase()].name.c_str());
    }
  }

  asio::awaitable<void> keep_alive_loop(size_t index) {
    Active active(*this);
    asio::steady_timer& pacer = *pacers_[index];
    const auto period =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / opts_.keep_alive_rate));
    // Spread the connections' requests evenly over one period.
    auto next = started_ + period * static_cast<long>(index) / opts_.connections;
    Connection conn(ioc_);
    while (!stopping_) {
      error_code ec;
      pacer.expires_at(next);
      co_await pacer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) {
        break;
      }
      tally_.record(co_await exchange(conn, Mode::kKeepAlive));
      // Behind schedule (a slow answer): carry on from now, no burst.
      next = std::max(next + period, Clock::now());
    }
    error_code ignored;
    conn.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn.stream.close();
  }

  // `mode` kNewConnection or kSlow: `rate` requests per second, each on a
  // connection of its own.
  asio::awaitable<void> ticker_loop(Mode mode, double rate, asio::steady_timer& ticker) {
    Active active(*this);
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
    auto next = started_;
    while (!stopping_) {
      error_code ec;
      ticker.expires_at(next);
      co_await ticker.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) {
        break;
      }
      // Not awaited: a slow answer must not hold back the next tick.
      asio::co_spawn(ioc_, fresh_request(mode), log_exception("new connection"));
      next += period;
    }
  }

  asio::awaitable<void> fresh_request(Mode mode) {
    Active active(*this);
    Connection conn(ioc_);
    tally_.record(co_await exchange(conn, mode));
  }

  asio::awaitable<Outcome> exchange(Connection& conn, Mode mode) {
    Outcome out;
    out.mode = mode;
    out.phase = tally_.current_phase();
    const auto began = Clock::now();
    auto finish = [&] {
      const auto now = Clock::now();
      out.latency = std::chrono::duration_cast<std::chrono::microseconds>(now - began);
      out.at = std::chrono::duration_cast<std::chrono::microseconds>(now - started_);
    };

    error_code ec;
    conn.stream.expires_after(opts_.timeout);
    if (!conn.open) {
      conn.buffer.clear();
      co_await conn.stream.async_connect(endpoint_, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) {
        conn.open = true;
        conn.stream.socket().set_option(tcp::no_delay(true), ec);
      }
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    if (!ec) {
      http::request<http::empty_body> req{http::verb::get, mode == Mode::kSlow ? opts_.slow_path : opts_.target.path,
                                          11};
      req.set(http::field::host, opts_.target.host_header);
      req.set(http::field::user_agent, "tranche-loadgen");
      req.keep_alive(mode == Mode::kKeepAlive);
      co_await http::async_write(conn.stream, req, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec) {
      co_await http::async_read(conn.stream, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    finish();
    if (ec) {
      out.kind = classify(ec);
      conn.stream.close();
      conn.open = false;
      co_return out;
    }
    conn.stream.expires_never();

    const auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    if (out.status >= 200 && out.status < 300) {
      out.kind = Kind::kOk;
      out.version = version_of(res.body());
    } else {
      out.kind = Kind::kHttpError;
    }
    if (mode != Mode::kKeepAlive || !res.keep_alive()) {
      // The server ends the connection with this answer: not a failure, the
      // next request opens a new one.
      error_code ignored;
      conn.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      conn.stream.close();
      conn.open = false;
    }
    co_return out;
  }

  asio::io_context& ioc_;
  const Options& opts_;
  const tcp::endpoint endpoint_;
  Tally tally_;
  asio::signal_set signals_;
  asio::steady_timer deadline_;
  asio::steady_timer file_timer_;
  asio::steady_timer ticker_;       // new-connection requests
  asio::steady_timer slow_ticker_;  // slow requests
  std::vector<std::unique_ptr<asio::steady_timer>> pacers_;
  Clock::time_point started_;
  Clock::time_point stopped_;
  std::string refused_phase_;  // the last label enter_phase refused, said once
  int active_ = 0;
  bool stopping_ = false;
  bool aborted_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto opts = parse_options(args);
  if (!opts) {
    std::fprintf(stderr, "tranche-loadgen: %s\n%s", opts.error().describe().c_str(), kUsage);
    return 2;
  }
  if (opts->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }

  asio::io_context ioc(1);
  LoadGenerator generator(ioc, *opts);
  generator.start();
  ioc.run();

  std::string out = format_table(generator.tally(), *opts, generator.elapsed());
  if (generator.aborted()) {
    out += "  (interrupted twice: requests still in flight are not counted)\n";
  }
  if (opts->json) {
    out += to_json(generator.tally(), *opts, generator.elapsed()).dump() + "\n";
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (generator.aborted()) {
    // Coroutines are still suspended and refer to the generator: do not
    // destroy them after it.
    std::_Exit(0);
  }
  return 0;
}
