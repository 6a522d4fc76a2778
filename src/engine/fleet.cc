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

}  // namespace tranche
