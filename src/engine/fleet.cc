#include "engine/fleet.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/secrets.h"
#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/scheduler.h"
#include "lb/load_balancer.h"

namespace tranche {

namespace {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr const char* kHostReady = "Ready";
constexpr const char* kHostUnreachable = "Unreachable";
constexpr const char* kHostDraining = "Draining";

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

Fleet::Fleet(Store& store, const Clock& clock, FleetOptions options)
    : store_(store), clock_(clock), options_(std::move(options)), join_token_hash_(sha256_hex(options_.join_token)) {}

void Fleet::attach_balancer(BalancerSync& balancer) {
  std::lock_guard lock(mu_);
  balancer_ = &balancer;
}

Status Fleet::load() {
  std::lock_guard lock(mu_);
  auto hosts = store_.list_hosts();
  if (!hosts) {
    return std::unexpected(hosts.error());
  }
  const TimePoint now = clock_.now();
  for (auto& h : *hosts) {
    hosts_[h.id] = HostEntry{h, nullptr, {}, now, {}};
  }
  auto members = store_.list_members(MemberQuery{});
  if (!members) {
    return std::unexpected(members.error());
  }
  for (auto& m : *members) {
    const std::string key = m.app + "/" + m.cluster;
    last_ordinal_[key] = std::max(last_ordinal_[key], m.ordinal);
    auto state = member_state_from_string(m.state);
    if (!state) {
      return fail(ErrorCode::kInternal, "member " + m.id + " has unknown state " + m.state);
    }
    if (*state != MemberState::kTerminated) {
      members_[m.id] = MemberEntry{m, *state};
    }
  }
  spdlog::info("fleet: {} hosts, {} members loaded", hosts_.size(), members_.size());
  return {};
}

Status Fleet::set_state(MemberEntry& m, MemberState to, const std::string& reason, std::vector<Mutation> also) {
  return set_states({&m}, to, reason, std::move(also));
}

// One commit for all of them: a fan-out to thousands of members costs one
// fsync, not one each.
Status Fleet::set_states(const std::vector<MemberEntry*>& members, MemberState to, const std::string& reason,
                         std::vector<Mutation> also) {
  const TimePoint now = clock_.now();
  std::vector<MemberRecord> next;
  WriteBatch batch;
  for (const MemberEntry* m : members) {
    if (!can_transition(m->state, to)) {
      return fail(ErrorCode::kInternal, "member " + m->record.id + ": no transition " +
                                            std::string(to_string(m->state)) + " -> " + std::string(to_string(to)));
    }
    MemberRecord& n = next.emplace_back(m->record);
    n.state = std::string(to_string(to));
    n.updated_at = now;
    if (is_live(to)) {
      n.healing_delayed_since.reset();  // nothing left to heal
    }
    batch.mutations.push_back(PutMember{n});
    batch.mutations.push_back(
        AppendEvent{make_event(now, m->record.app, full_path(m->record.app, m->record.cluster), m->record.id,
                               "MemberStateChanged", m->record.state, n.state, reason)});
  }
  std::move(also.begin(), also.end(), std::back_inserter(batch.mutations));
  if (auto done = store_.commit(batch); !done) {
    spdlog::error("{} member(s), first {}: cannot persist -> {}: {}", members.size(),
                  members.empty() ? "" : members.front()->record.id, to_string(to), done.error().describe());
    return std::unexpected(done.error());
  }
  for (size_t i = 0; i < members.size(); ++i) {
    MemberEntry& m = *members[i];
    spdlog::info("member {} {} -> {}: {}", m.record.id, m.record.state, next[i].state, reason);
    m.record = std::move(next[i]);
    m.state = to;
    m.command_sent = false;
    if (to != MemberState::kStarting && to != MemberState::kActive) {
      m.healthy_since.reset();
    }
  }
  return {};
}

Status Fleet::set_host_state(HostEntry& h, const std::string& to, const std::string& reason) {
  if (h.record.state == to) {
    return {};
  }
  const TimePoint now = clock_.now();
  HostRecord next = h.record;
  next.state = to;
  next.updated_at = now;
  WriteBatch batch;
  batch.mutations.push_back(PutHost{next});
  batch.mutations.push_back(
      AppendEvent{make_event(now, "", "host/" + h.record.id, "", "HostStateChanged", h.record.state, to, reason)});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  spdlog::info("host {} {} -> {}: {}", h.record.id, h.record.state, to, reason);
  h.record = std::move(next);
  return {};
}

Result<std::string> Fleet::connect(const protocol::Hello& hello, std::shared_ptr<AgentLink> link) {
  if (hello.protocol != protocol::kVersion && hello.protocol != protocol::kVersion - 1) {
    return fail(ErrorCode::kInvalid, "protocol " + std::to_string(hello.protocol) + " is not supported (controller " +
                                         std::to_string(protocol::kVersion) + ")");
  }
  std::lock_guard lock(mu_);
  const TimePoint now = clock_.now();
  std::string host_token;
  HostEntry* host = nullptr;
  if (!hello.host_token.empty()) {
    auto it = hosts_.find(hello.host_id);
    if (it == hosts_.end() || !constant_time_equals(sha256_hex(hello.host_token), it->second.record.token_hash)) {
      return fail(ErrorCode::kUnauthenticated, "unknown host or wrong host token");
    }
    host = &it->second;
    host_token = hello.host_token;
  } else {
    if (!constant_time_equals(sha256_hex(hello.join_token), join_token_hash_)) {
      return fail(ErrorCode::kUnauthenticated, "wrong join token");
    }
    host_token = "ht_" + random_hex(32);
    HostRecord record{host_id_for(hello.hostname),
                      hello.hostname,
                      kHostReady,
                      hello.labels,
                      hello.slots,
                      sha256_hex(host_token),
                      now,
                      now};
    WriteBatch batch;
    batch.mutations.push_back(PutHost{record});
    batch.mutations.push_back(
        AppendEvent{make_event(now, "", "host/" + record.id, "", "HostStateChanged", "", kHostReady,
                               "host " + record.id + " (" + hello.hostname + ") joined")});
    if (auto done = store_.commit(batch); !done) {
      return std::unexpected(done.error());
    }
    host = &(hosts_[record.id] = HostEntry{record, nullptr, {}, now, {}});
  }
  if (host->link && host->link.get() != link.get()) {
    host->link->close("replaced by a newer connection of the same host");
  }
  host->address = link->peer_address();
  host->link = std::move(link);
  host->last_seen = now;
  if (host->record.labels != hello.labels || host->record.slots != hello.slots ||
      host->record.hostname != hello.hostname) {
    HostRecord next = host->record;
    next.labels = hello.labels;
    next.slots = hello.slots;
    next.hostname = hello.hostname;
    WriteBatch batch;
    batch.mutations.push_back(PutHost{next});
    if (auto done = store_.commit(batch); done) {
      host->record = std::move(next);
    }
  }
  if (host->record.state == kHostUnreachable || host->record.state == "Left") {
    (void)set_host_state(*host, kHostReady, "agent reconnected");
  }
  protocol::Welcome welcome{host->record.id, host_token,
                            static_cast<double>(options_.heartbeat_interval.count()) / 1000.0, protocol::kVersion};
  host->link->send(protocol::to_json(welcome).dump());
  for (auto& [id, m] : members_) {
    if (m.record.host == host->record.id) {
      m.command_sent = false;  // a new connection: outstanding commands go out again
    }
  }
  reconcile_hello(*host, hello);
  return host->record.id;
}

void Fleet::reconcile_hello(HostEntry& h, const protocol::Hello& hello) {
  std::map<std::string, const protocol::HelloMember*> running;
  for (const auto& m : hello.members) {
    running[m.id] = &m;
  }
  for (auto& [id, m] : members_) {
    if (m.record.host != h.record.id) {
      continue;
    }
    auto it = running.find(id);
    const bool runs = it != running.end() && agent_runs(it->second->state);
    if (m.state == MemberState::kUnreachable) {
      if (!runs) {
        (void)set_state(m, MemberState::kFailed, "host " + h.record.id + " came back without it");
        continue;
      }
      // Replaced meanwhile (the usual case) or still needed.
      const ClusterSpec* spec = cluster_spec(m);
      int live = 0;
      for (const auto& [oid, o] : members_) {
        live += (o.record.app == m.record.app && o.record.cluster == m.record.cluster && is_live(o.state)) ? 1 : 0;
      }
      if (spec == nullptr || live >= spec->members.desired) {
        (void)set_state(m, MemberState::kStopping, "stale: replaced while host " + h.record.id + " was unreachable");
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
      send(h, protocol::Command{"stop:" + id, "stop", id, {{"graceMs", options_.stop_grace.count()}}});
    }
  }
}

void Fleet::disconnect(const std::string& host_id, const AgentLink* link) {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host_id);
  if (it != hosts_.end() && it->second.link.get() == link) {
    it->second.link.reset();
    spdlog::info("host {}: agent disconnected", host_id);
  }
}

void Fleet::receive(const std::string& host_id, const std::string& type, const json& message) {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    return;
  }
  HostEntry& h = it->second;
  h.last_seen = clock_.now();
  if (type == "heartbeat") {
    if (auto hb = protocol::parse_heartbeat(message)) {
      on_heartbeat(h, *hb);
    } else {
      spdlog::warn("host {}: bad heartbeat: {}", host_id, hb.error().describe());
    }
  } else if (type == "result") {
    if (auto r = protocol::parse_result(message)) {
      h.link->send(protocol::to_json(protocol::Ack{r->id}).dump());
      on_result(h, *r);
    }
  } else if (type == "event") {
    if (auto e = protocol::parse_event(message)) {
      on_event(h, *e);
    }
  } else if (type != "ack") {
    spdlog::warn("host {}: unexpected message type {}", host_id, type);
  }
}

void Fleet::on_heartbeat(HostEntry& h, const protocol::Heartbeat& hb) {
  h.reports.clear();
  for (const auto& report : hb.members) {
    h.reports[report.id] = report;
    auto it = members_.find(report.id);
    // A host token only speaks for its own members.
    if (it != members_.end() && it->second.record.host == h.record.id) {
      on_report(it->second, report);
    }
  }
}

void Fleet::on_report(MemberEntry& m, const protocol::MemberReport& report) {
  m.stats = report.stats;
  if (report.stats && m.state == MemberState::kActive) {
    ClusterLoad& load = loads_[m.record.app + "/" + m.record.cluster];
    load.samples.emplace_back(clock_.now(), report.stats->load);
    if (!load.observed_since) {
      load.observed_since = clock_.now();
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
    if (store_.commit(batch)) {
      m.record = std::move(next);
    }
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
  if (result.id.starts_with("logs:")) {
    if (auto it = log_requests_.find(result.id); it != log_requests_.end()) {
      it->second.result = result;
      log_results_.notify_all();
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
    if (result.data.is_object()) {
      if (result.data.contains("pid")) next.pid = result.data["pid"].get<int64_t>();
      if (result.data.contains("ports")) next.ports = result.data["ports"].get<std::map<std::string, int>>();
    }
    if (next != m.record) {
      WriteBatch batch;
      batch.mutations.push_back(PutMember{next});
      if (store_.commit(batch)) {
        m.record = std::move(next);
      }
    }
  } else if (kind == "maintenance" && m.state == MemberState::kMaintenance && result.id == maintenance_command_id(m)) {
    if (result.ok) {
      resume_after_maintenance(m, result.message, result.data);
    } else {
      (void)set_state(m, MemberState::kFailed, "maintenance failed: " + result.message);
    }
  } else if (kind == "update" && m.state == MemberState::kUpdating && result.id == update_command_id(m)) {
    if (!result.ok) {
      (void)set_state(m, MemberState::kFailed, "update failed: " + result.message);
      return;
    }
    if (result.data.is_object() && result.data.contains("pid")) {
      m.record.pid = result.data["pid"].get<int64_t>();
      m.record.ports = result.data.value("ports", m.record.ports);
    }
    (void)set_state(m, MemberState::kStarting,
                    "updated in place to revision " + std::to_string(m.record.revision) +
                        (result.message.empty() ? "" : ": " + result.message));
  } else if (kind == "stop" && m.state == MemberState::kStopping) {
    (void)set_state(m, MemberState::kTerminated, result.ok ? "stopped" : "stop reported: " + result.message);
    members_.erase(it);
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

void Fleet::check_heartbeats() {
  const TimePoint now = clock_.now();
  for (auto& [id, h] : hosts_) {
    if ((h.record.state != kHostReady && h.record.state != kHostDraining) ||
        now - h.last_seen <= options_.heartbeat_timeout) {
      continue;
    }
    const auto silent = duration_cast<milliseconds>(now - h.last_seen);
    if (!set_host_state(h, kHostUnreachable, "no heartbeat for " + format_duration(silent))) {
      continue;
    }
    if (h.link) {
      h.link->close("heartbeat timeout");
      h.link.reset();
    }
    for (auto& [mid, m] : members_) {
      if (m.record.host == id && can_transition(m.state, MemberState::kUnreachable)) {
        (void)set_state(m, MemberState::kUnreachable, "host " + id + " is unreachable");
      }
    }
  }
}

const ApplicationSpec* Fleet::spec_of(const std::string& app, int64_t revision) {
  const auto key = std::pair{app, revision};
  if (auto it = specs_.find(key); it != specs_.end()) {
    return &it->second;
  }
  auto record = store_.get_revision(app, revision);
  if (!record || !*record) {
    return nullptr;
  }
  auto spec = parse_manifest((*record)->manifest_json, ManifestFormat::kJson);
  if (!spec) {
    spdlog::error("revision {} of {} does not parse: {}", revision, app, spec.error().describe());
    return nullptr;
  }
  return &(specs_[key] = std::move(*spec));
}

const ClusterSpec* Fleet::cluster_spec(const MemberEntry& m) {
  return cluster_of(m.record.app, m.record.revision, m.record.cluster);
}

// Asked per member several times a tick (placement, the load balancer's
// targets and gate): the clusters of a revision are indexed once.
const ClusterSpec* Fleet::cluster_of(const std::string& app, int64_t revision, const std::string& path) {
  const auto key = std::pair{app, revision};
  auto index = cluster_index_.find(key);
  if (index == cluster_index_.end()) {
    const ApplicationSpec* spec = spec_of(app, revision);
    if (!spec) {
      return nullptr;
    }
    index = cluster_index_.emplace(key, std::map<std::string, const ClusterSpec*>{}).first;
    for (const auto& node : flatten(*spec)) {
      if (node.cluster) {
        index->second.emplace(node.path, node.cluster);
      }
    }
  }
  auto cluster = index->second.find(path);
  return cluster == index->second.end() ? nullptr : cluster->second;
}

int64_t Fleet::next_ordinal(const std::string& app, const std::string& cluster) {
  return ++last_ordinal_[app + "/" + cluster];
}

void Fleet::report_failure_once(const std::string& key, const std::string& message) {
  auto& last = reported_failures_[key];
  if (last != message) {
    last = message;
    spdlog::warn("{}: {}", key, message);
  }
}

void Fleet::count_usage() {
  usage_ = Usage{};
  for (const auto& [id, m] : members_) {
    if (may_run(m.state)) {
      const ClusterSpec* spec = cluster_spec(m);
      usage_.slots[m.record.host] += spec ? spec->placement.slots : 1;
      ++usage_.per_cluster[m.record.app + "/" + m.record.cluster][m.record.host];
    }
  }
}

Status Fleet::create_member(const ClusterRef& cluster, int64_t revision, const std::string& reason) {
  const std::string where = cluster.app->name + "/" + cluster.path;
  const ClusterSpec* spec = cluster_of(cluster.app->name, revision, cluster.path);
  if (!spec) {
    return fail(ErrorCode::kInternal, where + " has no revision " + std::to_string(revision));
  }
  auto& in_cluster = usage_.per_cluster[where];
  std::vector<HostCapacity> capacity;
  capacity.reserve(hosts_.size());
  for (const auto& [id, h] : hosts_) {
    capacity.push_back(HostCapacity{id, h.record.state == kHostReady && h.link != nullptr, h.record.labels,
                                    h.record.slots, usage_.slots[id], in_cluster[id]});
  }
  PlacementDecision decision = place(capacity, spec->placement);
  if (!decision.host) {
    report_failure_once(where, "cannot place a member: " + decision.reason);
    return fail(ErrorCode::kUnavailable, decision.reason);
  }
  reported_failures_.erase(where);
  usage_.slots[*decision.host] += spec->placement.slots;
  ++in_cluster[*decision.host];
  const TimePoint now = clock_.now();
  MemberRecord record;
  record.ordinal = next_ordinal(cluster.app->name, cluster.path);
  record.id = where + "/" + std::to_string(record.ordinal);
  record.app = cluster.app->name;
  record.cluster = cluster.path;
  record.host = *decision.host;
  record.state = std::string(to_string(MemberState::kCreated));
  record.revision = revision;
  record.version = spec->artifact.version;
  record.created_at = record.updated_at = now;
  WriteBatch batch;
  batch.mutations.push_back(PutMember{record});
  batch.mutations.push_back(
      AppendEvent{make_event(now, record.app, where, record.id, "MemberStateChanged", "", "Created",
                             (reason.empty() ? "" : reason + ": ") + "placed on " + record.host)});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  MemberEntry& m = members_[record.id] = MemberEntry{record, MemberState::kCreated};
  if (auto started = set_state(m, MemberState::kStarting, "starting on " + record.host); !started) {
    return started;
  }
  send_outstanding(m);
  return {};
}

json Fleet::start_spec(const MemberEntry& m, const ClusterSpec& c) const {
  json health = nullptr;
  switch (c.health.kind) {
    case HealthCheck::Kind::kHttp:
      health = {{"http", {{"port", c.health.port}, {"path", c.health.path}}}};
      break;
    case HealthCheck::Kind::kTcp:
      health = {{"tcp", {{"port", c.health.port}}}};
      break;
    case HealthCheck::Kind::kExec:
      health = {{"exec", c.health.exec}};
      break;
    case HealthCheck::Kind::kNone:
      break;
  }
  if (!health.is_null()) {
    health["intervalSeconds"] = c.health.interval_seconds;
    health["timeoutSeconds"] = c.health.timeout_seconds;
    health["unhealthyThreshold"] = c.health.unhealthy_threshold;
  }
  json stats = c.stats ? json{{"http", {{"port", c.stats->port}, {"path", c.stats->path}}}} : json(nullptr);
  return {{"app", m.record.app},
          {"cluster", m.record.cluster},
          {"revision", m.record.revision},
          {"version", c.artifact.version},
          {"command", c.artifact.command},
          {"env", c.artifact.env},
          {"workdir", c.artifact.workdir},
          {"ports", c.ports},
          {"health", health},
          {"stats", stats},
          {"hooks", {{"drain", c.hooks.drain}}}};
}

void Fleet::send(HostEntry& h, const protocol::Command& command) {
  if (h.link) {
    h.link->send(protocol::to_json(command).dump());
  }
}

// The command that the member's current state calls for, once per link.
void Fleet::send_outstanding(MemberEntry& m) {
  if (m.command_sent) {
    return;
  }
  auto host = hosts_.find(m.record.host);
  if (host == hosts_.end() || !host->second.link) {
    return;
  }
  if (m.state == MemberState::kStarting) {
    const ClusterSpec* spec = cluster_spec(m);
    if (!spec) {
      return;
    }
    send(host->second, protocol::Command{"start:" + m.record.id, "start", m.record.id, start_spec(m, *spec)});
  } else if ((m.state == MemberState::kMaintenance || m.state == MemberState::kUpdating ||
              m.state == MemberState::kStopping) &&
             !out_of_traffic(m)) {
    return;  // its load balancer still sends it requests: drained first
  } else if (m.state == MemberState::kMaintenance) {
    const ClusterSpec* spec = cluster_spec(m);
    json maintenance = {{"graceMs", options_.stop_grace.count()},
                        {"hook", spec ? spec->hooks.maintenance : std::vector<std::string>{}}};
    send(host->second, protocol::Command{maintenance_command_id(m), "maintenance", m.record.id, maintenance});
  } else if (m.state == MemberState::kUpdating) {
    const ClusterSpec* spec = cluster_spec(m);
    if (!spec) {
      return;
    }
    json update = start_spec(m, *spec);
    update["hook"] = spec->hooks.update;
    update["graceMs"] = options_.stop_grace.count();
    send(host->second, protocol::Command{update_command_id(m), "update", m.record.id, update});
  } else if (m.state == MemberState::kStopping) {
    const ClusterSpec* spec = cluster_spec(m);
    json stop = {{"graceMs", options_.stop_grace.count()}};
    if (spec && !spec->hooks.drain.empty()) {
      stop["drainHook"] = spec->hooks.drain;
    }
    send(host->second, protocol::Command{"stop:" + m.record.id, "stop", m.record.id, stop});
  } else {
    return;
  }
  m.command_sent = true;
}

// Takes a member out: stop it where it may run, or just mark it gone.
void Fleet::retire(MemberEntry& m, const std::string& reason, std::vector<Mutation> also) {
  auto host = hosts_.find(m.record.host);
  const bool host_gone = host == hosts_.end() || host->second.record.state == "Left";
  if (m.state == MemberState::kCreated || (m.state == MemberState::kFailed && host_gone)) {
    (void)set_state(m, MemberState::kTerminated, reason, std::move(also));
    return;
  }
  if (m.state == MemberState::kActive && !out_of_traffic(m)) {
    (void)set_state(m, MemberState::kDraining, reason + "; leaving its load balancer first", std::move(also));
  } else if (can_transition(m.state, MemberState::kStopping)) {
    (void)set_state(m, MemberState::kStopping, reason, std::move(also));
  }
}

bool Fleet::out_of_traffic(const MemberEntry& m) {
  if (!balancer_ || !options_.drain_before_stop) {
    return true;
  }
  const ClusterSpec* spec = cluster_spec(m);
  return !spec || spec->load_balancer.haproxy_backend.empty() ||
         balancer_->presence(m.record.id) == BalancerPresence::kOut;
}

MemberState Fleet::planned_state(const MemberEntry& m) {
  if (m.state != MemberState::kActive || !balancer_) {
    return m.state;
  }
  const ClusterSpec* spec = cluster_spec(m);
  const bool balanced = spec && !spec->load_balancer.haproxy_backend.empty();
  return balanced && balancer_->presence(m.record.id) != BalancerPresence::kServing ? MemberState::kStarting : m.state;
}

// One target per member of a balanced cluster: Active members serve, every
// other one leaves (at once when it never served: it is not there).
std::map<std::string, BalancerTarget> Fleet::balancer_targets() {
  std::map<std::string, BalancerTarget> targets;
  for (const auto& [id, m] : members_) {
    const ClusterSpec* spec = cluster_spec(m);
    auto server = lb::server_name_for(id);
    if (!spec || spec->load_balancer.haproxy_backend.empty() || !server) {
      continue;
    }
    BalancerTarget target{spec->load_balancer.haproxy_backend, *server, std::nullopt, m.state == MemberState::kActive,
                          std::chrono::seconds(0)};
    if (options_.drain_before_stop) {
      target.drain_timeout = std::chrono::seconds(spec->load_balancer.drain_timeout_seconds);
    }
    auto host = hosts_.find(m.record.host);
    auto port = spec->ports.empty() ? m.record.ports.end() : m.record.ports.find(spec->ports.front());
    if (host != hosts_.end() && !host->second.address.empty() && port != m.record.ports.end()) {
      target.address = lb::ServerAddress{host->second.address, static_cast<uint16_t>(port->second)};
    }
    targets.emplace(id, std::move(target));
  }
  return targets;
}

std::optional<std::string> Fleet::balancer_problem(const ApplicationSpec& spec, TimePoint since) const {
  if (!balancer_) {
    return std::nullopt;
  }
  for (const auto& node : flatten(spec)) {
    if (node.cluster && !node.cluster->load_balancer.haproxy_backend.empty()) {
      auto problem = balancer_->problem(node.cluster->load_balancer.haproxy_backend);
      if (problem && problem->seen_at >= since) {
        return "backend " + node.cluster->load_balancer.haproxy_backend + ": " + problem->message;
      }
    }
  }
  return std::nullopt;
}

TimePoint Fleet::phase_seen_since(const ActiveRollout& rollout) {
  PhaseSeen& seen = phases_seen_[rollout.record.app];
  if (seen.rollout != rollout.record.id || seen.phase != rollout.phase) {
    seen = PhaseSeen{rollout.record.id, rollout.phase, clock_.now()};
  }
  return seen.since;
}

// model.md, "autohealing off": the fact is recorded and published once, and
// nothing is started or stopped for the member.
void Fleet::delay_healing(MemberEntry& m) {
  if (m.record.healing_delayed_since) {
    return;
  }
  const TimePoint now = clock_.now();
  MemberRecord next = m.record;
  next.healing_delayed_since = now;
  const std::string message =
      "autohealing is off: " + m.record.id + " (" + m.record.state + ") is neither restarted nor replaced";
  WriteBatch batch;
  batch.mutations.push_back(PutMember{next});
  batch.mutations.push_back(
      AppendEvent{make_event(now, m.record.app, full_path(m.record.app, m.record.cluster), m.record.id,
                             "HealingDelayed", m.record.state, m.record.state, message)});
  if (store_.commit(batch)) {
    spdlog::warn("{}", message);
    m.record = std::move(next);
  }
}

// Autohealing is back on for a member that still needs it: say for how long
// healing waited, then heal as usual.
void Fleet::resume_healing(MemberEntry& m) {
  const TimePoint now = clock_.now();
  const auto waited = duration_cast<milliseconds>(now - *m.record.healing_delayed_since);
  const std::string message = "autohealing is on again: healing of " + m.record.id + " had been delayed since " +
                              format_rfc3339(*m.record.healing_delayed_since) + " (" + format_duration(waited) + ")";
  MemberRecord next = m.record;
  next.healing_delayed_since.reset();
  WriteBatch batch;
  batch.mutations.push_back(PutMember{next});
  batch.mutations.push_back(
      AppendEvent{make_event(now, m.record.app, full_path(m.record.app, m.record.cluster), m.record.id,
                             "HealingResumed", m.record.state, m.record.state, message)});
  if (store_.commit(batch)) {
    spdlog::info("{}", message);
    m.record = std::move(next);
  }
}

int Fleet::autoscale(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& values,
                     const std::vector<ClusterScaleRecord>& scales) {
  const TimePoint now = clock_.now();
  const AutoscalingPolicy& policy = cluster.spec->autoscaling;
  const MemberCounts& counts = cluster.spec->members;
  const std::string where = cluster.app->name + "/" + cluster.path;
  ClusterLoad& load = loads_[where];

  while (!load.samples.empty() && now - load.samples.front().first > std::chrono::seconds(policy.window_seconds)) {
    load.samples.pop_front();
  }
  const bool window_covered =
      load.observed_since && now - *load.observed_since >= std::chrono::seconds(policy.window_seconds);
  if (!load.samples.empty() && window_covered) {
    double sum = 0;
    for (const auto& [t, value] : load.samples) {
      sum += value;
    }
    load.average = sum / static_cast<double>(load.samples.size());
    const std::string state = *load.average > policy.scale_up_above     ? "overload"
                              : *load.average < policy.scale_down_below ? "underload"
                                                                        : "normal";
    if (state != load.state) {
      const std::string message =
          fmt::format("average load {:.2f} over {}s (scale up above {}, down below {})", *load.average,
                      policy.window_seconds, policy.scale_up_above, policy.scale_down_below);
      WriteBatch batch;
      batch.mutations.push_back(
          AppendEvent{make_event(now, cluster.app->name, where, "", "LoadStateChanged", load.state, state, message)});
      if (store_.commit(batch)) {
        spdlog::info("{}: load {} -> {}: {}", where, load.state, state, message);
        load.state = state;
      }
    }
  }

  // The autoscaler's count holds while the operator's desired is unchanged.
  int desired = counts.desired;
  auto scale = std::find_if(scales.begin(), scales.end(),
                            [&](const ClusterScaleRecord& s) { return s.cluster == cluster.path; });
  if (scale != scales.end() && scale->base_desired == counts.desired) {
    desired = static_cast<int>(std::clamp<int64_t>(scale->desired, counts.min, counts.max));
  }
  scaled_[where] = desired != counts.desired ? std::optional<int>(desired) : std::nullopt;

  const bool enabled = resolve(values, cluster.path, Setting::kAutoscaling).effective == "on";
  const bool cooled = !load.last_decision || now - *load.last_decision >= std::chrono::seconds(policy.cooldown_seconds);
  const int wanted = load.state == "overload" && desired < counts.max    ? desired + 1
                     : load.state == "underload" && desired > counts.min ? desired - 1
                                                                         : desired;
  if (!enabled || !cooled || wanted == desired || !cluster.app->deployed) {
    return desired;
  }
  const std::string reason = load.state + ": " + fmt::format("average load {:.2f}", *load.average);
  WriteBatch batch;
  batch.mutations.push_back(PutClusterScale{{cluster.app->name, cluster.path, wanted, counts.desired, reason, now}});
  batch.mutations.push_back(AppendEvent{make_event(now, cluster.app->name, where, "", "ClusterScaled",
                                                   std::to_string(desired), std::to_string(wanted),
                                                   "autoscaling " + where + " from " + std::to_string(desired) +
                                                       " to " + std::to_string(wanted) + " members (" + reason + ")")});
  if (!store_.commit(batch)) {
    return desired;
  }
  spdlog::info("{}: autoscaling {} -> {} ({})", where, desired, wanted, reason);
  load.last_decision = now;
  scaled_[where] = wanted != counts.desired ? std::optional<int>(wanted) : std::nullopt;
  return wanted;
}

json Fleet::load_json(const std::string& app) const {
  std::lock_guard lock(mu_);
  json out = json::object();
  const std::string prefix = app + "/";
  for (const auto& [key, load] : loads_) {
    if (key.starts_with(prefix)) {
      json j = {{"state", load.state}};
      j["average"] = load.average ? json(*load.average) : json(nullptr);
      auto scaled = scaled_.find(key);
      j["scaledDesired"] = scaled != scaled_.end() && scaled->second ? json(*scaled->second) : json(nullptr);
      out[key.substr(prefix.size())] = std::move(j);
    }
  }
  return out;
}

// Unique per maintenance of a member: the time it entered Maintenance.
std::string Fleet::maintenance_command_id(const MemberEntry& m) {
  return "maintenance:" + m.record.id + ":" + std::to_string(to_unix_millis(m.record.updated_at));
}

namespace {
// maxUnavailable against desired, rounded down as Kubernetes does; at least
// one, or maintenance could never start.
int unavailable_budget(const IntOrPercent& max_unavailable, int desired) {
  const int n = max_unavailable.percent ? max_unavailable.value * desired / 100 : max_unavailable.value;
  return std::max(n, 1);
}
}  // namespace

Fleet::MaintenanceMarkers Fleet::index_markers(const std::vector<OperationalValueRecord>& values) {
  MaintenanceMarkers markers;
  for (const auto& v : values) {
    if (v.setting == Setting::kMaintenance && v.value != "off") {
      markers.emplace(v.path, &v);  // node values too: a node path is never a member's
    }
  }
  return markers;
}

// model.md, "maintenance restart": marked members go into Maintenance a few
// at a time, never leaving more than maxUnavailable of the cluster out;
// members marked --all-at-once go in the same pass, whatever the budget.
void Fleet::start_maintenance(const ClusterRef& cluster, const std::vector<MemberEntry*>& members,
                              const MaintenanceMarkers& markers) {
  int out = 0;
  for (const MemberEntry* m : members) {
    out += is_live(m->state) && planned_state(*m) != MemberState::kActive ? 1 : 0;
  }
  const int budget = unavailable_budget(cluster.spec->update.max_unavailable, cluster.spec->members.desired);
  std::vector<MemberEntry*> taken;
  for (MemberEntry* m : members) {
    if (m->state != MemberState::kActive) {
      continue;
    }
    auto marker = markers.find(member_path(m->record));
    if (marker != markers.end() && marker->second->value == "restart" &&
        (out < budget || marker->second->all_at_once)) {
      taken.push_back(m);
      ++out;
    }
  }
  if (!taken.empty()) {
    (void)set_states(taken, MemberState::kMaintenance, "maintenance restart (autohealing off for it meanwhile)");
  }
}

// The agent restarted the member after its hook: back to Starting (Active
// again once healthy) and the marker cleared, in one commit.
void Fleet::resume_after_maintenance(MemberEntry& m, const std::string& message, const json& data) {
  if (data.is_object() && data.contains("pid")) {
    m.record.pid = data["pid"].get<int64_t>();
    m.record.ports = data.value("ports", m.record.ports);
  }
  (void)set_state(m, MemberState::kStarting, "resumed after maintenance" + (message.empty() ? "" : ": " + message),
                  {DeleteOperationalValue{m.record.app, member_path(m.record), Setting::kMaintenance}});
}

// A node's maintenance returns to off by itself once every member it took in
// has resumed (its markers are gone).
void Fleet::complete_maintenance(const std::string& app, const std::vector<OperationalValueRecord>& values) {
  std::set<std::string> member_paths;
  for (const auto& [id, m] : members_) {
    if (m.record.app == app) {
      member_paths.insert(member_path(m.record));
    }
  }
  for (const auto& v : values) {
    if (v.setting != Setting::kMaintenance || v.value == "off" || member_paths.contains(v.path)) {
      continue;
    }
    const bool pending = std::any_of(values.begin(), values.end(), [&](const OperationalValueRecord& marker) {
      return marker.setting == Setting::kMaintenance && marker.value != "off" && member_paths.contains(marker.path) &&
             is_below(marker.path, v.path);
    });
    if (pending) {
      continue;
    }
    const TimePoint now = clock_.now();
    const std::string message = "maintenance " + v.value + " of " + full_path(app, v.path) +
                                " completed: every member " + (v.value == "replace" ? "replaced" : "resumed");
    WriteBatch batch;
    batch.mutations.push_back(DeleteOperationalValue{app, v.path, Setting::kMaintenance});
    batch.mutations.push_back(AppendEvent{
        make_event(now, app, full_path(app, v.path), "", "OperationalStateChanged", v.value, nullptr, message)});
    if (store_.commit(batch)) {
      spdlog::info("{}", message);
    }
  }
}

void Fleet::reconcile_cluster(const ClusterRef& cluster, const std::vector<MemberEntry*>& members,
                              const std::vector<OperationalValueRecord>& values, const MaintenanceMarkers& markers,
                              const std::vector<ClusterScaleRecord>& scales, ActiveRollout* rollout) {
  const TimePoint now = clock_.now();
  std::vector<MemberEntry*> live;
  int held = 0;  // failing members that autohealing off keeps in place
  for (MemberEntry* member : members) {
    MemberEntry& m = *member;
    if (m.state == MemberState::kCreated) {
      // Placed but not started: the controller stopped between the two commits.
      (void)set_state(m, MemberState::kStarting, "starting on " + m.record.host);
    }
    relabel(m, cluster);
    if (m.state == MemberState::kStarting && m.healthy_since) {
      const auto ready_for = now - *m.healthy_since;
      if (ready_for >= std::chrono::seconds(cluster.spec->update.min_ready_seconds)) {
        (void)set_state(m, MemberState::kActive,
                        "healthy for " + format_duration(duration_cast<milliseconds>(ready_for)));
      }
    }
    if (m.state == MemberState::kFailed || m.state == MemberState::kUnreachable) {
      if (cluster.app->deployed && resolve(values, member_path(m.record), Setting::kAutohealing).effective == "off") {
        delay_healing(m);
        ++held;
        continue;
      }
      if (m.record.healing_delayed_since) {
        resume_healing(m);
      }
      if (m.state == MemberState::kFailed) {
        retire(m, "cleaning up a failed member");  // a replacement follows below
      }
    }
    if (is_live(m.state)) {
      live.push_back(&m);
    }
  }
  start_maintenance(cluster, members, markers);
  const int scaled = autoscale(cluster, values, scales);
  const int desired = cluster.app->deployed ? scaled : 0;
  // Failed members that autohealing off keeps are not compensated for.
  if (rollout && cluster.app->deployed && drive_rollout(cluster, members, desired - held, *rollout)) {
    return;  // the rollout owns the cluster's members for now
  }
  if (cluster.app->deployed && replace_for_maintenance(cluster, members, markers, desired - held)) {
    return;
  }
  const int64_t revision = held_revision(cluster, members, rollout);
  if (static_cast<int>(live.size()) > desired) {
    // Scale down the least useful first: not yet active, then the newest.
    std::sort(live.begin(), live.end(), [](const MemberEntry* a, const MemberEntry* b) {
      const bool a_active = a->state == MemberState::kActive;
      const bool b_active = b->state == MemberState::kActive;
      return a_active != b_active ? !a_active : a->record.ordinal > b->record.ordinal;
    });
    for (size_t i = 0; i < live.size() - static_cast<size_t>(desired); ++i) {
      retire(*live[i], cluster.app->deployed ? "scaling down to " + std::to_string(desired) : "application deleted");
    }
  }
  for (int missing = desired - static_cast<int>(live.size()) - held; missing > 0; --missing) {
    if (!create_member(cluster, revision)) {
      break;
    }
  }
}

void Fleet::tick() {
  std::lock_guard lock(mu_);
  check_heartbeats();
  auto apps = store_.list_applications();
  if (!apps) {
    spdlog::error("reconcile: {}", apps.error().describe());
    return;
  }
  count_usage();
  std::map<std::string, std::vector<MemberEntry*>> by_cluster;
  for (auto& [id, m] : members_) {
    by_cluster[m.record.app + "/" + m.record.cluster].push_back(&m);
  }
  std::set<std::pair<std::string, std::string>> wanted;
  for (const auto& app : *apps) {
    const ApplicationSpec* spec = spec_of(app.name, app.current_revision);
    auto values = store_.list_operational_values(app.name);
    auto scales = store_.list_cluster_scales(app.name);
    if (!spec || !values || !scales) {
      continue;
    }
    std::optional<ActiveRollout> rollout = load_rollout(app);
    if (!rollout) {
      phases_seen_.erase(app.name);
    } else {
      const TimePoint since = phase_seen_since(*rollout);
      const bool moving = rollout->phase == RolloutPhase::kProgressing || rollout->phase == RolloutPhase::kRollingBack;
      if (auto problem = moving ? balancer_problem(*spec, since) : std::nullopt) {
        // updates.md: a balancer that cannot drain pauses the rollout
        // rather than letting it stop members that still get traffic.
        set_phase(*rollout, RolloutPhase::kPaused,
                  "the load balancer does not answer (" + *problem +
                      "); no member leaves its backend meanwhile; `tranche rollout resume " + app.name +
                      "` once it does");
        (void)commit_rollout(*rollout);
        (void)phase_seen_since(*rollout);
      }
    }
    const bool settled = !rollout || observe_rollout(app, *rollout, by_cluster);
    const MaintenanceMarkers markers = index_markers(*values);
    for (const auto& node : flatten(*spec)) {
      if (node.cluster) {
        wanted.insert({app.name, node.path});
        if (settled) {
          reconcile_cluster(ClusterRef{&app, node.path, node.cluster}, by_cluster[app.name + "/" + node.path], *values,
                            markers, *scales, rollout ? &*rollout : nullptr);
        }
      }
    }
    if (rollout && settled) {
      advance_rollout(app, *rollout);
    }
    complete_maintenance(app.name, *values);
  }
  // Members of clusters that no longer exist in their application.
  for (auto& [id, m] : members_) {
    if (!wanted.contains({m.record.app, m.record.cluster}) && (is_live(m.state) || m.state == MemberState::kFailed)) {
      retire(m, "its cluster was removed from the application");
    }
  }
  for (auto it = members_.begin(); it != members_.end();) {
    MemberEntry& m = it->second;
    if (m.state == MemberState::kDraining && out_of_traffic(m)) {
      (void)set_state(m, MemberState::kStopping, "out of its load balancer's traffic");
    }
    send_outstanding(m);
    it = m.state == MemberState::kTerminated ? members_.erase(it) : std::next(it);
  }
  if (balancer_) {
    balancer_->set_targets(balancer_targets());
  }
}

json Fleet::hosts_json() const {
  std::lock_guard lock(mu_);
  json items = json::array();
  for (const auto& [id, h] : hosts_) {
    int members = 0;
    for (const auto& [mid, m] : members_) {
      members += m.record.host == id && may_run(m.state) ? 1 : 0;
    }
    items.push_back({{"id", id},
                     {"hostname", h.record.hostname},
                     {"state", h.record.state},
                     {"connected", h.link != nullptr},
                     {"labels", h.record.labels},
                     {"slots", h.record.slots},
                     {"members", members},
                     {"lastSeen", format_rfc3339(h.last_seen)}});
  }
  return json{{"items", items}};
}

Result<json> Fleet::set_host_draining(const std::string& host_id, bool draining, const Caller& caller) {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    return fail(ErrorCode::kNotFound, "host '" + host_id + "' not found");
  }
  HostEntry& h = it->second;
  const std::string from = h.record.state;
  if (draining && from == kHostReady) {
    if (auto ok = set_host_state(h, kHostDraining, "cordoned by " + caller.actor); !ok) {
      return std::unexpected(ok.error());
    }
  } else if (!draining && from == kHostDraining) {
    if (auto ok = set_host_state(h, kHostReady, "uncordoned by " + caller.actor); !ok) {
      return std::unexpected(ok.error());
    }
  } else if (from != (draining ? kHostDraining : kHostReady)) {
    return fail(ErrorCode::kConflict, "host " + host_id + " is " + from);
  }
  WriteBatch audit;
  audit.mutations.push_back(
      AppendAudit{{0, clock_.now(), caller.actor, caller.action, "host " + host_id, from + " -> " + h.record.state}});
  (void)store_.commit(audit);
  return json{{"id", host_id}, {"state", h.record.state}, {"message", "host " + host_id + " is " + h.record.state}};
}

json Fleet::to_json(const MemberEntry& m) {
  json j = {{"id", m.record.id},           {"app", m.record.app},
            {"cluster", m.record.cluster}, {"host", m.record.host},
            {"state", m.record.state},     {"revision", m.record.revision},
            {"version", m.record.version}, {"ports", m.record.ports},
            {"healthy", m.healthy},        {"updatedAt", format_rfc3339(m.record.updated_at)}};
  j["pid"] = m.record.pid ? json(*m.record.pid) : json(nullptr);
  j["load"] = m.stats ? json(m.stats->load) : json(nullptr);
  j["healingDelayedSince"] =
      m.record.healing_delayed_since ? json(format_rfc3339(*m.record.healing_delayed_since)) : json(nullptr);
  const ClusterSpec* spec = balancer_ ? cluster_spec(m) : nullptr;
  if (spec && !spec->load_balancer.haproxy_backend.empty()) {
    j["loadBalancer"] = {{"backend", spec->load_balancer.haproxy_backend},
                         {"state", to_string(balancer_->presence(m.record.id))}};
  }
  return j;
}

Result<json> Fleet::members_json(const MemberQuery& query, const std::optional<std::string>& visible_app) {
  if (visible_app && query.app && *query.app != *visible_app) {
    return json{{"items", json::array()}};
  }
  MemberQuery q = query;
  if (visible_app) {
    q.app = visible_app;
  }
  // Terminated members are history: only in the store, and only when asked for.
  const bool history = q.state && *q.state == "Terminated";
  std::lock_guard lock(mu_);
  json items = json::array();
  if (history) {
    auto records = store_.list_members(q);
    if (!records) {
      return std::unexpected(records.error());
    }
    for (const auto& r : *records) {
      items.push_back(to_json(MemberEntry{r, MemberState::kTerminated}));
    }
  } else {
    for (const auto& [id, m] : members_) {
      if ((!q.app || m.record.app == *q.app) && (!q.cluster || m.record.cluster == *q.cluster) &&
          (!q.state || m.record.state == *q.state)) {
        items.push_back(to_json(m));
      }
    }
  }
  return json{{"items", items}};
}

Result<json> Fleet::member_json(const std::string& member_id, const std::optional<std::string>& visible_app) {
  std::lock_guard lock(mu_);
  auto it = members_.find(member_id);
  if (it != members_.end() && (!visible_app || it->second.record.app == *visible_app)) {
    return to_json(it->second);
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (!visible_app || app == *visible_app) {
    auto record = store_.get_member(app, member_id);
    if (record && *record) {
      return to_json(MemberEntry{**record, MemberState::kTerminated});
    }
  }
  return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
}

Result<json> Fleet::logs(const std::string& member_id, const std::optional<std::string>& visible_app,
                         const std::optional<std::string>& hook, std::chrono::milliseconds timeout) {
  if (hook && *hook != "update" && *hook != "maintenance") {
    return fail(ErrorCode::kInvalid, "hook must be update or maintenance", "hook");
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (visible_app && app != *visible_app) {
    return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
  }
  std::unique_lock lock(mu_);
  std::string host_id;
  if (auto it = members_.find(member_id); it != members_.end()) {
    host_id = it->second.record.host;
  } else if (auto record = store_.get_member(app, member_id); record && *record) {
    host_id = (*record)->host;
  } else {
    return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
  }
  auto host = hosts_.find(host_id);
  if (host == hosts_.end() || !host->second.link) {
    return fail(ErrorCode::kUnavailable, "the agent of host " + host_id + " is not connected");
  }
  const std::string id = "logs:" + random_hex(8);
  log_requests_[id] = LogRequest{};
  send(host->second, protocol::Command{id, "logs", member_id, hook ? json{{"hook", *hook}} : json::object()});
  const bool answered = log_results_.wait_for(lock, timeout, [&] { return log_requests_[id].result.has_value(); });
  auto result = log_requests_[id].result;
  log_requests_.erase(id);
  if (!answered) {
    return fail(ErrorCode::kUnavailable, "the agent did not send the logs within " + format_duration(timeout));
  }
  if (!result->ok) {
    return fail(ErrorCode::kUnavailable, "agent: " + result->message);
  }
  return json{{"member", member_id},
              {"stdout", result->data.value("stdout", "")},
              {"stderr", result->data.value("stderr", "")}};
}

}  // namespace tranche
