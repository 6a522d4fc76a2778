#include "agent/member_supervisor.h"

#include <signal.h>

#include <algorithm>
#include <fstream>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

namespace tranche::agent {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kPollInterval = 100ms;
constexpr size_t kLogTailBytes = 64 * 1024;

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

MemberSupervisor::MemberSupervisor(asio::io_context& io, fs::path state_dir,
                                   std::map<std::string, JournalMember>& members, Session& session,
                                   std::unique_ptr<Driver> driver)
    : io_(io),
      state_dir_(std::move(state_dir)),
      members_(members),
      session_(session),
      driver_(std::move(driver)),
      poll_timer_(io) {}

void MemberSupervisor::resume(const std::vector<JournalCommand>& commands) {
  stop_unjournaled_processes();
  // Members outlive the agent: take back the ones still running.
  for (auto& [id, m] : members_) {
    if (m.update && m.process && (m.state == "Updating" || m.state == "Restarting")) {
      // Killed during an in-place update: never run its hook again, finish
      // the restart on the new template and answer the same command.
      restart_for_update(
          id, m.state == "Updating" ? "the update hook was interrupted by an agent restart" : m.update->note);
      continue;
    }
    if (m.state == "Maintenance" || m.state == "Restarting") {
      // Killed during a maintenance: restart the member and still resume.
      for (const auto& c : commands) {
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
      for (const auto& c : commands) {
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
      spdlog::info("re-adopted member {} (pid {}, {})", id, m.process->pid, m.healthy ? "healthy" : "not yet healthy");
    }
  }
}

// A process an earlier incarnation started for a member and was killed
// before journaling (a start, or a restart after maintenance or an
// update) runs on for nobody: its spawn record names a live process of
// that member (its environment says so, which also leaves a pid reused
// since alone) that the journal does not know. End it; the journal and
// the replayed commands decide what runs.
void MemberSupervisor::stop_unjournaled_processes() {
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(state_dir_ / "members", ec)) {
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
    auto journaled = members_.find(member);
    if (journaled != members_.end() && journaled->second.process && journaled->second.process->pid == pid) {
      continue;
    }
    spdlog::warn("member {}: pid {} was started by an earlier agent that did not journal it; stopping it", member, pid);
    ::kill(-static_cast<pid_t>(pid), SIGKILL);  // its own process group
  }
}

fs::path MemberSupervisor::member_dir(const std::string& member) const {
  std::string name = member;
  std::replace(name.begin(), name.end(), '/', '_');
  return state_dir_ / "members" / name;
}

void MemberSupervisor::complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data,
                                std::optional<int> exit_code) {
  session_.answer(protocol::CommandResult{id, ok, exit_code, message, std::move(data)});
}

// A member's output, or with spec.hook the output of its last update or
// maintenance hook. Hook logs stay in the member's dir after it stopped.
void MemberSupervisor::send_logs(const protocol::Command& command, const protocol::LogsSpec& spec) {
  if (spec.hook) {  // "update" or "maintenance": the decoder allows no other
    const fs::path file = member_dir(command.member) / (*spec.hook + "-hook.log");
    std::error_code ec;
    const bool exists = fs::exists(file, ec);
    complete(command.id, true, exists ? "ok" : "no output",
             protocol::LogOutput{exists ? tail(file, kLogTailBytes) : "", ""});
    return;
  }
  const fs::path dir = members_.contains(command.member) && members_[command.member].process
                           ? members_[command.member].process->log_dir
                           : fs::path();
  complete(command.id, true, dir.empty() ? "no output" : "ok",
           protocol::LogOutput{dir.empty() ? "" : tail(dir / "stdout.log", kLogTailBytes),
                               dir.empty() ? "" : tail(dir / "stderr.log", kLogTailBytes)});
}

void MemberSupervisor::start_member(const protocol::Command& command, const protocol::StartSpec& start) {
  if (auto it = members_.find(command.member);
      it != members_.end() && it->second.process && it->second.state != "Exited") {
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
  members_[command.member] = std::move(m);
  health_[command.member] = Health{};
  spdlog::info("started member {} (pid {})", command.member, process->pid);
  complete(command.id, true, "started", started(*process));
}

void MemberSupervisor::stop_member(const protocol::Command& command, const protocol::StopSpec& stop) {
  auto it = members_.find(command.member);
  if (it == members_.end() || !it->second.process || it->second.state == "Exited") {
    members_.erase(command.member);
    health_.erase(command.member);
    complete(command.id, true, "not running");
    return;
  }
  JournalMember& m = it->second;
  m.state = "Stopping";
  pending_stops_[command.member] = command.id;
  session_.save_journal();
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
void MemberSupervisor::maintain_member(const protocol::Command& command, const protocol::MaintenanceSpec& maintenance) {
  auto it = members_.find(command.member);
  if (it == members_.end() || !it->second.process || it->second.state != "Running") {
    complete(command.id, false, "member is not running here");
    return;
  }
  JournalMember& m = it->second;
  m.state = "Maintenance";
  pending_maintenance_[command.member] = command.id;
  session_.save_journal();
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

void MemberSupervisor::restart_after_hook(const std::string& member, const std::string& note) {
  auto it = members_.find(member);
  if (it == members_.end()) {
    return;
  }
  it->second.state = "Restarting";
  maintenance_notes_[member] = note;
  session_.save_journal();
  if (it->second.process) {
    driver_->begin_stop(*it->second.process, 10s);
  }
}

// The member's process ended for its maintenance restart: start it again.
void MemberSupervisor::finish_maintenance(const std::string& id, JournalMember& m) {
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
  session_.report(protocol::AgentEvent{"resumed", id, std::nullopt, note});
}

// updates.md, "method: in-place": run the update hook with the target
// revision and version, then restart the member on the new template; if
// the hook fails the old process runs on untouched. The update is
// journaled (with the command's admission) before the hook starts, and
// every later step too, so the hook runs at most once per command id and
// an agent restarted meanwhile still restarts the member and answers.
void MemberSupervisor::update_member(const protocol::Command& command, const protocol::UpdateSpec& request) {
  auto it = members_.find(command.member);
  if (it == members_.end() || !it->second.process || it->second.state == "Exited") {
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
  if (auto saved = session_.save_journal(); !saved) {
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

void MemberSupervisor::on_update_hook(const std::string& member, const std::string& command_id,
                                      const HookOutcome& outcome, const std::string& last_output_line) {
  auto it = members_.find(member);
  if (it == members_.end() || it->second.state != "Updating" || !it->second.update ||
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
void MemberSupervisor::restart_for_update(const std::string& member, const std::string& note) {
  JournalMember& m = members_.at(member);
  m.state = "Restarting";
  m.update->note = note;
  session_.save_journal();
  driver_->begin_stop(*m.process, std::chrono::milliseconds(m.update->grace_ms));
}

// The old process has ended: the new template becomes the member's own.
void MemberSupervisor::finish_update(const std::string& id, JournalMember& m) {
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
    complete(update.command_id, false, update.note + "; starting " + target + " failed: " + process.error().describe());
    return;
  }
  m.process = *process;
  m.state = "Running";
  m.exit_code.reset();
  spdlog::info("member {} updated to {} (pid {}): {}", id, target, process->pid, update.note);
  complete(update.command_id, true, "updated to " + target + ": " + update.note, started(*process));
}

// ---- watching members -------------------------------------------------------

void MemberSupervisor::watch() { asio::co_spawn(io_, poll_loop(), asio::detached); }

void MemberSupervisor::stop_watching() {
  stopping_ = true;
  poll_timer_.cancel();
}

asio::awaitable<void> MemberSupervisor::poll_loop() {
  auto last_rotation = std::chrono::steady_clock::now();
  while (!stopping_) {
    poll_members();
    if (std::chrono::steady_clock::now() - last_rotation > 10s) {
      last_rotation = std::chrono::steady_clock::now();
      for (const auto& [id, m] : members_) {
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

void MemberSupervisor::poll_members() {
  std::vector<std::string> stopped;
  bool changed = false;
  for (auto& [id, m] : members_) {
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
    session_.report(protocol::AgentEvent{"exited", id, status.exit_code, how});
  }
  for (const auto& id : stopped) {
    if (const auto& update = members_.at(id).update) {
      complete(update->command_id, false, "the member was stopped before its update finished");
    }
    members_.erase(id);
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
    session_.save_journal();
  }
}

// Starts a health probe (and a stats read) for a running member when due.
void MemberSupervisor::probe(const std::string& id, const JournalMember& m) {
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

void MemberSupervisor::schedule_probe(const std::string& id, const JournalMember& m, const json& health,
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
    asio::post(io_,
               [this, id, result, figures, threshold = health.is_object() ? health.value("unhealthyThreshold", 3) : 1] {
                 on_probe(id, result, figures, threshold);
               });
  });
}

void MemberSupervisor::journal_health(const std::string& id, bool healthy) {
  if (auto it = members_.find(id); it != members_.end()) {
    it->second.healthy = healthy;
    session_.save_journal();
  }
}

void MemberSupervisor::on_probe(const std::string& id, const std::optional<ProbeResult>& result,
                                const std::optional<Stats>& figures, int threshold) {
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
      session_.report(protocol::AgentEvent{"healthy", id, std::nullopt, "health check passing"});
    }
  } else if (++h.failures >= threshold && h.healthy) {
    h.healthy = false;
    journal_health(id, false);
    session_.report(protocol::AgentEvent{"unhealthy", id, std::nullopt,
                                         result->message + " (" + std::to_string(h.failures) + " checks in a row)"});
  }
}

// ---- what the session tells the controller ----------------------------------

std::vector<protocol::HelloMember> MemberSupervisor::hello_entries() const {
  std::vector<protocol::HelloMember> entries;
  for (const auto& [id, m] : members_) {
    entries.push_back(
        {id, m.spec.revision, m.state, m.process ? std::optional<int64_t>(m.process->pid) : std::nullopt});
  }
  return entries;
}

std::vector<protocol::MemberReport> MemberSupervisor::heartbeat_reports() {
  std::vector<protocol::MemberReport> reports;
  const double host = host_load();
  for (const auto& [id, m] : members_) {
    const Health& h = health_[id];
    protocol::MemberReport r{id,
                             m.state,
                             h.healthy && m.state == "Running",
                             h.stats ? h.stats : protocol::MemberStats{host, std::nullopt},
                             m.process ? std::optional<int64_t>(m.process->pid) : std::nullopt,
                             m.process ? m.process->ports : std::map<std::string, int>{}};
    reports.push_back(std::move(r));
  }
  return reports;
}

}  // namespace tranche::agent
