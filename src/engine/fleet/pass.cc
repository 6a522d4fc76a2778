// The reconcile pass (fleet.h): heartbeat deadlines, the work queue's
// applications and clusters, one group commit, then the commands it made
// durable go out. Also the reconcilers' way to the specs (the controller's
// SpecCache) and the index of each revision's clusters.

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/events.h"
#include "engine/operational_state.h"

namespace tranche {

void Fleet::attach_balancer(BalancerSync& balancer) {
  std::lock_guard lock(mu_);
  balancer_ = &balancer;
}

std::shared_ptr<const ApplicationSpec> Fleet::spec_of(const std::string& app, int64_t revision) {
  auto spec = specs_->get(app, revision);
  if (!spec) {
    // A revision that is gone is the caller's to explain (a rollout's
    // target); one that cannot be read or parsed is reported here.
    if (spec.error().code != ErrorCode::kNotFound) {
      report_failure_once("spec/" + app + "/" + std::to_string(revision), spec.error().describe());
    }
    return nullptr;
  }
  return std::move(*spec);
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
    auto spec = spec_of(app, revision);
    if (!spec) {
      return nullptr;
    }
    index = cluster_index_.emplace(key, ClusterIndex{spec, {}}).first;
    for (const auto& node : flatten(*spec)) {
      if (node.cluster) {
        index->second.by_path.emplace(node.path, node.cluster);
      }
    }
  }
  auto cluster = index->second.by_path.find(path);
  return cluster == index->second.by_path.end() ? nullptr : cluster->second;
}

std::vector<OperationalValueRecord> Fleet::switches_of(const std::vector<OperationalValueRecord>& values) {
  std::vector<OperationalValueRecord> switches;
  std::copy_if(values.begin(), values.end(), std::back_inserter(switches),
               [](const OperationalValueRecord& v) { return v.setting != Setting::kMaintenance; });
  return switches;
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

// Applications changed by someone else since the last pass (an apply, an
// operator's command, a setting that expired): every such change appends an
// event, and the fleet knows how many of the new events are its own. A full
// resync now and then is the safety net.
void Fleet::mark_changed_applications(const std::vector<ApplicationRecord>& apps) {
  auto last = store_.last_event_seq();
  const bool resync = work_.resync_due(clock_.now());
  if (resync) {
    forget_unused_revisions(apps);
  }
  if (resync || !last) {
    all_values_stale_ = true;
    for (const auto& app : apps) {
      work_.add_application(app.name);
    }
  } else if (*last > seen_seq_ + own_events_) {
    for (uint64_t after = seen_seq_; after < *last;) {
      auto events = store_.list_events({after, std::nullopt, 10000});
      if (!events || events->empty()) {
        all_values_stale_ = true;  // what changed is unknown
        break;
      }
      for (const auto& e : *events) {
        if (!e.app.empty()) {
          work_.add_application(e.app);
          stale_values_.insert(e.app);
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

const std::vector<OperationalValueRecord>* Fleet::values_of(const std::string& app) {
  if (std::exchange(all_values_stale_, false)) {
    values_.clear();
    stale_values_.clear();
  }
  const bool stale = stale_values_.erase(app) > 0;
  if (auto cached = values_.find(app); cached != values_.end() && !stale) {
    return &cached->second;
  }
  auto listed = store_.list_operational_values(app);
  if (!listed) {
    spdlog::error("reconcile: the operational values of {} cannot be read: {}", app, listed.error().describe());
    values_.erase(app);  // read again next time
    return nullptr;
  }
  return &(values_[app] = std::move(*listed));
}

// A long-lived controller sees many revisions; each index entry holds its
// spec. What is dropped here is rebuilt on demand, so a revision asked for
// again later (a rollback's target) costs one more parse, never a wrong
// answer. O(members), once per resync interval.
void Fleet::forget_unused_revisions(const std::vector<ApplicationRecord>& apps) {
  std::set<std::pair<std::string, int64_t>> running;
  for (const auto& app : apps) {
    running.emplace(app.name, app.current_revision);
  }
  std::pair<std::string, int64_t> key;  // looked up first: an insert would build a node per member
  for (const auto& [id, m] : members_) {
    key.first = m.record.app;
    key.second = m.record.revision;
    if (!running.contains(key)) {
      running.insert(key);
    }
  }
  std::erase_if(cluster_index_, [&](const auto& entry) { return !running.contains(entry.first); });
  std::erase_if(same_template_, [&](const auto& entry) {
    const auto& [app, cluster, a, b] = entry.first;
    return !running.contains({app, a}) || !running.contains({app, b});
  });
}

bool Fleet::tick() {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  // What agents said since the last pass (the inbox), and what their
  // messages staged, is written first: the pass reads the store and must
  // find it there. The view is free while the group is written, so readers
  // (the API) never wait for an fsync.
  drain_inbox();
  agent_changed_member_ = false;  // this pass reconciles it
  if (commit_staged(lock, true)) {
    reconcile_pass();
    (void)commit_staged(lock, true, /*dispatch_each=*/true);
  }
  dispatch_outstanding();
  expire_log_requests();
  return placement_.built && placement_.placed >= kPlacementsPerPass;
}

// Reconciles the applications and clusters marked dirty (see fleet.h,
// "Work queue"); an idle fleet costs a heartbeat check and a store read.
void Fleet::reconcile_pass() {
  check_heartbeats();
  drive_agent_upgrade();
  read_migration_locks();
  auto apps = store_.list_applications();
  if (!apps) {
    spdlog::error("reconcile: {}", apps.error().describe());
    return;
  }
  placement_.built = false;
  forget_empty_rosters();
  mark_changed_applications(*apps);
  const TimePoint now = clock_.now();
  const bool check_loads = now >= next_load_check_;
  if (check_loads) {
    next_load_check_ = now + kLoadCheckInterval;
  }
  std::set<std::string> known;       // every application's name
  std::set<std::string> visited;     // the applications this pass reconciled
  std::set<std::string> wanted;      // "app/cluster" of those
  for (const auto& app : *apps) {
    known.insert(app.name);
    const bool app_dirty = work_.application_queued(app.name);
    const bool queued = work_.anything_queued_for(app.name);
    if (!queued && !(check_loads && tracks_load(app.name))) {
      continue;
    }
    const auto spec = spec_of(app.name, app.current_revision);
    const std::vector<OperationalValueRecord>* values = values_of(app.name);
    auto scales = store_.list_cluster_scales(app.name);
    if (!spec || !values || !scales) {
      continue;  // stays dirty: tried again next pass
    }
    const std::vector<OperationalValueRecord> switches = switches_of(*values);
    if (!queued) {
      // Settled, but its load windows move on: the autoscaler alone, and the
      // cluster is queued if it now wants another count.
      for (const auto& node : flatten(*spec)) {
        const std::string key = app.name + "/" + node.path;
        if (node.cluster && by_cluster_.contains(key) &&
            autoscale(ClusterRef{&app, node.path, node.cluster}, switches, *scales) !=
                static_cast<int>(by_cluster_.at(key).size())) {
          work_.add_cluster(app.name, node.path);
        }
      }
      continue;
    }
    std::optional<ActiveRollout> rollout = load_rollout(app);
    if (rollout && rollout->record.target_revision != app.current_revision) {
      // A running rollout always targets its application's current revision
      // (an apply writes both in one commit). This one was read after the
      // applications were: an apply landed in between, and the pass's record
      // is the older one. Planned against it, members would be updated "to"
      // the revision they leave, then replaced. The next pass reads both.
      spdlog::info("reconcile: {}'s rollout {} targets revision {}, read after revision {}: reconciled next pass",
                   app.name, rollout->record.id, rollout->record.target_revision, app.current_revision);
      work_.add_application(app.name);
      continue;
    }
    visited.insert(app.name);
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
        const bool done = reconcile_cluster(ClusterRef{&app, node.path, node.cluster}, switches, markers, *scales,
                                            rollout ? &*rollout : nullptr);
        if (done) {
          work_.done_cluster(app.name, node.path);
        } else {
          work_.add_cluster(app.name, node.path);
        }
        // Between two clusters, what is staged stands on its own.
        write_ahead_if_large(options_.mutations_per_group);
      }
    }
    if (rollout && observed) {
      advance_rollout(app, *rollout);
    }
    const bool maintenance_done = complete_maintenance(app.name, *values);
    // A rollout moves on with time, and so does a maintenance with members
    // still to take: the application stays in the queue while one runs. A
    // maintenance whose every member is at its agent waits for the answers,
    // which queue their clusters.
    const bool maintenance_waits = markers.empty() ? !maintenance_done : !maintenance_at_agents(app.name, markers);
    if (observed && !rollout && !maintenance_waits) {
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
  dispatch_members();
  collecting_ = true;
  dispatch_agent_upgrade();
  send_collected();
  if (balancer_) {
    balancer_->set_targets(balancer_targets());
  }
}

void Fleet::dispatch_members() {
  collecting_ = true;
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    MemberEntry& m = *it->second;
    if (m.generation > durable_generation_) {
      ++it;
      continue;
    }
    if (m.state == MemberState::kTerminated) {
      auto member = members_.find(it->first);
      ++it;  // forget() drops it from outstanding_
      if (member != members_.end()) {
        forget(member);
      }
      continue;
    }
    send_outstanding(m);
    const bool waits = !m.command_sent && (m.state == MemberState::kStarting || m.state == MemberState::kMaintenance ||
                                           m.state == MemberState::kUpdating || m.state == MemberState::kStopping);
    it = waits ? std::next(it) : outstanding_.erase(it);
  }
  send_collected();
}

}  // namespace tranche
