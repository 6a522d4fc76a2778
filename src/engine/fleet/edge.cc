// The fleet's edge to its agents: hellos, heartbeats, results and events
// coming in (through the inbox), and member logs asked of agents; the
// commands going out are commands.cc's.

#include "engine/fleet/fleet.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/overloaded.h"
#include "common/secrets.h"
#include "common/time_format.h"
#include "engine/events.h"

namespace tranche {

namespace {

using nlohmann::json;

// "web-01.example" -> "web-01-example": host ids are resource names.
std::string host_id_for(const std::string& hostname) {
  std::string id;
  for (char c : hostname) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    id.push_back((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9') ? lower : '-');
  }
  while (!id.empty() && id.front() == '-') id.erase(id.begin());
  if (id.size() > 50) id.resize(50);
  while (!id.empty() && id.back() == '-') id.pop_back();
  return (id.empty() ? "host" : id) + "-" + random_hex(2);
}

bool agent_runs(const std::string& agent_state) {
  return agent_state == "Starting" || agent_state == "Running" || agent_state == "Stopping" ||
         agent_state == "Maintenance" || agent_state == "Restarting" || agent_state == "Updating";
}

}  // namespace

Result<std::string> Fleet::connect(const protocol::Hello& hello, std::shared_ptr<AgentLink> link) {
  auto connected = connect_and_stage(hello, std::move(link));
  wake_or_flush();
  return connected;
}

Result<std::string> Fleet::connect_and_stage(const protocol::Hello& hello, std::shared_ptr<AgentLink> link) {
  std::lock_guard lock(mu_);
  // What an earlier connection of this host said is handled before this
  // one's hello, as it arrived.
  drain_inbox();
  const TimePoint now = clock_.now();
  HostEntry* host = nullptr;
  if (!hello.host_token.empty()) {
    auto it = hosts_.find(hello.host_id);
    if (it == hosts_.end() || !constant_time_equals(sha256_hex(hello.host_token), it->second.record.token_hash)) {
      return fail(ErrorCode::kUnauthenticated, "unknown host or wrong host token");
    }
    host = &it->second;
  } else if (!constant_time_equals(sha256_hex(hello.join_token), join_token_hash_)) {
    return fail(ErrorCode::kUnauthenticated, "wrong join token");
  }
  // Authenticated: from here on a refusal is recorded against the host.
  auto agreed = protocol::negotiate({hello.oldest_protocol, hello.protocol});
  auto compatible = agreed ? protocol::check_skew(hello.agent_version, options_.controller_version)
                           : Status(std::unexpected(agreed.error()));
  if (!compatible) {
    record_refusal(host, hello, now, compatible.error().message);
    return std::unexpected(compatible.error());
  }
  std::string host_token = hello.host_token;
  if (host == nullptr) {
    host_token = "ht_" + random_hex(32);
    auto joined = join(hello, host_token, now);
    if (!joined) {
      return std::unexpected(joined.error());
    }
    host = *joined;
  }
  host->protocol = *agreed;
  host->refused.clear();
  if (host->link && host->link.get() != link.get()) {
    host->link->close("replaced by a newer connection of the same host");
  }
  host->address = link->peer_address();
  host->agent_version = hello.agent_version;
  host->link = std::move(link);
  host->last_seen = now;
  deadlines_.arrived(host->record.id, now);
  if (host->record.labels != hello.labels || host->record.slots != hello.slots ||
      host->record.hostname != hello.hostname) {
    HostRecord next = host->record;
    next.labels = hello.labels;
    next.slots = hello.slots;
    next.hostname = hello.hostname;
    WriteBatch batch;
    batch.mutations.push_back(PutHost{next});
    stage(std::move(batch));
    host->record = std::move(next);
  }
  if (host->record.state == kHostUnreachable || host->record.state == "Left") {
    (void)set_host_state(*host, kHostReady, "agent reconnected");
  }
  protocol::Welcome welcome{host->record.id, host_token,
                            static_cast<double>(options_.heartbeat_interval.count()) / 1000.0, host->protocol};
  host->link->send(protocol::to_json(welcome).dump());
  host->link->agree(host->protocol);
  if (auto on_host = by_host_.find(host->record.id); on_host != by_host_.end()) {
    for (auto& [id, m] : on_host->second) {
      m->command_sent = false;  // a new connection: outstanding commands go out again
      outstanding_.try_emplace(id, m);
    }
  }
  reconcile_hello(*host, hello);
  agent_upgrade_hello(*host, hello);
  return host->record.id;
}

// The same hostname and labels are the same machine (tests run several
// agents on one, told apart by their labels).
Fleet::HostEntry* Fleet::refused_joiner(const protocol::Hello& hello) {
  for (const auto& id : refused_hosts_) {
    HostEntry& h = hosts_.at(id);
    if (h.record.hostname == hello.hostname && h.record.labels == hello.labels) {
      return &h;
    }
  }
  return nullptr;
}

Result<Fleet::HostEntry*> Fleet::join(const protocol::Hello& hello, const std::string& host_token, TimePoint now) {
  HostEntry* refused = refused_joiner(hello);
  HostRecord record{refused ? refused->record.id : host_id_for(hello.hostname),
                    hello.hostname,
                    kHostReady,
                    hello.labels,
                    hello.slots,
                    sha256_hex(host_token),
                    refused ? refused->record.registered_at : now,
                    now};
  WriteBatch batch;
  batch.mutations.push_back(PutHost{record});
  batch.mutations.push_back(AppendEvent{make_event(now, "", "host/" + record.id, "", "HostStateChanged",
                                                   refused ? json(kHostRefused) : json(""), kHostReady,
                                                   "host " + record.id + " (" + hello.hostname + ") joined")});
  // Durable before its token goes out in the welcome.
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  if (refused) {
    refused_hosts_.erase(refused->record.id);
    refused->record = std::move(record);
    return refused;
  }
  const std::string id = record.id;
  return &(hosts_[id] = HostEntry{std::move(record), nullptr, {}, now});
}

void Fleet::record_refusal(HostEntry* host, const protocol::Hello& hello, TimePoint now, const std::string& why) {
  WriteBatch batch;
  if (host == nullptr) {
    host = refused_joiner(hello);
  }
  if (host == nullptr) {
    // A token nobody holds: the record is taken over by the first join of
    // this hostname that is welcomed.
    HostRecord record{host_id_for(hello.hostname), hello.hostname, kHostRefused, hello.labels, hello.slots,
                      sha256_hex("ht_" + random_hex(32)), now, now};
    batch.mutations.push_back(PutHost{record});
    const std::string id = record.id;
    host = &(hosts_[id] = HostEntry{std::move(record), nullptr, {}, now});
    refused_hosts_.insert(id);
  }
  host->agent_version = hello.agent_version;
  if (host->refused == why) {
    return;  // said once: a refused agent retries every half minute
  }
  host->refused = why;
  spdlog::warn("host {}: agent refused: {}", host->record.id, why);
  batch.mutations.push_back(AppendEvent{make_event(now, "", "host/" + host->record.id, "", "HostRefused", "", "",
                                                   "agent of host " + host->record.id + " (" + hello.hostname +
                                                       ") refused: " + why)});
  stage(std::move(batch));
}

void Fleet::reconcile_hello(HostEntry& h, const protocol::Hello& hello) {
  std::map<std::string, const protocol::HelloMember*> running;
  for (const auto& m : hello.members) {
    running[m.id] = &m;
  }
  const MemberIndex on_host = by_host_.contains(h.record.id) ? by_host_.at(h.record.id) : MemberIndex{};
  for (auto& [id, member] : on_host) {
    MemberEntry& m = *member;
    auto it = running.find(id);
    const bool runs = it != running.end() && agent_runs(it->second->state);
    if (m.state == MemberState::kUnreachable) {
      if (!runs) {
        (void)set_state(m, MemberState::kFailed, "host " + h.record.id + " came back without it");
        continue;
      }
      // Replaced meanwhile (the usual case) or still needed.
      const ClusterSpec* spec = cluster_spec(m);
      if (spec == nullptr || live_in(m.roster) >= spec->members.desired) {
        (void)set_state(m, MemberState::kStopping, "stale: replaced while host " + h.record.id + " was unreachable");
      } else if (m.active_when_lost) {
        (void)set_state(m, MemberState::kActive, "host " + h.record.id + " is back and still runs it, as it was");
      } else {
        (void)set_state(m, MemberState::kStarting, "host " + h.record.id + " is back and still runs it");
      }
    } else if (!runs && (m.state == MemberState::kActive || m.state == MemberState::kUpdating ||
                         m.state == MemberState::kMaintenance || m.state == MemberState::kDraining)) {
      (void)set_state(m, MemberState::kFailed, "host " + h.record.id + " no longer runs it");
    }
    if (it != running.end()) {
      running.erase(it);
    }
  }
  // What the agent runs that the controller no longer wants.
  for (const auto& [id, m] : running) {
    if (agent_runs(m->state)) {
      send(h, protocol::Command{"stop:" + id, id, protocol::StopSpec{options_.stop_grace.count(), {}}});
    }
  }
}

void Fleet::disconnect(const std::string& host_id, const AgentLink* link) {
  {
    std::lock_guard lock(mu_);
    drain_inbox();  // what the connection said before it closed, on its link
    auto it = hosts_.find(host_id);
    if (it != hosts_.end() && it->second.link.get() == link) {
      it->second.link.reset();
      spdlog::info("host {}: agent disconnected", host_id);
    }
  }
  wake_or_flush();
}

void Fleet::receive(const std::string& host_id, protocol::AgentMessage message) {
  const TimePoint arrived = clock_.now();
  deadlines_.arrived(host_id, arrived);  // before any queue or lock: see host_deadlines.h
  // A heartbeat changes something durable only now and then (a member's
  // pid, health), an ack nothing (its command's result follows): the inbox's
  // next turn takes them. A result waits for its ack, an event may fail a
  // member: the committer takes those at once. (A batch's 10,000 acks woke
  // the committer for nothing.)
  const bool urgent =
      std::holds_alternative<protocol::CommandResult>(message) || std::holds_alternative<protocol::AgentEvent>(message);
  inbox_.push({host_id, arrived, std::move(message)});
  if (!committer_attached_.load(std::memory_order_acquire)) {
    (void)flush();
  } else if (urgent) {
    wake_committer_();
  }
}

void Fleet::handle_inbox() {
  if (inbox_.empty()) {
    return;  // an idle fleet: not even the fleet's lock
  }
  {
    std::lock_guard lock(mu_);
    drain_inbox();
  }
  wake_or_flush();  // a heartbeat's changes (a pid, a member now Active) are written as a result's are
}

void Fleet::drain_inbox() {
  inbox_batch_ = inbox_.take(std::move(inbox_batch_));
  const uint64_t changes_before = state_changes_;
  Histogram heartbeats;  // added to heartbeat_handling_ once per batch, not once per heartbeat
  for (const AgentInbox::Entry& entry : inbox_batch_) {
    receive_locked(entry.host, entry.arrived, entry.message);
    if (std::holds_alternative<protocol::Heartbeat>(entry.message)) {
      heartbeats.observe(std::chrono::duration<double>(clock_.now() - entry.arrived).count());
    }
    seal_group_if_large();  // each message's changes stand on their own
  }
  agent_changed_member_ = agent_changed_member_ || state_changes_ != changes_before;
  if (heartbeats.count() > 0) {
    std::lock_guard lock(heartbeat_handling_mu_);
    heartbeat_handling_.merge(heartbeats);
  }
  // A burst (100,000 results) leaves no large buffer behind.
  constexpr size_t kKeptCapacity = 4096;
  if (inbox_batch_.capacity() > kKeptCapacity) {
    inbox_batch_ = {};
  } else {
    inbox_batch_.clear();
  }
}

void Fleet::receive_locked(const std::string& host_id, TimePoint arrived, const protocol::AgentMessage& message) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    return;
  }
  HostEntry& h = it->second;
  if (!h.link) {
    // Its connection was closed (heartbeat timeout) while this message was
    // on its way: the agent reconnects and sends again what was not
    // acknowledged, and an ack has no connection to go out on.
    return;
  }
  h.last_seen = std::max(h.last_seen, arrived);
  std::visit(
      Overloaded{
          [&](const protocol::Heartbeat& hb) { on_heartbeat(h, hb); },
          [&](const protocol::CommandResult& r) {
            // Acknowledged once its effect is durable: until then the agent keeps it.
            after_commit([link = h.link, ack = protocol::to_json(protocol::Ack{r.id}).dump()] { link->send(ack); });
            on_result(h, r);
          },
          [&](const protocol::AgentEvent& e) { on_event(h, e); },
          [](const protocol::Ack&) {},  // the agent has a command: its result follows
      },
      message);
}

Histogram Fleet::heartbeat_handling() const {
  std::lock_guard lock(heartbeat_handling_mu_);
  return heartbeat_handling_;
}

void Fleet::reject(const std::string& host_id, const Error& reason) {
  // Not a sign of life: an agent that only sends what does not decode is
  // Unreachable after the heartbeat timeout, as if it sent nothing.
  rejected_messages_.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("host {}: agent message rejected: {}", host_id, reason.describe());
}

void Fleet::on_heartbeat(HostEntry& h, const protocol::Heartbeat& hb) {
  // A host token only speaks for its own members: only they are looked up.
  auto on_host = by_host_.find(h.record.id);
  if (on_host == by_host_.end()) {
    return;
  }
  for (const auto& report : hb.members) {
    if (auto it = on_host->second.find(report.id); it != on_host->second.end()) {
      on_report(*it->second, report);
    }
  }
}

void Fleet::on_report(MemberEntry& m, const protocol::MemberReport& report) {
  m.stats = report.stats;
  if (report.stats && m.state == MemberState::kActive) {
    if (!m.load) {
      m.load = &loads_[m.record.app + "/" + m.record.cluster];
    }
    const TimePoint now = clock_.now();
    m.load->add(now, report.stats->load);
    if (!m.load->observed_since) {
      m.load->observed_since = now;
    }
  }
  if (report.state == "Exited" && (m.state == MemberState::kStarting || m.state == MemberState::kActive)) {
    (void)set_state(m, MemberState::kFailed, "the process exited");
    return;
  }
  if (report.state != "Running") {
    return;
  }
  if (report.pid && report.pid != m.record.pid && may_run(m.state)) {
    // A process the agent (re)started, e.g. after a maintenance: keep pid and ports true.
    MemberRecord next = m.record;
    next.pid = report.pid;
    next.ports = report.ports;
    WriteBatch batch;
    batch.mutations.push_back(PutMember{next});
    stage(std::move(batch));
    m.record = std::move(next);
    note_change(m);
  }
  m.healthy = report.healthy;
  if (m.state == MemberState::kStarting) {
    if (!report.healthy) {
      m.healthy_since.reset();
    } else if (!m.healthy_since) {
      m.healthy_since = clock_.now();
    }
  } else if (m.state == MemberState::kActive && !report.healthy) {
    (void)set_state(m, MemberState::kFailed, "health checks failing beyond the threshold");
  }
}

void Fleet::on_result(HostEntry& h, const protocol::CommandResult& result) {
  if (result.id.starts_with("upgradeAgent:")) {
    agent_upgrade_outcome(h, result.id, result.ok, result.message);
    return;
  }
  if (result.id.starts_with("logs:")) {
    if (auto it = log_requests_.find(result.id); it != log_requests_.end()) {
      LogRequest request = std::move(it->second);
      log_requests_.erase(it);
      if (!result.ok) {
        request.done(fail(ErrorCode::kUnavailable, "agent: " + result.message));
        return;
      }
      const protocol::LogOutput* output = result.logs();
      request.done(json{{"member", request.member},
                        {"stdout", output ? output->out : std::string()},
                        {"stderr", output ? output->err : std::string()}});
    }
    return;
  }
  // "start:ID", "stop:ID", "maintenance:ID:N" (N tells one maintenance from
  // the next), "update:ID:REVISION".
  const size_t colon = result.id.find(':');
  const std::string kind = result.id.substr(0, colon);
  std::string member = result.id.substr(colon + 1);
  if (kind == "maintenance" || kind == "update") {
    member = member.substr(0, member.rfind(':'));
  }
  auto it = members_.find(member);
  if (it == members_.end() || it->second.record.host != h.record.id) {
    return;  // stale or duplicate: harmless
  }
  MemberEntry& m = it->second;
  if (kind == "start" && m.state == MemberState::kStarting) {
    if (!result.ok) {
      (void)set_state(m, MemberState::kFailed, "start failed: " + result.message);
      return;
    }
    if (m.record.pid) {
      // The replayed result of the member's first start (its id never
      // changes): an in-place update or a maintenance restart has started
      // the process the record names since.
      return;
    }
    MemberRecord next = m.record;
    if (const protocol::ProcessStarted* started = result.process()) {
      next.pid = started->pid;
      next.ports = started->ports.value_or(next.ports);
    }
    if (next != m.record) {
      WriteBatch batch;
      batch.mutations.push_back(PutMember{next});
      stage(std::move(batch));
      m.record = std::move(next);
      note_change(m);
    }
  } else if (kind == "maintenance" && m.state == MemberState::kMaintenance && result.id == maintenance_command_id(m)) {
    if (result.ok) {
      resume_after_maintenance(m, result.message, result.process());
    } else {
      (void)set_state(m, MemberState::kFailed, "maintenance failed: " + result.message);
    }
  } else if (kind == "update" && m.state == MemberState::kUpdating && result.id == update_command_id(m)) {
    if (!result.ok) {
      (void)set_state(m, MemberState::kFailed, "update failed: " + result.message);
      return;
    }
    if (const protocol::ProcessStarted* started = result.process()) {
      m.record.pid = started->pid;
      m.record.ports = started->ports.value_or(m.record.ports);
    }
    (void)set_state(m, MemberState::kStarting,
                    "updated in place to revision " + std::to_string(m.record.revision) +
                        (result.message.empty() ? "" : ": " + result.message));
  } else if (kind == "stop" && m.state == MemberState::kStopping) {
    (void)set_state(m, MemberState::kTerminated, result.ok ? "stopped" : "stop reported: " + result.message);
    forget(it);
  }
}

void Fleet::on_event(HostEntry& h, const protocol::AgentEvent& e) {
  auto it = members_.find(e.member);
  if (it == members_.end() || it->second.record.host != h.record.id) {
    return;
  }
  MemberEntry& m = it->second;
  if (e.type == "exited" && (m.state == MemberState::kStarting || m.state == MemberState::kActive)) {
    const std::string how = e.exit_code ? "exited with code " + std::to_string(*e.exit_code) : "exited";
    (void)set_state(m, MemberState::kFailed, how + (e.message.empty() ? "" : ": " + e.message));
  } else if (e.type == "resumed" && m.state == MemberState::kMaintenance) {
    resume_after_maintenance(m, e.message, nullptr);
  } else if (e.type == "unhealthy" && m.state == MemberState::kActive) {
    (void)set_state(m, MemberState::kFailed, "unhealthy: " + e.message);
  } else if (e.type == "healthy" && m.state == MemberState::kStarting && !m.healthy_since) {
    m.healthy = true;
    m.healthy_since = clock_.now();
  }
}

void Fleet::logs(const std::string& member_id, const std::optional<std::string>& visible_app,
                 const std::optional<std::string>& hook, std::chrono::milliseconds timeout, LogsCallback done) {
  if (hook && *hook != "update" && *hook != "maintenance") {
    return done(fail(ErrorCode::kInvalid, "hook must be update or maintenance", "hook"));
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (visible_app && app != *visible_app) {
    return done(fail(ErrorCode::kNotFound, "member '" + member_id + "' not found"));
  }
  std::lock_guard lock(mu_);
  std::string host_id;
  if (auto it = members_.find(member_id); it != members_.end()) {
    host_id = it->second.record.host;
  } else if (auto record = store_.get_member(app, member_id); record && *record) {
    host_id = (*record)->host;
  } else {
    return done(fail(ErrorCode::kNotFound, "member '" + member_id + "' not found"));
  }
  auto host = hosts_.find(host_id);
  if (host == hosts_.end() || !host->second.link) {
    return done(fail(ErrorCode::kUnavailable, "the agent of host " + host_id + " is not connected"));
  }
  const std::string id = "logs:" + random_hex(8);
  log_requests_[id] = LogRequest{member_id, clock_.now() + timeout, timeout, std::move(done)};
  send(host->second, protocol::Command{id, member_id, protocol::LogsSpec{hook}});
}

void Fleet::expire_log_requests() {
  const TimePoint now = clock_.now();
  for (auto it = log_requests_.begin(); it != log_requests_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    it->second.done(
        fail(ErrorCode::kUnavailable, "the agent did not send the logs within " + format_duration(it->second.timeout)));
    it = log_requests_.erase(it);
  }
}

}  // namespace tranche
