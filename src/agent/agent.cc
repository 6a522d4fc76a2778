#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <random>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include "agent/agent_binary_stage.h"
#include "agent/artifact_download.h"
#include "agent/command_book.h"
#include "agent/controller_channel.h"
#include "agent/journal.h"
#include "agent/member_supervisor.h"
#include "agent/reconnect_backoff.h"
#include "agent/self_upgrade.h"
#include "common/build_version.h"
#include "common/overloaded.h"
#include "protocol/frames.h"
#include "protocol/messages.h"

namespace tranche::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace fs = std::filesystem;
using boost::system::error_code;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string read_first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

// The session with the controller; the members' lifecycle is the
// supervisor's (member_supervisor.h), which answers through this session.
class Agent final : public MemberSupervisor::Session {
 public:
  Agent(asio::io_context& io, AgentOptions options, AgentStartup startup)
      : io_(io),
        options_(std::move(options)),
        journal_(options_.state_dir),
        upgrade_(options_.state_dir, clock_, std::move(startup)),
        members_(io, options_.state_dir, state_.members, *this, make_process_driver()),
        heartbeat_timer_(io) {}

  Status start() {
    auto loaded = journal_.load();
    if (!loaded) {
      return std::unexpected(loaded.error());
    }
    state_ = std::move(*loaded);
    if (auto record = upgrade_.load(); !record) {
      spdlog::error("{}", record.error().describe());
    }
    members_.resume(state_.commands);
    if (auto saved = save_journal(); !saved) {
      return saved;
    }
    answer_settled_upgrades();
    members_.watch();
    asio::co_spawn(io_, heartbeat_loop(), asio::detached);
    asio::co_spawn(io_, connection_loop(), asio::detached);
    return {};
  }

  void stop() {
    stopping_ = true;
    members_.stop_watching();
    heartbeat_timer_.cancel();
    if (channel_) {
      channel_->close();
    }
    if (backoff_timer_) {
      backoff_timer_->cancel();
    }
  }

 private:
  // ---- MemberSupervisor::Session ----------------------------------------------

  Status save_journal() override {
    auto done = journal_.save(state_);
    if (!done) {
      spdlog::error("journal: {}", done.error().describe());
    }
    return done;
  }

  void answer(const protocol::CommandResult& result) override {
    if (auto message = CommandBook(state_.commands).complete(result)) {
      save_journal();
      send(*message);
    }
  }

  void report(const protocol::AgentEvent& event) override { send(protocol::to_json(event)); }

  // ---- connection ---------------------------------------------------------

  std::string server() const {
    return options_.server_file.empty() ? options_.server : read_first_line(options_.server_file);
  }

  std::string join_token() const {
    return options_.join_token_file.empty() ? options_.join_token : read_first_line(options_.join_token_file);
  }

  asio::awaitable<void> connection_loop() {
    ReconnectBackoff backoff;
    std::mt19937_64 random(std::random_device{}());
    while (!stopping_) {
      refused_ = false;
      const bool welcomed = co_await session();
      if (stopping_) {
        break;
      }
      const auto wait = backoff.after(welcomed, refused_, random);
      if (refused_) {
        spdlog::info("connecting again in {} s", std::chrono::duration_cast<std::chrono::seconds>(wait).count());
      }
      backoff_timer_.emplace(io_);
      backoff_timer_->expires_after(wait);
      error_code ec;
      co_await backoff_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // One connection, from handshake to loss. True when it got as far as welcome.
  asio::awaitable<bool> session() {
    auto channel = co_await open_controller_channel(io_, server(), options_.ca_file);
    if (!channel) {
      spdlog::warn("{}", channel.error().describe());
      co_return false;
    }
    channel_ = std::move(*channel);
    co_await write(protocol::to_json(hello()).dump());
    beast::flat_buffer buffer;
    const error_code ec = co_await channel_->read(buffer);
    bool welcomed = false;
    if (!ec) {
      auto envelope = protocol::parse_envelope(beast::buffers_to_string(buffer.data()));
      if (envelope && envelope->first == "welcome") {
        welcomed = on_welcome(envelope->second);
      } else if (envelope && envelope->first == "error") {
        refused_ = true;
        auto refusal = protocol::parse_error_message(envelope->second);
        spdlog::error("controller refused this agent: {}", refusal ? refusal->message : refusal.error().describe());
      }
    } else {
      spdlog::warn("connection closed before welcome: {}", ended(ec));
    }
    if (welcomed) {
      connected_ = true;
      replay_results();
      co_await read_loop();
    }
    connected_ = false;
    channel_.reset();
    outbox_.clear();
    writing_ = false;
    co_return welcomed;
  }

  // The protocol versions this agent says it speaks: all of this build's,
  // or with --protocol (tests) that one alone.
  protocol::ProtocolRange spoken() const {
    return options_.protocol == 0 ? protocol::kSpoken : protocol::ProtocolRange{options_.protocol, options_.protocol};
  }

  // Why a connection ended: the error, and the controller's close frame
  // when it sent one (its code and reason).
  std::string ended(const error_code& ec) const {
    const std::string reason = channel_ ? channel_->close_reason() : std::string();
    return reason.empty() ? ec.message() : ec.message() + " (" + reason + ")";
  }

  protocol::Hello hello() const {
    protocol::Hello h;
    h.host_id = state_.host_id;
    if (state_.host_token.empty()) {
      h.join_token = join_token();
    } else {
      h.host_token = state_.host_token;
    }
    h.hostname = hostname();
    h.labels = options_.labels;
    h.slots = options_.slots;
    h.agent_version = build_version();
    h.upgrade = upgrade_.report();
    h.protocol = spoken().newest;
    h.oldest_protocol = spoken().oldest;
    h.members = members_.hello_entries();
    return h;
  }

  bool on_welcome(const json& message) {
    auto welcome = protocol::parse_welcome(message);
    if (!welcome) {
      spdlog::error("bad welcome: {}", welcome.error().describe());
      return false;
    }
    if (!spoken().contains(welcome->protocol)) {
      refused_ = true;
      spdlog::error("the controller answered protocol version {}, which this agent does not speak ({} to {})",
                    welcome->protocol, spoken().oldest, spoken().newest);
      return false;
    }
    heartbeat_interval_ = std::chrono::milliseconds(static_cast<int64_t>(welcome->heartbeat_interval_seconds * 1000));
    protocol_ = welcome->protocol;
    if (state_.host_id != welcome->host_id || state_.host_token != welcome->host_token) {
      state_.host_id = welcome->host_id;
      state_.host_token = welcome->host_token;
      if (!save_journal()) {
        return false;
      }
    }
    spdlog::info("connected as host {} (heartbeat every {} ms)", state_.host_id, heartbeat_interval_.count());
    heartbeat_timer_.cancel();  // send the first heartbeat now
    return true;
  }

  asio::awaitable<void> read_loop() {
    beast::flat_buffer buffer;
    while (!stopping_) {
      buffer.clear();
      const error_code ec = co_await channel_->read(buffer);
      if (ec) {
        spdlog::warn("connection lost: {}", ended(ec));
        co_return;
      }
      const protocol::Frame frame = protocol::parse_frame(beast::buffers_to_string(buffer.data()));
      if (frame.batch && protocol_ < protocol::kBatchVersion) {
        spdlog::warn("a batch frame from the controller, which agreed protocol {} (batches: {}): not read", protocol_,
                     protocol::kBatchVersion);
        continue;
      }
      for (const auto& message : frame.messages) {
        if (message) {
          on_message(message->first, message->second);
        } else {
          spdlog::warn("unreadable message from the controller: {}", message.error().describe());
        }
      }
    }
  }

  void on_message(const std::string& type, const json& body) {
    if (type == "command") {
      // Decoded once, here: what acts on a command sees only its typed spec.
      if (auto command = protocol::parse_command(body)) {
        on_command(*command);
      } else if (auto header = protocol::parse_command_header(body)) {
        on_malformed_command(*header, command.error());
      } else {
        spdlog::warn("command without an id, not answered: {}", command.error().describe());
      }
    } else if (type == "ack") {
      if (auto ack = protocol::parse_ack(body)) {
        on_result_acked(ack->id);
      }
    } else if (type == "error") {
      auto error = protocol::parse_error_message(body);
      spdlog::error("controller: {}", error ? error->message : error.error().describe());
    }
  }

  // Messages leave in order, what queued up while a frame was written in
  // one batch frame once protocol 3 is agreed; while disconnected they are
  // dropped (results stay in the journal and are replayed, state is re-sent).
  void send(const json& message) { send_text(message.dump()); }
  void send_text(std::string text) {
    if (!connected_) {
      return;
    }
    outbox_.push_back(std::move(text));
    if (!writing_) {
      writing_ = true;  // before the coroutine starts: it is only posted
      asio::co_spawn(io_, drain_outbox(), asio::detached);
    }
  }

  asio::awaitable<void> drain_outbox() {
    while (!outbox_.empty() && channel_) {
      const std::string frame = protocol::take_frame(outbox_, protocol_ >= protocol::kBatchVersion);
      if (!co_await write(frame)) {
        break;
      }
    }
    writing_ = false;
  }

  asio::awaitable<bool> write(const std::string& text) { co_return !co_await channel_->write(text); }

  // ---- commands -------------------------------------------------------------

  // Acknowledges the command and journals it; false when it is not new (a
  // redelivery gets the outcome it already had, or nothing while it runs).
  bool admit(const protocol::CommandHeader& command) {
    send(protocol::to_json(protocol::Ack{command.id}));
    CommandBook book(state_.commands);
    switch (book.admit(command)) {
      case CommandBook::Admission::kDone:
        send(*book.find(command.id)->result);
        return false;
      case CommandBook::Admission::kRunning:
        return false;
      case CommandBook::Admission::kNew:
        break;
    }
    return true;
  }

  void on_command(const protocol::Command& command) {
    if (!admit(command.header())) {
      return;
    }
    // An update journals its admission together with the update itself
    // (update_member), so that no journal holds one without the other.
    if (!std::holds_alternative<protocol::UpdateSpec>(command.spec) && !save_journal()) {
      return;  // not journaled, not acted on; the controller will resend
    }
    std::visit(Overloaded{
                   [&](const protocol::StartSpec& spec) { members_.start_member(command, spec); },
                   [&](const protocol::StopSpec& spec) { members_.stop_member(command, spec); },
                   [&](const protocol::MaintenanceSpec& spec) { members_.maintain_member(command, spec); },
                   [&](const protocol::UpdateSpec& spec) { members_.update_member(command, spec); },
                   [&](const protocol::LogsSpec& spec) { members_.send_logs(command, spec); },
                   [&](const protocol::AgentUpgradeSpec& spec) { upgrade_agent(command, spec); },
               },
               command.spec);
  }

  // A command whose spec (or type) does not decode: journaled and answered
  // with a failed result that names the field, like any other outcome.
  void on_malformed_command(const protocol::CommandHeader& command, const Error& error) {
    spdlog::warn("command {} refused: {}", command.id, error.describe());
    if (!admit(command) || !save_journal()) {
      return;
    }
    complete(command.id, false, "malformed " + command.type + " command: " + error.describe());
  }

  void complete(const std::string& id, bool ok, const std::string& message) {
    answer(protocol::CommandResult{id, ok, std::nullopt, message, {}});
  }

  void on_result_acked(const std::string& id) {
    if (CommandBook(state_.commands).acknowledge(id)) {
      prune_commands(state_);
      save_journal();
      upgrade_.acknowledged(id);
    }
  }

  void replay_results() {
    for (const auto& result : CommandBook(state_.commands).unacknowledged()) {
      send(result);
    }
  }

  // ---- self-upgrade (self_upgrade.h) -----------------------------------------

  // upgradeAgent: fetch, check and stage the binary, then switch to it (this
  // process is replaced: the new binary answers once connected, or the
  // watchdog's fallback does). A failure before the switch is answered here.
  void upgrade_agent(const protocol::Command& command, const protocol::AgentUpgradeSpec& spec) {
    // A version without build metadata is any build of it (docs/upgrading.md).
    if (spec.version == build_version() || build_version().starts_with(spec.version + "+")) {
      complete(command.id, true, "already on tranche " + spec.version);
      return;
    }
    if (!downloading_.empty() || upgrade_.switching()) {
      complete(command.id, false, "another agent upgrade is in progress" +
                                      (downloading_.empty() ? std::string() : " (command " + downloading_ + ")"));
      return;
    }
    if (auto name = check_version_name(spec.version); !name) {
      complete(command.id, false, name.error().describe());
      return;
    }
    downloading_ = command.id;
    ArtifactRequest request{server(), options_.ca_file, spec.path, state_.host_token, spec.size};
    asio::co_spawn(io_, download_artifact(io_, request),
                   [this, id = command.id, spec](std::exception_ptr, Result<std::string> body) {
                     downloading_.clear();
                     auto staged = body ? stage_agent_binary(options_.state_dir, spec.version, *body, spec.sha256,
                                                             spec.size)
                                        : Result<fs::path>(std::unexpected(body.error()));
                     if (!staged) {
                       complete(id, false, "tranche " + spec.version + " not staged: " + staged.error().describe());
                       return;
                     }
                     spdlog::info("command {}: switching to tranche {} ({}); back on {} unless connected within {} s",
                                  id, spec.version, staged->string(), build_version(), spec.fallback_seconds);
                     spdlog::default_logger()->flush();
                     const Error failed = upgrade_.switch_to(id, AgentBinary{spec.version, *staged},
                                                             std::chrono::seconds(spec.fallback_seconds));
                     complete(id, false, failed.message + "; still on tranche " + build_version());
                   });
  }

  // A binary on trial that has connected, had its welcome and sent its first
  // heartbeat becomes current (recorded first), then answers its command.
  void confirm_upgrade() {
    const std::string command = upgrade_.trial_command();
    if (command.empty()) {
      return;
    }
    auto outcome = upgrade_.confirm();
    if (!outcome) {
      spdlog::error("cannot confirm the switch of command {}: {}", command, outcome.error().describe());
      return;
    }
    spdlog::info("command {}: {}", command, outcome->message);
    complete(command, outcome->ok, outcome->message);
  }

  // upgradeAgent commands journaled and unanswered at start-up: the switch
  // happened, or fell back, or never began; the record says which.
  void answer_settled_upgrades() {
    std::vector<std::string> open;
    for (const auto& c : state_.commands) {
      if (c.type == "upgradeAgent" && !c.done) {
        open.push_back(c.id);
      }
    }
    for (const auto& id : open) {
      if (auto outcome = upgrade_.settled(id)) {
        complete(id, outcome->ok, outcome->message);
      }
    }
  }

  asio::awaitable<void> heartbeat_loop() {
    while (!stopping_) {
      if (connected_) {
        protocol::Heartbeat hb;
        hb.seq = ++heartbeat_seq_;
        hb.members = members_.heartbeat_reports();
        send_text(protocol::heartbeat_text(hb));
        confirm_upgrade();
      }
      heartbeat_timer_.expires_after(heartbeat_interval_);
      error_code ec;
      co_await heartbeat_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  asio::io_context& io_;
  AgentOptions options_;
  SystemClock clock_;
  Journal journal_;
  SelfUpgrade upgrade_;
  std::string downloading_;  // the upgradeAgent command whose binary is being fetched
  JournalState state_;
  MemberSupervisor members_;
  asio::steady_timer heartbeat_timer_;
  std::optional<asio::steady_timer> backoff_timer_;
  std::unique_ptr<ControllerChannel> channel_;
  std::deque<std::string> outbox_;
  bool writing_ = false;
  int protocol_ = 0;  // agreed in the welcome
  bool connected_ = false;
  bool refused_ = false;  // the current session's controller refused this agent
  bool stopping_ = false;
  uint64_t heartbeat_seq_ = 0;
  std::chrono::milliseconds heartbeat_interval_{2000};
};

namespace {

// A refusal to start goes to stderr, where whoever started the agent looks.
void refuse_to_start(const std::string& message) {
  std::fprintf(stderr, "tranche agent: error: %s\n", message.c_str());
  std::fflush(stderr);
}

}  // namespace

int run_agent(const AgentOptions& options) {
  std::error_code fs_error;
  fs::create_directories(options.state_dir, fs_error);
  if (fs_error) {
    refuse_to_start("cannot create state dir " + options.state_dir.string() + ": " + fs_error.message());
    return 1;
  }
  // One agent per state dir: the lock lives as long as this process.
  const fs::path lock_path = options.state_dir / "agent.lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX | LOCK_NB) != 0) {
    refuse_to_start("another agent is running with state dir " + options.state_dir.string());
    return 1;
  }
  {
    std::ofstream pid(options.state_dir / "agent.pid");
    pid << ::getpid() << '\n';
  }
  if (options.server.empty() && options.server_file.empty()) {
    refuse_to_start("give --server or --server-file");
    return 2;
  }
  // A CA file is read on every connection (a --dev controller may make it
  // after starting its agent); one given with a fixed --server must be there now.
  std::error_code ca_error;
  if (!options.ca_file.empty() && options.server_file.empty() && !fs::is_regular_file(options.ca_file, ca_error)) {
    refuse_to_start("--ca " + options.ca_file + ": no such file");
    return 2;
  }
  asio::io_context io;
  // Before anything else: the binary record may say another build runs.
  AgentStartup startup = settle_startup_binary(options.state_dir);
  if (!startup.note.empty()) {
    spdlog::info("{}", startup.note);
  }
  Agent agent(io, options, std::move(startup));
  if (auto started = agent.start(); !started) {
    refuse_to_start(started.error().describe());
    return 1;
  }
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](error_code ec, int signal) {
    if (!ec) {
      spdlog::info("signal {}: agent stopping; members keep running", signal);
      agent.stop();
    }
  });
  io.run();
  return 0;
}

}  // namespace tranche::agent
