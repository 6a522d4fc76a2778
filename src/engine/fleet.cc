#include "engine/fleet.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/secrets.h"
#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/scheduler.h"

namespace tranche {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

}  // namespace

Fleet::Fleet(Store& store, const Clock& clock, FleetOptions options)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      join_token_hash_(sha256_hex(options_.join_token)),
      deadlines_(options_.heartbeat_timeout),
      work_(options_.resync_interval) {}

void Fleet::attach_balancer(BalancerSync& balancer) {
  std::lock_guard lock(mu_);
  balancer_ = &balancer;
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

void Fleet::view_placement() {
  if (placement_.built) {
    return;
  }
  placement_ = PlacementView{};
  placement_.built = true;
  placement_.hosts.reserve(hosts_.size());
  for (const auto& [id, h] : hosts_) {
    placement_.position[id] = placement_.hosts.size();
    placement_.hosts.push_back(
        HostCapacity{id, h.record.state == kHostReady && h.link != nullptr, h.record.labels, h.record.slots, 0, 0});
  }
  for (const auto& [id, m] : members_) {
    auto at = placement_.position.find(m.record.host);
    if (may_run(m.state) && at != placement_.position.end()) {
      const ClusterSpec* spec = cluster_spec(m);
      placement_.hosts[at->second].used_slots += spec ? spec->placement.slots : 1;
      auto& counts = placement_.in_cluster[m.record.app + "/" + m.record.cluster];
      counts.resize(placement_.hosts.size());
      ++counts[at->second];
    }
  }
}

Status Fleet::create_member(const ClusterRef& cluster, int64_t revision, const std::string& reason) {
  const std::string where = cluster.app->name + "/" + cluster.path;
  const ClusterSpec* spec = cluster_of(cluster.app->name, revision, cluster.path);
  if (!spec) {
    return fail(ErrorCode::kInternal, where + " has no revision " + std::to_string(revision));
  }
  view_placement();
  if (placement_.placed >= kPlacementsPerPass) {
    // The rest waits for the next pass: its clusters stay queued.
    return fail(ErrorCode::kUnavailable, "this pass has placed " + std::to_string(kPlacementsPerPass) + " members");
  }
  auto& candidates = placement_.candidates[where + "@" + std::to_string(revision)];
  if (candidates.empty()) {
    for (size_t i = 0; i < placement_.hosts.size(); ++i) {
      if (eligible(placement_.hosts[i], spec->placement)) {
        candidates.push_back(i);
      }
    }
  }
  auto& in_cluster = placement_.in_cluster[where];
  in_cluster.resize(placement_.hosts.size());
  const std::optional<size_t> chosen = pick(placement_.hosts, candidates, in_cluster, spec->placement.slots);
  if (!chosen) {
    const std::string why = place(placement_.hosts, spec->placement).reason;
    report_failure_once(where, "cannot place a member: " + why);
    return fail(ErrorCode::kUnavailable, why);
  }
  reported_failures_.erase(where);
  placement_.hosts[*chosen].used_slots += spec->placement.slots;
  ++in_cluster[*chosen];
  ++placement_.placed;
  const std::string host = placement_.hosts[*chosen].id;
  const TimePoint now = clock_.now();
  MemberRecord record;
  record.ordinal = next_ordinal(cluster.app->name, cluster.path);
  record.id = where + "/" + std::to_string(record.ordinal);
  record.app = cluster.app->name;
  record.cluster = cluster.path;
  record.host = host;
  record.state = std::string(to_string(MemberState::kCreated));
  record.revision = revision;
  record.version = spec->artifact.version;
  record.created_at = record.updated_at = now;
  WriteBatch batch;
  batch.mutations.push_back(PutMember{record});
  batch.mutations.push_back(
      AppendEvent{make_event(now, record.app, where, record.id, "MemberStateChanged", "", "Created",
                             (reason.empty() ? "" : reason + ": ") + "placed on " + record.host)});
  stage(std::move(batch));
  MemberEntry& m = remember(std::move(record), MemberState::kCreated);
  return set_state(m, MemberState::kStarting, "starting on " + m.record.host);
}

void Fleet::stop_if_drained(MemberEntry& m) {
  if (m.state == MemberState::kDraining && out_of_traffic(m)) {
    (void)set_state(m, MemberState::kStopping, "out of its load balancer's traffic");
  }
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

bool Fleet::reconcile_cluster(const ClusterRef& cluster, const std::vector<MemberEntry*>& members,
                              const std::vector<OperationalValueRecord>& values, const MaintenanceMarkers& markers,
                              const std::vector<ClusterScaleRecord>& scales, ActiveRollout* rollout) {
  const TimePoint now = clock_.now();
  std::vector<MemberEntry*> live;
  int held = 0;  // failing members that autohealing off keeps in place
  for (MemberEntry* member : members) {
    MemberEntry& m = *member;
    stop_if_drained(m);
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
  const int scaled = autoscale(cluster, values, scales);
  // Failed members that autohealing off keeps are not compensated for.
  start_maintenance(cluster, members, markers, scaled - held);
  const int desired = cluster.app->deployed ? scaled : 0;
  // Failed members that autohealing off keeps are not compensated for.
  if (rollout && cluster.app->deployed && drive_rollout(cluster, members, desired - held, *rollout)) {
    return false;  // the rollout owns the cluster's members for now
  }
  if (cluster.app->deployed && replace_for_maintenance(cluster, members, markers, desired - held)) {
    return false;
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
  return settled(cluster, desired);
}

// Nothing is left for a pass to do until something changes: every member
// Active, as many as wanted, and no load balancer whose view of its servers
// moves on by itself. (Load windows move on with time too: a settled
// cluster's autoscaler still runs each pass, see reconcile_pass.)
bool Fleet::settled(const ClusterRef& cluster, int desired) const {
  const std::string key = cluster.app->name + "/" + cluster.path;
  int active = 0;
  if (auto index = by_cluster_.find(key); index != by_cluster_.end()) {
    for (const auto& [id, m] : index->second) {
      if (m->state != MemberState::kActive) {
        return false;
      }
      ++active;
    }
  }
  return active == desired && (!balancer_ || cluster.spec->load_balancer.haproxy_backend.empty());
}

// Applications changed by someone else since the last pass (an apply, an
// operator's command, a setting that expired): every such change appends an
// event, and the fleet knows how many of the new events are its own. A full
// resync now and then is the safety net.
void Fleet::mark_changed_applications(const std::vector<ApplicationRecord>& apps) {
  auto last = store_.last_event_seq();
  if (work_.resync_due(clock_.now()) || !last) {
    for (const auto& app : apps) {
      work_.add_application(app.name);
    }
  } else if (*last > seen_seq_ + own_events_) {
    for (uint64_t after = seen_seq_; after < *last;) {
      auto events = store_.list_events({after, std::nullopt, 10000});
      if (!events || events->empty()) {
        break;
      }
      for (const auto& e : *events) {
        if (!e.app.empty()) {
          work_.add_application(e.app);
        }
        after = e.seq;
      }
    }
  }
  if (last) {
    seen_seq_ = *last;
    own_events_ = 0;
  }
}

bool Fleet::tracks_load(const std::string& app) const {
  for (auto it = loads_.lower_bound(app + "/"); it != loads_.end() && it->first.starts_with(app + "/"); ++it) {
    if (!it->second.samples.empty()) {
      return true;
    }
  }
  return false;
}

void Fleet::tick() {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  // What agents' messages staged since the last pass is written first: the
  // pass reads the store and must find it there. The view is free while the
  // group is written, so readers (the API) never wait for an fsync.
  if (commit_staged(lock, true)) {
    reconcile_pass();
    (void)commit_staged(lock, true);
  }
  dispatch_outstanding();
  expire_log_requests();
}

// Reconciles the applications and clusters marked dirty (see fleet.h,
// "Work queue"); an idle fleet costs a heartbeat check and a store read.
void Fleet::reconcile_pass() {
  check_heartbeats();
  auto apps = store_.list_applications();
  if (!apps) {
    spdlog::error("reconcile: {}", apps.error().describe());
    return;
  }
  placement_.built = false;
  mark_changed_applications(*apps);
  std::set<std::string> known;       // every application's name
  std::set<std::string> visited;     // the applications this pass reconciled
  std::set<std::string> wanted;      // "app/cluster" of those
  for (const auto& app : *apps) {
    known.insert(app.name);
    const bool app_dirty = work_.application_queued(app.name);
    const bool queued = work_.anything_queued_for(app.name);
    if (!queued && !tracks_load(app.name)) {
      continue;
    }
    const ApplicationSpec* spec = spec_of(app.name, app.current_revision);
    auto values = store_.list_operational_values(app.name);
    auto scales = store_.list_cluster_scales(app.name);
    if (!spec || !values || !scales) {
      continue;  // stays dirty: tried again next pass
    }
    if (!queued) {
      // Settled, but its load windows move on: the autoscaler alone, and the
      // cluster is queued if it now wants another count.
      for (const auto& node : flatten(*spec)) {
        const std::string key = app.name + "/" + node.path;
        if (node.cluster && by_cluster_.contains(key) &&
            autoscale(ClusterRef{&app, node.path, node.cluster}, *values, *scales) !=
                static_cast<int>(by_cluster_.at(key).size())) {
          work_.add_cluster(app.name, node.path);
        }
      }
      continue;
    }
    visited.insert(app.name);
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
        stage_rollout(*rollout);
        (void)phase_seen_since(*rollout);
      }
    }
    const bool observed = !rollout || observe_rollout(app, *rollout);
    const MaintenanceMarkers markers = index_markers(*values);
    for (const auto& node : flatten(*spec)) {
      if (!node.cluster) {
        continue;
      }
      const std::string key = app.name + "/" + node.path;
      wanted.insert(key);
      if (observed && (app_dirty || work_.cluster_queued(app.name, node.path))) {
        const bool done = reconcile_cluster(ClusterRef{&app, node.path, node.cluster}, members_of(app.name, node.path),
                                            *values, markers, *scales, rollout ? &*rollout : nullptr);
        if (done) {
          work_.done_cluster(app.name, node.path);
        } else {
          work_.add_cluster(app.name, node.path);
        }
      }
    }
    if (rollout && observed) {
      advance_rollout(app, *rollout);
    }
    complete_maintenance(app.name, *values);
    // A rollout or a maintenance moves on with time: the application stays
    // in the queue while one runs.
    if (observed && !rollout && markers.empty()) {
      work_.done_application(app.name);
    } else {
      work_.add_application(app.name);
    }
  }
  // Members of clusters that no longer exist in their application.
  for (const auto& [key, index] : by_cluster_) {
    const std::string app = key.substr(0, key.find('/'));
    if (wanted.contains(key) || (known.contains(app) && !visited.contains(app))) {
      continue;
    }
    work_.add_application(app);  // until they are gone
    for (const auto& [id, m] : index) {
      if (is_live(m->state) || m->state == MemberState::kFailed) {
        retire(*m, "its cluster was removed from the application");
      }
      stop_if_drained(*m);
    }
  }
  work_.keep_only(known);
}

// Only what is durable is acted on: a change staged by an agent's message
// since the pass's commit waits for the next one.
void Fleet::dispatch_outstanding() {
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    auto member = members_.find(*it);
    if (member == members_.end()) {
      it = outstanding_.erase(it);
      continue;
    }
    MemberEntry& m = member->second;
    if (m.generation > durable_generation_) {
      ++it;
      continue;
    }
    if (m.state == MemberState::kTerminated) {
      ++it;  // forget() drops it from outstanding_
      forget(member);
      continue;
    }
    send_outstanding(m);
    const bool waits = !m.command_sent && (m.state == MemberState::kStarting || m.state == MemberState::kMaintenance ||
                                           m.state == MemberState::kUpdating || m.state == MemberState::kStopping);
    it = waits ? std::next(it) : outstanding_.erase(it);
  }
  if (balancer_) {
    balancer_->set_targets(balancer_targets());
  }
}

}  // namespace tranche
