#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include "agent/agent_binary_stage.h"
#include "agent/artifact_download.h"
#include "agent/command_book.h"
#include "agent/controller_channel.h"
#include "agent/driver.h"
#include "agent/health.h"
#include "agent/journal.h"
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

constexpr auto kPollInterval = 100ms;
constexpr auto kMaxBackoff = 5s;
// After a refusal (a version the controller does not accept, a wrong
// token): what changes it is an operator's doing, not a retry.
constexpr auto kRefusedBackoff = 30s;
constexpr size_t kLogTailBytes = 64 * 1024;

std::string read_first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string tail(const fs::path& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    return {};
  }
  const std::streamoff size = in.tellg();
  const std::streamoff start =
      size > static_cast<std::streamoff>(bytes) ? size - static_cast<std::streamoff>(bytes) : 0;
  in.seekg(start);
  std::string out(static_cast<size_t>(size - start), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

// The last non-empty line of a hook's output, for a one-line message.
std::string last_line(const std::string& output) {
  constexpr size_t kMaxLine = 300;
  const size_t end = output.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) {
    return {};
  }
  const size_t newline = output.rfind('\n', end);
  const size_t begin = newline == std::string::npos ? 0 : newline + 1;
  std::string line = output.substr(begin, end + 1 - begin);
  if (line.size() > kMaxLine) {
    line = line.substr(0, kMaxLine) + "...";
  }
  return line;
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// What the agent knows of one member's health between heartbeats.
struct Health {
  bool healthy = false;
  int failures = 0;
  bool probing = false;
  std::chrono::steady_clock::time_point next_probe{};
  std::optional<protocol::MemberStats> stats;
};

// What the driver needs of a (decoded) start spec.
LaunchSpec launch_spec(const std::string& member, const protocol::StartSpec& s) {
  return LaunchSpec{member, s.app, s.cluster, s.revision, s.version, s.command, s.env, s.workdir, s.ports};
}

// The health and stats blocks as the journal keeps them: the protocol's JSON,
// null when the cluster has none.
json health_block(const protocol::StartSpec& s) { return s.health ? protocol::to_json(*s.health) : json(); }
json stats_block(const protocol::StartSpec& s) { return s.stats ? protocol::to_json(*s.stats) : json(); }

// The data of a result that started a process.
protocol::ProcessStarted started(const MemberProcess& process) { return {process.pid, process.ports}; }

}  // namespace

class Agent {
 public:
  Agent(asio::io_context& io, AgentOptions options, AgentStartup startup)
      : io_(io),
        options_(std::move(options)),
        journal_(options_.state_dir),
        upgrade_(options_.state_dir, clock_, std::move(startup)),
        driver_(make_process_driver()),
        poll_timer_(io),
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
    stop_unjournaled_processes();
    // Members outlive the agent: take back the ones still running.
    for (auto& [id, m] : state_.members) {
      if (m.update && m.process && (m.state == "Updating" || m.state == "Restarting")) {
        // Killed during an in-place update: never run its hook again, finish
        // the restart on the new template and answer the same command.
        restart_for_update(
            id, m.state == "Updating" ? "the update hook was interrupted by an agent restart" : m.update->note);
        continue;
      }
      if (m.state == "Maintenance" || m.state == "Restarting") {
        // Killed during a maintenance: restart the member and still resume.
        for (const auto& c : state_.commands) {
          if (c.type == "maintenance" && c.member == id && !c.done) {
            pending_maintenance_[id] = c.id;
          }
        }
        restart_after_hook(id, m.state == "Maintenance" ? "the hook was interrupted by an agent restart"
                                                        : "resumed after an agent restart");
        continue;
      }
      if (m.state == "Stopping" && m.process) {
        // A stop taken by an earlier incarnation: finish it, even when the
        // process ended meanwhile (poll_members answers the stop).
        for (const auto& c : state_.commands) {
          if (c.type == "stop" && c.member == id && !c.done) {
            pending_stops_[id] = c.id;
          }
        }
        driver_->begin_stop(*m.process, 10s);
        continue;
      }
      if (m.process && m.state != "Exited" && driver_->poll(*m.process).state == ProcessState::kExited) {
        m.state = "Exited";
        spdlog::info("member {} exited while the agent was down", id);
      } else if (m.process) {
        health_[id].healthy = m.healthy;
        spdlog::info("re-adopted member {} (pid {}, {})", id, m.process->pid,
                     m.healthy ? "healthy" : "not yet healthy");
      }
    }
    if (auto saved = save(); !saved) {
      return saved;
    }
    answer_settled_upgrades();
    asio::co_spawn(io_, poll_loop(), asio::detached);
    asio::co_spawn(io_, heartbeat_loop(), asio::detached);
    asio::co_spawn(io_, connection_loop(), asio::detached);
    return {};
  }

  void stop() {
    stopping_ = true;
    poll_timer_.cancel();
    heartbeat_timer_.cancel();
    if (channel_) {
      channel_->close();
    }
    if (backoff_timer_) {
      backoff_timer_->cancel();
    }
  }

 private:
  Status save() {
    auto done = journal_.save(state_);
    if (!done) {
      spdlog::error("journal: {}", done.error().describe());
    }
    return done;
  }

  // ---- connection ---------------------------------------------------------

  std::string server() const {
    return options_.server_file.empty() ? options_.server : read_first_line(options_.server_file);
  }

  std::string join_token() const {
    return options_.join_token_file.empty() ? options_.join_token : read_first_line(options_.join_token_file);
  }

  asio::awaitable<void> connection_loop() {
    auto backoff = 100ms;
    while (!stopping_) {
      refused_ = false;
      const bool welcomed = co_await session();
      if (stopping_) {
        break;
      }
      backoff = welcomed  ? 100ms
                : refused_ ? std::chrono::milliseconds(kRefusedBackoff)
                           : std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
      if (refused_) {
        spdlog::info("connecting again in {} s", kRefusedBackoff.count());
      }
      backoff_timer_.emplace(io_);
      backoff_timer_->expires_after(backoff);
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
    for (const auto& [id, m] : state_.members) {
      h.members.push_back(
          {id, m.spec.revision, m.state, m.process ? std::optional<int64_t>(m.process->pid) : std::nullopt});
    }
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
      if (!save()) {
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
  void send(const json& message) {
    if (!connected_) {
      return;
    }
    outbox_.push_back(message.dump());
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
    if (!std::holds_alternative<protocol::UpdateSpec>(command.spec) && !save()) {
      return;  // not journaled, not acted on; the controller will resend
    }
    std::visit(Overloaded{
                   [&](const protocol::StartSpec& spec) { start_member(command, spec); },
                   [&](const protocol::StopSpec& spec) { stop_member(command, spec); },
                   [&](const protocol::MaintenanceSpec& spec) { maintain_member(command, spec); },
                   [&](const protocol::UpdateSpec& spec) { update_member(command, spec); },
                   [&](const protocol::LogsSpec& spec) { send_logs(command, spec); },
                   [&](const protocol::AgentUpgradeSpec& spec) { upgrade_agent(command, spec); },
               },
               command.spec);
  }

  // A command whose spec (or type) does not decode: journaled and answered
  // with a failed result that names the field, like any other outcome.
  void on_malformed_command(const protocol::CommandHeader& command, const Error& error) {
    spdlog::warn("command {} refused: {}", command.id, error.describe());
    if (!admit(command) || !save()) {
      return;
    }
    complete(command.id, false, "malformed " + command.type + " command: " + error.describe());
  }

  void complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data = {},
                std::optional<int> exit_code = std::nullopt) {
    auto result =
        CommandBook(state_.commands).complete(protocol::CommandResult{id, ok, exit_code, message, std::move(data)});
    if (result) {
      save();
      send(*result);
    }
  }

  void on_result_acked(const std::string& id) {
    if (CommandBook(state_.commands).acknowledge(id)) {
      prune_commands(state_);
      save();
      upgrade_.acknowledged(id);
    }
  }

  void replay_results() {
    for (const auto& result : CommandBook(state_.commands).unacknowledged()) {
      send(result);
    }
  }

  // A process an earlier incarnation started for a member and was killed
  // before journaling (a start, or a restart after maintenance or an
  // update) runs on for nobody: its spawn record names a live process of
  // that member (its environment says so, which also leaves a pid reused
  // since alone) that the journal does not know. End it; the journal and
  // the replayed commands decide what runs.
  void stop_unjournaled_processes() {
    std::error_code ec;
    for (const auto& dir : fs::directory_iterator(options_.state_dir / "members", ec)) {
      std::ifstream record(dir.path() / "logs" / kSpawnRecord);
      int64_t pid = 0;
      if (!(record >> pid) || pid <= 0) {
        continue;
      }
      std::ifstream environ("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
      std::string member;
      for (std::string entry; std::getline(environ, entry, '\0');) {
        if (entry.starts_with("TRANCHE_MEMBER=")) {
          member = entry.substr(std::string_view("TRANCHE_MEMBER=").size());
        }
      }
      if (member.empty() || member_dir(member) != dir.path()) {
        continue;
      }
      auto journaled = state_.members.find(member);
      if (journaled != state_.members.end() && journaled->second.process && journaled->second.process->pid == pid) {
        continue;
      }
      spdlog::warn("member {}: pid {} was started by an earlier agent that did not journal it; stopping it", member,
                   pid);
      ::kill(-static_cast<pid_t>(pid), SIGKILL);  // its own process group
    }
  }

  fs::path member_dir(const std::string& member) const {
    std::string name = member;
    std::replace(name.begin(), name.end(), '/', '_');
    return options_.state_dir / "members" / name;
  }

  // A member's output, or with spec.hook the output of its last update or
  // maintenance hook. Hook logs stay in the member's dir after it stopped.
  void send_logs(const protocol::Command& command, const protocol::LogsSpec& spec) {
    if (spec.hook) {  // "update" or "maintenance": the decoder allows no other
      const fs::path file = member_dir(command.member) / (*spec.hook + "-hook.log");
      std::error_code ec;
      const bool exists = fs::exists(file, ec);
      complete(command.id, true, exists ? "ok" : "no output",
               protocol::LogOutput{exists ? tail(file, kLogTailBytes) : "", ""});
      return;
    }
    const fs::path dir = state_.members.contains(command.member) && state_.members[command.member].process
                             ? state_.members[command.member].process->log_dir
                             : fs::path();
    complete(command.id, true, dir.empty() ? "no output" : "ok",
             protocol::LogOutput{dir.empty() ? "" : tail(dir / "stdout.log", kLogTailBytes),
                                 dir.empty() ? "" : tail(dir / "stderr.log", kLogTailBytes)});
  }

  void start_member(const protocol::Command& command, const protocol::StartSpec& start) {
    if (auto it = state_.members.find(command.member);
        it != state_.members.end() && it->second.process && it->second.state != "Exited") {
      complete(command.id, true, "already running", started(*it->second.process));
      return;
    }
    const LaunchSpec spec = launch_spec(command.member, start);
    auto process = driver_->start(spec, member_dir(command.member) / "logs");
    if (!process) {
      complete(command.id, false, process.error().describe());
      return;
    }
    JournalMember m{spec, health_block(start), stats_block(start), *process, "Running", std::nullopt};
    state_.members[command.member] = std::move(m);
    health_[command.member] = Health{};
    spdlog::info("started member {} (pid {})", command.member, process->pid);
    complete(command.id, true, "started", started(*process));
  }

  void stop_member(const protocol::Command& command, const protocol::StopSpec& stop) {
    auto it = state_.members.find(command.member);
    if (it == state_.members.end() || !it->second.process || it->second.state == "Exited") {
      state_.members.erase(command.member);
      health_.erase(command.member);
      complete(command.id, true, "not running");
      return;
    }
    JournalMember& m = it->second;
    m.state = "Stopping";
    pending_stops_[command.member] = command.id;
    save();
    const auto grace = std::chrono::milliseconds(stop.grace_ms);
    const auto& hook = stop.drain_hook;
    const MemberProcess process = *m.process;
    if (hook.empty()) {
      driver_->begin_stop(process, grace);
      return;
    }
    // The drain hook may take a while: off the event loop, then stop.
    asio::post(pool_, [this, hook, process, grace, env = member_variables(m.spec, process.ports),
                       dir = member_dir(command.member)] {
      run_hook(hook, env, "", dir / "drain-hook.log", 30s);
      asio::post(io_, [this, process, grace] { driver_->begin_stop(process, grace); });
    });
  }

  // model.md, "maintenance restart": run the hook, restart the member, say
  // `resumed`. Every step is journaled, so an agent restarted meanwhile
  // finishes it.
  void maintain_member(const protocol::Command& command, const protocol::MaintenanceSpec& maintenance) {
    auto it = state_.members.find(command.member);
    if (it == state_.members.end() || !it->second.process || it->second.state != "Running") {
      complete(command.id, false, "member is not running here");
      return;
    }
    JournalMember& m = it->second;
    m.state = "Maintenance";
    pending_maintenance_[command.member] = command.id;
    save();
    const auto& hook = maintenance.hook;
    if (hook.empty()) {
      restart_after_hook(command.member, "no maintenance hook");
      return;
    }
    const auto env = member_variables(m.spec, m.process ? m.process->ports : std::map<std::string, int>{});
    const fs::path dir = member_dir(command.member);
    asio::post(pool_, [this, hook, env, dir, member = command.member] {
      const HookOutcome outcome = run_hook(hook, env, "", dir / "maintenance-hook.log", 10min);
      asio::post(io_, [this, member, note = outcome.message] { restart_after_hook(member, note); });
    });
  }

  void restart_after_hook(const std::string& member, const std::string& note) {
    auto it = state_.members.find(member);
    if (it == state_.members.end()) {
      return;
    }
    it->second.state = "Restarting";
    maintenance_notes_[member] = note;
    save();
    if (it->second.process) {
      driver_->begin_stop(*it->second.process, 10s);
    }
  }

  // The member's process ended for its maintenance restart: start it again.
  void finish_maintenance(const std::string& id, JournalMember& m) {
    std::string note = maintenance_notes_[id];
    auto process = driver_->start(m.spec, member_dir(id) / "logs");
    const std::string command = pending_maintenance_[id];
    pending_maintenance_.erase(id);
    maintenance_notes_.erase(id);
    if (!process) {
      m.state = "Exited";
      m.process.reset();
      complete(command, false, "restart after maintenance failed: " + process.error().describe());
      return;
    }
    m.process = *process;
    m.state = "Running";
    m.healthy = false;
    health_[id] = Health{};
    spdlog::info("member {} resumed after maintenance (pid {}): {}", id, process->pid, note);
    complete(command, true, note, started(*process));
    send(protocol::to_json(protocol::AgentEvent{"resumed", id, std::nullopt, note}));
  }

  // updates.md, "method: in-place": run the update hook with the target
  // revision and version, then restart the member on the new template; if
  // the hook fails the old process runs on untouched. The update is
  // journaled (with the command's admission) before the hook starts, and
  // every later step too, so the hook runs at most once per command id and
  // an agent restarted meanwhile still restarts the member and answers.
  void update_member(const protocol::Command& command, const protocol::UpdateSpec& request) {
    auto it = state_.members.find(command.member);
    if (it == state_.members.end() || !it->second.process || it->second.state == "Exited") {
      complete(command.id, false, "member is not running here");
      return;
    }
    JournalMember& m = it->second;
    if (m.state != "Running") {
      complete(command.id, false, "member is " + m.state + ", not Running: update refused");
      return;
    }
    m.update = PendingUpdate{command.id,
                             launch_spec(command.member, request.target),
                             health_block(request.target),
                             stats_block(request.target),
                             request.grace_ms,
                             ""};
    m.state = "Updating";
    if (auto saved = save(); !saved) {
      m.update.reset();
      m.state = "Running";
      complete(command.id, false, "cannot journal the update: " + saved.error().describe());
      return;
    }
    if (request.hook.empty()) {
      restart_for_update(command.member, "no update hook");
      return;
    }
    const LaunchSpec& target = m.update->spec;
    auto env = member_variables(target, m.process->ports);
    env["TRANCHE_TARGET_REVISION"] = std::to_string(target.revision);
    // Where the member itself runs now: the new template's workdir may be
    // what the hook is about to create.
    const fs::path workdir = m.spec.workdir.empty() ? m.process->log_dir : fs::path(m.spec.workdir);
    const fs::path output = member_dir(command.member) / "update-hook.log";
    asio::post(pool_, [this, hook = request.hook, env, workdir, output, member = command.member, id = command.id] {
      std::error_code ignored;
      fs::remove(output, ignored);  // the log holds the latest run only
      const HookOutcome outcome = run_hook(hook, env, workdir, output, 10min);
      const std::string line = last_line(tail(output, kLogTailBytes));
      asio::post(io_, [this, member, id, outcome, line] { on_update_hook(member, id, outcome, line); });
    });
  }

  void on_update_hook(const std::string& member, const std::string& command_id, const HookOutcome& outcome,
                      const std::string& last_output_line) {
    auto it = state_.members.find(member);
    if (it == state_.members.end() || it->second.state != "Updating" || !it->second.update ||
        it->second.update->command_id != command_id) {
      return;  // stopped meanwhile; the stop answers the update
    }
    if (outcome.exit_code == 0) {
      restart_for_update(member, "update hook succeeded");
      return;
    }
    JournalMember& m = it->second;
    m.update.reset();
    m.state = "Running";
    const bool exited = outcome.message.starts_with("hook exited");
    std::string message =
        "update hook failed (" + (exited ? "exit " + std::to_string(outcome.exit_code) : outcome.message) + ")";
    if (!last_output_line.empty()) {
      message += ": " + last_output_line;
    }
    spdlog::warn("member {}: {}; it keeps running revision {}", member, message, m.spec.revision);
    complete(command_id, false, message, {},
             outcome.exit_code >= 0 ? std::optional<int>(outcome.exit_code) : std::nullopt);
  }

  // The hook is over (or there is none, or it was interrupted): stop the old
  // process; poll_members starts the new one once it has ended.
  void restart_for_update(const std::string& member, const std::string& note) {
    JournalMember& m = state_.members.at(member);
    m.state = "Restarting";
    m.update->note = note;
    save();
    driver_->begin_stop(*m.process, std::chrono::milliseconds(m.update->grace_ms));
  }

  // The old process has ended: the new template becomes the member's own.
  void finish_update(const std::string& id, JournalMember& m) {
    PendingUpdate update = std::move(*m.update);
    m.update.reset();
    m.spec = std::move(update.spec);
    m.health = std::move(update.health);
    m.stats = std::move(update.stats);
    m.healthy = false;
    health_[id] = Health{};
    const std::string target = "revision " + std::to_string(m.spec.revision) + " (version " + m.spec.version + ")";
    auto process = driver_->start(m.spec, member_dir(id) / "logs");
    if (!process) {
      m.state = "Exited";
      m.process.reset();
      complete(update.command_id, false,
               update.note + "; starting " + target + " failed: " + process.error().describe());
      return;
    }
    m.process = *process;
    m.state = "Running";
    m.exit_code.reset();
    spdlog::info("member {} updated to {} (pid {}): {}", id, target, process->pid, update.note);
    complete(update.command_id, true, "updated to " + target + ": " + update.note, started(*process));
  }

  // ---- watching members -------------------------------------------------------

  asio::awaitable<void> poll_loop() {
    auto last_rotation = std::chrono::steady_clock::now();
    while (!stopping_) {
      poll_members();
      if (std::chrono::steady_clock::now() - last_rotation > 10s) {
        last_rotation = std::chrono::steady_clock::now();
        for (const auto& [id, m] : state_.members) {
          if (m.process) {
            driver_->rotate_logs(*m.process);
          }
        }
      }
      poll_timer_.expires_after(kPollInterval);
      error_code ec;
      co_await poll_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  void poll_members() {
    std::vector<std::string> stopped;
    bool changed = false;
    for (auto& [id, m] : state_.members) {
      if (!m.process || m.state == "Exited") {
        continue;
      }
      const ProcessStatus status = driver_->poll(*m.process);
      if (m.state == "Maintenance" || m.state == "Updating") {
        continue;  // the hook may restart the workload itself
      }
      if (status.state == ProcessState::kRunning) {
        if (m.state == "Running") {
          probe(id, m);
        }
        continue;
      }
      if (m.state == "Restarting") {
        if (m.update) {
          finish_update(id, m);
        } else {
          finish_maintenance(id, m);
        }
        changed = true;
        continue;
      }
      if (m.state == "Stopping") {
        stopped.push_back(id);
        continue;
      }
      m.state = "Exited";
      m.exit_code = status.exit_code;
      changed = true;
      std::string how = status.exit_code ? "exit code " + std::to_string(*status.exit_code)
                        : status.signal  ? "killed by signal " + std::to_string(*status.signal)
                                         : "exit status unknown";
      spdlog::warn("member {} exited ({})", id, how);
      send(protocol::to_json(protocol::AgentEvent{"exited", id, status.exit_code, how}));
    }
    for (const auto& id : stopped) {
      if (const auto& update = state_.members.at(id).update) {
        complete(update->command_id, false, "the member was stopped before its update finished");
      }
      state_.members.erase(id);
      health_.erase(id);
      changed = true;
      spdlog::info("member {} stopped", id);
      if (auto it = pending_stops_.find(id); it != pending_stops_.end()) {
        const std::string command = it->second;
        pending_stops_.erase(it);
        complete(command, true, "stopped");
      }
    }
    if (changed) {
      save();
    }
  }

  // Starts a health probe (and a stats read) for a running member when due.
  void probe(const std::string& id, const JournalMember& m) {
    Health& h = health_[id];
    const auto now = std::chrono::steady_clock::now();
    if (h.probing || now < h.next_probe) {
      return;
    }
    const json& health = m.health;
    if (!health.is_object()) {
      h.healthy = true;  // no check declared: running is healthy
      h.next_probe = now + 1s;
      if (m.stats.is_object()) {
        schedule_probe(id, m, nullptr, 1s);
      }
      return;
    }
    const auto interval = std::chrono::seconds(health.value("intervalSeconds", 1));
    schedule_probe(id, m, health, interval);
  }

  void schedule_probe(const std::string& id, const JournalMember& m, const json& health,
                      std::chrono::milliseconds interval) {
    Health& h = health_[id];
    h.probing = true;
    h.next_probe = std::chrono::steady_clock::now() + interval;
    const auto ports = m.process->ports;
    auto port_of = [ports](const json& block) {
      auto it = ports.find(block.value("port", ""));
      return it == ports.end() ? 0 : it->second;
    };
    asio::post(pool_, [this, id, health, stats = m.stats, port_of] {
      std::optional<ProbeResult> result;
      if (health.is_object()) {
        const auto timeout = std::chrono::seconds(health.value("timeoutSeconds", 1));
        if (health.contains("http")) {
          result = probe_http(port_of(health["http"]), health["http"].value("path", "/"), timeout);
        } else if (health.contains("tcp")) {
          result = probe_tcp(port_of(health["tcp"]), timeout);
        } else if (health.contains("exec")) {
          result = probe_exec(health["exec"].get<std::vector<std::string>>(), timeout);
        }
      }
      std::optional<Stats> figures;
      if (stats.is_object() && stats.contains("http")) {
        figures = read_stats(port_of(stats["http"]), stats["http"].value("path", "/"), 1s);
      }
      asio::post(
          io_, [this, id, result, figures, threshold = health.is_object() ? health.value("unhealthyThreshold", 3) : 1] {
            on_probe(id, result, figures, threshold);
          });
    });
  }

  void journal_health(const std::string& id, bool healthy) {
    if (auto it = state_.members.find(id); it != state_.members.end()) {
      it->second.healthy = healthy;
      save();
    }
  }

  void on_probe(const std::string& id, const std::optional<ProbeResult>& result, const std::optional<Stats>& figures,
                int threshold) {
    auto it = health_.find(id);
    if (it == health_.end()) {
      return;  // stopped meanwhile
    }
    Health& h = it->second;
    h.probing = false;
    if (figures) {
      h.stats = protocol::MemberStats{figures->load, figures->requests_in_flight};
    }
    if (!result) {
      return;
    }
    if (result->ok) {
      h.failures = 0;
      if (!h.healthy) {
        h.healthy = true;
        journal_health(id, true);
        send(protocol::to_json(protocol::AgentEvent{"healthy", id, std::nullopt, "health check passing"}));
      }
    } else if (++h.failures >= threshold && h.healthy) {
      h.healthy = false;
      journal_health(id, false);
      send(protocol::to_json(protocol::AgentEvent{
          "unhealthy", id, std::nullopt, result->message + " (" + std::to_string(h.failures) + " checks in a row)"}));
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
        const double host = host_load();
        for (const auto& [id, m] : state_.members) {
          const Health& h = health_[id];
          protocol::MemberReport r{id,
                                   m.state,
                                   h.healthy && m.state == "Running",
                                   h.stats ? h.stats : protocol::MemberStats{host, std::nullopt},
                                   m.process ? std::optional<int64_t>(m.process->pid) : std::nullopt,
                                   m.process ? m.process->ports : std::map<std::string, int>{}};
          hb.members.push_back(std::move(r));
        }
        send(protocol::to_json(hb));
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
  std::unique_ptr<Driver> driver_;
  asio::thread_pool pool_{4};
  asio::steady_timer poll_timer_;
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
  std::map<std::string, Health> health_;
  std::map<std::string, std::string> pending_stops_;        // member -> stop command id
  std::map<std::string, std::string> pending_maintenance_;  // member -> maintenance command id
  std::map<std::string, std::string> maintenance_notes_;    // member -> what its hook did
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
