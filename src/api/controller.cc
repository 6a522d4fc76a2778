#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "api/controller.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

#include "api/controller_api.h"
#include "api/controller_settings.h"
#include "api/http_server.h"
#include "api/log_format.h"
#include "api/metrics.h"
#include "common/atomic_file.h"
#include "common/build_version.h"
#include "common/clock.h"
#include "common/file_lock.h"
#include "common/secrets.h"
#include "common/server_url.h"
#include "common/tls_files.h"
#include "engine/access.h"
#include "engine/application_service.h"
#include "engine/reconcile/balancer_sync.h"
#include "engine/fleet/fleet.h"
#include "engine/spec_cache.h"
#include "lb/haproxy_runtime.h"
#include "store/store.h"

namespace tranche::api {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

constexpr const char* kStoreFile = "tranche.db";
constexpr auto kExpiryInterval = std::chrono::milliseconds(250);
// Reconcile passes: often enough that a failure is acted on well within
// one heartbeat interval.
constexpr auto kTickInterval = std::chrono::milliseconds(100);
// After a pass that left work it could do at once (a large apply placed a
// bounded number of members per pass): the next one comes sooner.
constexpr auto kBusyTickInterval = std::chrono::milliseconds(10);
// Heartbeats wake nobody (Fleet::receive): what waits in the fleet's inbox is
// handled this often between passes (Fleet::handle_inbox).
constexpr auto kInboxInterval = std::chrono::milliseconds(2);
constexpr auto kDrainTimeout = std::chrono::seconds(10);
// Load balancer passes: a drained server leaves within this of its last session.
constexpr auto kBalancerInterval = std::chrono::milliseconds(100);

struct ServerCredentials {
  std::string certificate;  // empty: no TLS
  std::string key;
};

// --tls-cert/--tls-key as given, or --dev --tls's files in the data dir
// (made on the first start, reused after), naming the listen host too.
Result<ServerCredentials> server_credentials(const ControllerOptions& options, const fs::path& data_dir,
                                             const std::string& listen_host) {
  if (!options.dev_tls) {
    return ServerCredentials{options.tls_certificate, options.tls_key};
  }
  std::vector<std::string> hosts = {"127.0.0.1", "::1", "localhost"};
  if (std::find(hosts.begin(), hosts.end(), listen_host) == hosts.end()) {
    hosts.push_back(listen_host);
  }
  auto files = ensure_dev_tls_files(data_dir, hosts);
  if (!files) {
    return std::unexpected(files.error());
  }
  if (files->created_ca) {
    spdlog::info("made a private CA for --dev --tls: clients and agents trust {}", files->ca_certificate.string());
  }
  if (files->issued_server_certificate) {
    spdlog::info("issued the server certificate {} for {}", files->server_certificate.string(),
                 fmt::join(hosts, ", "));
  }
  return ServerCredentials{files->server_certificate.string(), files->server_key.string()};
}

// A refusal to start goes to stderr, where the caller who started us looks.
void refuse_to_start(const std::string& message) {
  std::fprintf(stderr, "tranche controller: error: %s\n", message.c_str());
  std::fflush(stderr);
}

// SQLite would create tranche.db readable by everyone under the usual umask
// (its -wal and -shm copy its mode); it holds token hashes, the audit log and
// manifests, whose env may carry secrets. An existing file keeps its mode.
Status create_private_store_file(const fs::path& db) {
  const int fd = ::open(db.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return {};
  }
  if (errno == EEXIST) {
    return {};
  }
  return fail(ErrorCode::kUnavailable, "cannot create " + db.string() + ": " + std::strerror(errno));
}

// A data dir that a controller has started in before (it wrote admin.token,
// whose hash is in the store) must still have its store: opening a missing
// or empty tranche.db would silently start a new, empty one, under which the
// old admin token no longer works and no new one is written (admin.token
// exists). An empty tranche.db beside a WAL would also lose the WAL: SQLite
// deletes the WAL of an empty database.
Status check_store_present(const fs::path& data_dir) {
  const fs::path db = data_dir / kStoreFile;
  const fs::path wal = data_dir / (std::string(kStoreFile) + "-wal");
  std::error_code ec;
  const bool exists = fs::exists(db, ec);
  const uintmax_t size = exists ? fs::file_size(db, ec) : 0;
  if (exists && size > 0) {
    return {};
  }
  std::string evidence;
  if (fs::exists(data_dir / "admin.token", ec)) {
    evidence = "admin.token";
  } else if (fs::exists(wal, ec) && fs::file_size(wal, ec) > 0) {
    evidence = wal.filename().string();
  } else {
    return {};  // a new data dir
  }
  return fail(ErrorCode::kUnavailable,
              "data dir " + data_dir.string() + " was used before (it has " + evidence + ") but its store " +
                  db.string() + (exists ? " is empty" : " is missing") +
                  "; restore tranche.db from a backup, or delete the data dir to start afresh with a new store "
                  "and a new admin token");
}

// The first start of a data dir issues an admin token and leaves it in
// admin.token (0600); later starts leave the file alone.
Status bootstrap_admin_token(AccessControl& access, const fs::path& data_dir) {
  const fs::path file = data_dir / "admin.token";
  if (fs::exists(file)) {
    return {};
  }
  auto issued =
      access.create_token(Role::kAdmin, std::nullopt, "bootstrap-admin", Caller{"tranche", "bootstrap admin token"});
  if (!issued) {
    return std::unexpected(issued.error());
  }
  spdlog::info("wrote a new admin token to {}", file.string());
  return write_file_atomically(file, issued->secret_token + "\n", 0600);
}

// The secret agents join with: join.token in the data dir, made on first start.
Result<std::string> join_token(const fs::path& data_dir) {
  const fs::path file = data_dir / "join.token";
  std::ifstream in(file);
  std::string token;
  if (std::getline(in, token) && !token.empty()) {
    return token;
  }
  token = "jt_" + random_hex(32);
  if (auto ok = write_file_atomically(file, token + "\n", 0600); !ok) {
    return std::unexpected(ok.error());
  }
  return token;
}

// Closes every descriptor >= `first`; for a forked child before exec (no
// allocation). close_range exists since Linux 5.9; before, one by one.
void close_descriptors_from(int first) {
  if (::close_range(static_cast<unsigned>(first), ~0U, 0) == 0) {
    return;
  }
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = first; fd < (max > 0 ? std::min(max, 1L << 20) : 1024); ++fd) {
    ::close(static_cast<int>(fd));
  }
}

// --dev: one local agent in its own session, so that it and its members
// outlive a controller crash. It holds agent/agent.lock while it runs; a
// restarted controller that finds the lock taken reuses it.
Status ensure_local_agent(const fs::path& data_dir) {
  const fs::path dir = data_dir / "agent";
  std::error_code ec;
  fs::create_directories(dir, ec);
  const int fd = ::open((dir / "agent.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable, "cannot open " + (dir / "agent.lock").string() + ": " + std::strerror(errno));
  }
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  if (!free) {
    std::ifstream pid(dir / "agent.pid");
    std::string text;
    std::getline(pid, text);
    spdlog::info("reusing the local agent already running (pid {})", text);
    return {};
  }
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string log = (dir / "agent.log").string();
  const pid_t child = ::fork();
  if (child < 0) {
    return fail(ErrorCode::kUnavailable, std::string("fork: ") + std::strerror(errno));
  }
  if (child == 0) {
    // Detach twice: the agent is neither our child nor in our session.
    ::setsid();
    if (::fork() != 0) {
      ::_exit(0);
    }
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    // Nothing else of ours goes with it: a listening socket the agent held
    // would outlive a controller crash (its port stays taken, clients and the
    // agent's own reconnects hang on it), and so would the data dir's lock.
    close_descriptors_from(3);
    const std::string server_file = (data_dir / "controller.url").string();
    const std::string token_file = (data_dir / "join.token").string();
    const std::string state_dir = dir.string();
    // The CA of --dev --tls, read by the agent only when controller.url is
    // https://; given always, so that a running agent reused by a controller
    // restarted with --tls trusts it too.
    const std::string ca_file = (data_dir / "ca.crt").string();
    ::execl(self.c_str(), self.c_str(), "agent", "--server-file", server_file.c_str(), "--join-token-file",
            token_file.c_str(), "--state-dir", state_dir.c_str(), "--ca", ca_file.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  spdlog::info("started the local agent (state in {}, log in {})", dir.string(), log);
  return {};
}

}  // namespace

int run_controller(ControllerOptions options, const std::vector<std::string>& flags_given) {
  if (!options.config_file.empty()) {
    if (auto ok = read_config(options, flags_given); !ok) {
      refuse_to_start("config: " + ok.error().describe());
      return 2;
    }
  }
  // Before the first line is logged.
  auto log_format = parse_log_format(options.log_format);
  if (!log_format) {
    refuse_to_start(log_format.error().describe());
    return 2;
  }
  use_log_format(*log_format);
  auto listen = parse_listen(options.listen);
  if (!listen) {
    refuse_to_start(listen.error().describe());
    return 2;
  }
  if (auto ok = check_tls_options(options); !ok) {
    refuse_to_start(ok.error().describe());
    return 2;
  }
  if (auto ok = check_heartbeat_options(options); !ok) {
    refuse_to_start(ok.error().describe());
    return 2;
  }
  const fs::path data_dir = options.data_dir;
  std::error_code fs_error;
  const bool data_dir_created = fs::create_directories(data_dir, fs_error);
  if (fs_error) {
    refuse_to_start("cannot create data dir " + data_dir.string() + ": " + fs_error.message());
    return 1;
  }
  // A data dir made here is its owner's alone. One that exists keeps its
  // mode: it may be shared (a --data-dir of /tmp), and what is secret in it
  // is created 0600 by itself (tokens, the store).
  if (data_dir_created) {
    fs::permissions(data_dir, fs::perms::owner_all, fs::perm_options::replace, fs_error);
    if (fs_error) {
      refuse_to_start("cannot make data dir " + data_dir.string() + " private: " + fs_error.message());
      return 1;
    }
  }
  // One controller per data dir, for as long as this one runs.
  auto data_dir_lock = FileLock::acquire(data_dir / "controller.lock");
  if (!data_dir_lock) {
    if (data_dir_lock.error().code == ErrorCode::kConflict) {
      const auto holder = FileLock::holder(data_dir / "controller.lock");
      refuse_to_start("data dir " + data_dir.string() + " is in use by another controller (" +
                      (holder ? "pid " + std::to_string(*holder) : std::string("pid unknown")) + ", holding " +
                      (data_dir / "controller.lock").string() +
                      "); stop it first, or give this one another --data-dir");
    } else {
      refuse_to_start(data_dir_lock.error().describe());
    }
    return 1;
  }
  // Listening before the store is read (0.6 s at 100,000 members): see
  // ListeningSocket. Connections are accepted once everything is loaded.
  auto listening = ListeningSocket::open(listen->first, listen->second);
  if (!listening) {
    refuse_to_start("cannot listen on " + options.listen + ": " + listening.error().message);
    return 1;
  }
  if (auto ok = check_store_present(data_dir); !ok) {
    refuse_to_start(ok.error().describe());
    return 1;
  }

  if (auto ok = create_private_store_file(data_dir / kStoreFile); !ok) {
    refuse_to_start(ok.error().describe());
    return 1;
  }

  Metrics metrics;
  auto store = open_sqlite_store(SqliteStoreOptions{(data_dir / kStoreFile).string()});
  if (!store) {
    refuse_to_start("store: " + store.error().describe());
    return 1;
  }
  (*store)->observe_commits(
      [&metrics](std::chrono::nanoseconds latency, bool ok) { metrics.record_commit(latency, ok); });
  auto last_seq = (*store)->last_event_seq();
  if (!last_seq) {
    refuse_to_start("store: " + last_seq.error().describe());
    return 1;
  }
  (*store)->watch([&metrics, seen = *last_seq](uint64_t seq) mutable {
    // Commits are serialized, so seq only grows between calls.
    metrics.record_events_published(seq - seen);
    seen = seq;
  });

  auto join = join_token(data_dir);
  if (!join) {
    refuse_to_start(join.error().describe());
    return 1;
  }
  SystemClock clock;
  AccessControl access(**store, clock);
  // One parsed-spec cache for the process: a revision is parsed once, not once per reader.
  auto specs = std::make_shared<SpecCache>(**store);
  ApplicationService apps(**store, clock, specs);
  Fleet fleet(**store, clock,
              FleetOptions{options.heartbeat_interval, options.heartbeat_timeout, std::chrono::seconds(10), *join,
                           !options.no_lb_drain},
              specs);
  if (auto loaded = fleet.load(); !loaded) {
    refuse_to_start("fleet: " + loaded.error().describe());
    return 1;
  }
  std::optional<lb::HaproxyRuntime> haproxy;
  std::optional<BalancerSync> balancer;
  if (!options.haproxy_socket.empty()) {
    auto endpoint = lb::parse_haproxy_endpoint(options.haproxy_socket);
    if (!endpoint) {
      refuse_to_start("--haproxy-socket: " + endpoint.error().describe());
      return 2;
    }
    haproxy.emplace(*endpoint);
    balancer.emplace(*haproxy, clock);
    fleet.attach_balancer(*balancer);
    spdlog::info("load balancer: HAProxy runtime API at {}{}", lb::to_string(*endpoint),
                 options.no_lb_drain ? " (--no-lb-drain: members are stopped without draining)" : "");
  }
  // Balancer calls block: a thread of their own, off the fleet's lock.
  std::jthread balancer_loop;
  if (balancer) {
    balancer_loop = std::jthread([&balancer](std::stop_token stop) {
      std::mutex mutex;
      std::condition_variable_any wake;
      while (!stop.stop_requested()) {
        balancer->run_once();
        std::unique_lock lock(mutex);
        wake.wait_for(lock, stop, kBalancerInterval, [] { return false; });
      }
    });
  }
  // Agents' messages stage their changes; this thread writes them, a group
  // at a time (fleet.h, "Group commit"), so that no connection waits for the
  // disk. What is staged when it stops is written on the way out.
  struct CommitSignal {
    std::mutex mutex;
    std::condition_variable_any wake;
    bool pending = false;
  } commit_signal;
  fleet.on_staged([&commit_signal] {
    {
      std::lock_guard lock(commit_signal.mutex);
      commit_signal.pending = true;
    }
    commit_signal.wake.notify_one();
  });
  std::jthread committer([&fleet, &commit_signal](std::stop_token stop) {
    while (!stop.stop_requested()) {
      {
        std::unique_lock lock(commit_signal.mutex);
        if (!commit_signal.wake.wait(lock, stop, [&] { return commit_signal.pending; })) {
          break;
        }
        commit_signal.pending = false;
      }
      (void)fleet.flush();
    }
    (void)fleet.flush();
  });
  ControllerApi api(apps, access, fleet, **store, metrics);
  ArtifactStore artifacts(**store, clock, data_dir / "artifacts", options.artifact_max_bytes);
  if (auto ok = artifacts.open(); !ok) {
    refuse_to_start("artifacts: " + ok.error().describe());
    return 1;
  }
  api.serve_upgrades(artifacts);
  if (auto ok = bootstrap_admin_token(access, data_dir); !ok) {
    refuse_to_start(ok.error().describe());
    return 1;
  }

  // The main io_context has the timers (the reconcile pass among them) and
  // signals; connections have io_contexts of their own, one thread each
  // (http_server.h says why).
  asio::io_context io;
  std::vector<std::unique_ptr<asio::io_context>> connection_contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_serving;
  std::vector<asio::io_context*> contexts;
  for (int i = 0; i < options.threads; ++i) {
    connection_contexts.push_back(std::make_unique<asio::io_context>(1));
    keep_serving.push_back(asio::make_work_guard(*connection_contexts.back()));
    contexts.push_back(connection_contexts.back().get());
  }
  HttpServer server(contexts, api, **store, fleet, metrics,
                    HttpServerOptions{options.body_limit, options.max_connections,
                                      options.max_unauthenticated_agents});
  auto credentials = server_credentials(options, data_dir, listen->first);
  if (!credentials) {
    refuse_to_start("TLS: " + credentials.error().describe());
    return 1;
  }
  const bool tls = !credentials->certificate.empty();
  if (tls) {
    if (auto ok = server.enable_tls(credentials->certificate, credentials->key); !ok) {
      refuse_to_start("TLS: " + ok.error().describe());
      return 1;
    }
  }
  const unsigned short port = listening->port();
  server.start(std::move(*listening));
  const std::string url = format_server_url(tls, listen->first, port);
  if (auto ok = write_file_atomically(data_dir / "controller.url", url + "\n", 0644); !ok) {
    refuse_to_start(ok.error().describe());
    return 1;
  }
  spdlog::info("tranche controller {} serving {} (store schema {}, data {}{})", build_version(), url,
               (*store)->schema_version(), data_dir.string(), options.dev ? ", dev mode" : "");

  // The timers' loops: `step` runs each time `timer` expires and says when
  // to run it again, until the signal sets `stopping`. A cancel() alone
  // misses a wait that has already expired, whose handler is queued and
  // would arm the timer again (the inbox's, every 2 ms, did so once in ~40
  // stops, and the exit then waited for the drain watchdog).
  bool stopping = false;
  using Step = std::function<std::chrono::milliseconds()>;
  std::function<void(asio::steady_timer&, std::chrono::milliseconds, Step)> repeat =
      [&repeat, &stopping](asio::steady_timer& timer, std::chrono::milliseconds after, Step step) {
        timer.expires_after(after);
        timer.async_wait([&repeat, &stopping, &timer, step = std::move(step)](boost::system::error_code ec) mutable {
          if (!ec && !stopping) {
            const auto next = step();
            repeat(timer, next, std::move(step));
          }
        });
      };
  // Time-boxed settings end by themselves; checked a few times a second.
  asio::steady_timer expiry(io);
  repeat(expiry, kExpiryInterval, [&] {
    if (auto n = apps.expire_operational_values(); !n) {
      spdlog::error("expiring operational values: {}", n.error().describe());
    }
    return kExpiryInterval;
  });
  // Passes: every kTickInterval (sooner after one that left work), and at
  // the inbox's next turn after an operator's write (ControllerApi asks),
  // but then no sooner after the last pass than that pass took, nor than
  // kBusyTickInterval: a stream of writes must not keep a large fleet
  // passing back to back.
  using Steady = std::chrono::steady_clock;
  Steady::time_point last_pass_end{};
  Steady::duration last_pass_took{};
  auto pass = [&] {
    const auto start = Steady::now();
    const bool busy = fleet.tick();
    last_pass_end = Steady::now();
    last_pass_took = last_pass_end - start;
    metrics.record_pass(last_pass_took);
    return busy;
  };
  asio::steady_timer reconcile(io);
  repeat(reconcile, kTickInterval, [&] { return pass() ? kBusyTickInterval : kTickInterval; });
  asio::steady_timer inbox(io);
  repeat(inbox, kInboxInterval, [&] {
    const auto rest = std::max<Steady::duration>(last_pass_took, kBusyTickInterval);
    if (Steady::now() - last_pass_end >= rest && fleet.take_pass_request()) {
      (void)pass();  // it handles the inbox first
    } else {
      fleet.handle_inbox();
    }
    return kInboxInterval;
  });

  if (options.dev) {
    if (auto ok = ensure_local_agent(data_dir); !ok) {
      refuse_to_start("local agent: " + ok.error().describe());
      return 1;
    }
  }

  std::jthread drain_watchdog;
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (ec) {
      return;
    }
    spdlog::info("signal {}: draining (no new connections, finishing in-flight requests)", signal);
    api.set_ready(false);
    stopping = true;
    expiry.cancel();
    reconcile.cancel();
    inbox.cancel();
    server.drain();
    keep_serving.clear();  // each connection context ends once its connections have
    // Peers that never answer a close (a stuck agent) must not hold the
    // exit forever; everything acknowledged is already durable. A thread,
    // not a timer, so that a quick drain is not kept waiting for it.
    drain_watchdog = std::jthread([&io, &contexts](std::stop_token stop) {
      std::mutex mutex;
      std::condition_variable_any wake;
      std::unique_lock lock(mutex);
      wake.wait_for(lock, stop, kDrainTimeout, [] { return false; });
      if (!stop.stop_requested()) {
        spdlog::warn("drain took longer than {} s; closing the remaining connections", kDrainTimeout.count());
        io.stop();
        for (auto* context : contexts) {
          context->stop();
        }
      }
    });
  });

  std::vector<std::jthread> pool;
  for (auto* context : contexts) {
    pool.emplace_back([context] { context->run(); });
  }
  io.run();
  pool.clear();  // joins: every connection has ended
  drain_watchdog = {};  // stops and joins it
  spdlog::info("controller stopped");
  return 0;
}

}  // namespace tranche::api
