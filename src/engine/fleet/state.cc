// The fleet's view and its durability: members and their indexes, loaded
// from the store; changes staged and written as one group (fleet.h, "Group
// commit"), then acted on.

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <cassert>
#include <future>
#include <limits>
#include <map>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/secrets.h"
#include "engine/events.h"

namespace tranche {

Fleet::Fleet(Store& store, const Clock& clock, FleetOptions options, std::shared_ptr<SpecCache> specs)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      join_token_hash_(sha256_hex(options_.join_token)),
      deadlines_(options_.heartbeat_timeout),
      work_(options_.resync_interval),
      specs_(specs ? std::move(specs) : std::make_shared<SpecCache>(store)),
      started_at_(clock_.now()) {}

Status Fleet::load() {
  std::lock_guard lock(mu_);
  auto hosts = store_.list_hosts();
  if (!hosts) {
    return std::unexpected(hosts.error());
  }
  const TimePoint now = clock_.now();
  for (auto& h : *hosts) {
    deadlines_.await_reconnection(h.id, now);
    if (h.state == kHostRefused) {
      refused_hosts_.insert(h.id);
    }
    hosts_[h.id] = HostEntry{h, nullptr, {}, now};
  }
  if (auto loaded = reload_members(); !loaded) {
    return loaded;
  }
  auto last = store_.last_event_seq();
  if (!last) {
    return std::unexpected(last.error());
  }
  seen_seq_ = *last;  // the first pass is a resync
  spdlog::info("fleet: {} hosts, {} members loaded", hosts_.size(), members_.size());
  return {};
}

Status Fleet::reload_members() {
  auto members = store_.list_members(MemberQuery{});
  if (!members) {
    return std::unexpected(members.error());
  }
  // Every state is read before the view is touched: an unknown one leaves it as it was.
  std::vector<MemberState> states;
  states.reserve(members->size());
  for (const auto& m : *members) {
    auto state = member_state_from_string(m.state);
    if (!state) {
      return fail(ErrorCode::kInternal, "member " + m.id + " has unknown state " + m.state);
    }
    states.push_back(*state);
  }
  members_.clear();
  by_cluster_.clear();
  by_host_.clear();
  rosters_.clear();
  outstanding_.clear();
  for (size_t i = 0; i < members->size(); ++i) {
    MemberRecord& m = (*members)[i];
    // An id names one member for good: ordinals go on after the history's
    // too (a reused id would overwrite a Terminated member's record).
    const std::string key = m.app + "/" + m.cluster;
    last_ordinal_[key] = std::max(last_ordinal_[key], m.ordinal);
    if (states[i] != MemberState::kTerminated) {
      remember(std::move(m), states[i]);
    }
  }
  // The agent upgrade as the store has it too (a refused group may have held its change).
  if (auto upgrade = load_agent_upgrade(); !upgrade) {
    spdlog::error("fleet: the agent upgrade cannot be read: {}", upgrade.error().describe());
  }
  return {};
}

Fleet::MemberEntry& Fleet::remember(MemberRecord record, MemberState state) {
  const std::string id = record.id;
  if (auto known = members_.find(id); known != members_.end()) {
    forget(known);  // its roster entry goes with it
  }
  MemberEntry& m = members_[id] = MemberEntry{std::move(record), state};
  const std::string cluster = m.record.app + "/" + m.record.cluster;
  by_cluster_[cluster][id] = &m;
  by_host_[m.record.host][id] = &m;
  outstanding_.try_emplace(id, &m);
  Roster& roster = rosters_[cluster];
  m.roster = &roster;
  m.slot = roster.entries.size();
  roster.entries.emplace_back();
  note_change(m);
  return m;
}

void Fleet::forget(std::map<std::string, MemberEntry>::iterator it) {
  const MemberEntry& m = it->second;
  const MemberRecord& r = m.record;
  if (m.roster) {
    m.roster->entries[m.slot] = RosterEntry{};  // a hole: a walk under way keeps its places
    ++m.roster->holes;
  }
  for (auto* index : {&by_cluster_, &by_host_}) {
    const std::string key = index == &by_cluster_ ? r.app + "/" + r.cluster : r.host;
    auto entry = index->find(key);
    if (entry != index->end()) {
      entry->second.erase(r.id);
      if (entry->second.empty()) {
        index->erase(entry);
      }
    }
  }
  outstanding_.erase(r.id);
  members_.erase(it);
}

void Fleet::note_change(MemberEntry& m) {
  m.roster->entries[m.slot] = RosterEntry{&m, m.record.id, m.state, m.record.revision, m.record.updated_at};
}

Fleet::Roster* Fleet::roster_of(const std::string& app, const std::string& cluster) const {
  auto found = rosters_.find(app + "/" + cluster);
  if (found == rosters_.end()) {
    return nullptr;
  }
  Roster& roster = found->second;
  if (roster.holes > 0) {
    std::erase_if(roster.entries, [](const RosterEntry& e) { return e.member == nullptr; });
    for (size_t i = 0; i < roster.entries.size(); ++i) {
      roster.entries[i].member->slot = i;
    }
    roster.holes = 0;
  }
  if (roster.entries.empty()) {
    return nullptr;  // erased by the next pass (forget_empty_rosters())
  }
#ifndef NDEBUG
  int64_t ordinal = std::numeric_limits<int64_t>::min();
  for (const RosterEntry& e : roster.entries) {
    const MemberEntry& m = *e.member;
    assert(e.id.data() == m.record.id.data() && e.id == m.record.id && e.state == m.state &&
           e.revision == m.record.revision && e.since == m.record.updated_at && m.roster == &roster);
    assert(m.record.ordinal > ordinal);
    ordinal = m.record.ordinal;
  }
#endif
  return &roster;
}

std::vector<Fleet::MemberEntry*> Fleet::members_of(const std::string& app, const std::string& cluster) const {
  std::vector<MemberEntry*> members;
  if (const Roster* roster = roster_of(app, cluster)) {
    members.reserve(roster->entries.size());
    for (const RosterEntry& e : roster->entries) {
      members.push_back(e.member);
    }
  }
  return members;
}

void Fleet::forget_empty_rosters() {
  std::erase_if(rosters_, [](const auto& entry) { return entry.second.holes == entry.second.entries.size(); });
}

int Fleet::live_in(const Roster* roster) {
  if (!roster) {
    return 0;
  }
  return static_cast<int>(std::count_if(roster->entries.begin(), roster->entries.end(),
                                        [](const RosterEntry& e) { return e.member && is_live(e.state); }));
}

namespace {

// Whether a batch can never be refused on its own: no precondition and no
// mutation that compares a version (a rollout, a lock, an upgrade). Such a
// batch fails only with the whole group, so it needs no savepoint of its own.
bool never_conflicts(const WriteBatch& batch) {
  return batch.preconditions.empty() && std::all_of(batch.mutations.begin(), batch.mutations.end(), [](const auto& m) {
           return std::holds_alternative<PutMember>(m) || std::holds_alternative<AppendEvent>(m) ||
                  std::holds_alternative<DeleteOperationalValue>(m) || std::holds_alternative<PutHost>(m);
         });
}

// An etcd transaction holds 128 operations: merged batches stay below.
constexpr size_t kMergedBatchMutations = 120;

}  // namespace

// Consecutive batches that never conflict are merged (up to
// kMergedBatchMutations): a member's Starting -> Active, a result's pid, a
// placement's two events are one batch each, and 100,000 of them as 100,000
// savepoints cost the store more than the rows themselves.
void Fleet::stage(WriteBatch batch) {
  staged_.mutations += batch.mutations.size();
  for (const Mutation& m : batch.mutations) {
    if (const auto* put = std::get_if<PutOperationalValue>(&m)) {
      staged_.apps_with_values.insert(put->record.app);
    } else if (const auto* deleted = std::get_if<DeleteOperationalValue>(&m)) {
      staged_.apps_with_values.insert(deleted->app);
    }
  }
  if (!staged_.batches.empty() && staged_.last_never_conflicts && never_conflicts(batch) &&
      staged_.batches.back().mutations.size() + batch.mutations.size() <= kMergedBatchMutations) {
    auto& into = staged_.batches.back().mutations;
    std::move(batch.mutations.begin(), batch.mutations.end(), std::back_inserter(into));
    return;
  }
  staged_.last_never_conflicts = never_conflicts(batch);
  staged_.batches.push_back(std::move(batch));
}

void Fleet::seal_group() {
  if (staged_.empty()) {
    return;
  }
  sealed_.push_back(Sealed{std::exchange(staged_, Staged{}), staged_generation_++});
}

namespace {

// Whether every batch of a group was written or refused on its own (a
// conflict): a later group may stand on it.
bool written_whole(const std::vector<Result<CommitResult>>& results) {
  return std::all_of(results.begin(), results.end(),
                     [](const auto& r) { return r || r.error().code == ErrorCode::kConflict; });
}

}  // namespace

void Fleet::write_ahead_if_large(size_t mutations) {
  act_on_written_ahead();
  if (staged_.mutations < mutations) {
    return;
  }
  seal_group();
  Sealed& sealed = sealed_.back();
  std::shared_future<GroupResults> previous;
  if (sealed_.size() > 1) {
    previous = sealed_[sealed_.size() - 2].written;
    if (!previous.valid()) {
      return;  // a group before it waits to be written: in order, by commit_staged()
    }
  }
  // Groups are written in order, and none once one before it failed: it may
  // stand on what that one held.
  auto write = [this, previous, batches = std::move(sealed.group.batches)]() -> GroupResults {
    if (previous.valid() && !written_whole(previous.get())) {
      return GroupResults(batches.size(), fail(ErrorCode::kUnavailable, "not written: a group before it failed"));
    }
    return batches.empty() ? GroupResults{} : store_.commit_group(batches);
  };
  sealed.written = std::async(std::launch::async, std::move(write)).share();
}

void Fleet::after_commit(std::function<void()> action) {
  staged_.after_commit.push_back(std::move(action));
}

void Fleet::on_staged(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  wake_committer_ = std::move(wake);
  // receive() reads wake_committer_ without the lock once it sees this.
  committer_attached_.store(static_cast<bool>(wake_committer_), std::memory_order_release);
}

void Fleet::wake_or_flush() {
  std::function<void()> wake;
  {
    std::lock_guard lock(mu_);
    if (staged_.empty() && sealed_.empty() && inbox_.empty()) {
      return;
    }
    wake = wake_committer_;
  }
  if (wake) {
    wake();
  } else {
    (void)flush();
  }
}

Status Fleet::flush() {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  drain_inbox();
  auto written = commit_staged(lock, true);
  // A member's new state is what moves its cluster on (Active after
  // minReadySeconds 0, the rollout's next batch once the last of this one
  // is Active): the pass is asked for now, not left to the next tick.
  if (written && std::exchange(agent_changed_member_, false)) {
    request_pass();
  }
  return written;
}

Status Fleet::commit_staged(std::unique_lock<std::mutex>& lock, bool release_while_writing, bool dispatch_each) {
  seal_group();
  while (!sealed_.empty()) {
    Sealed next = std::move(sealed_.front());
    sealed_.pop_front();
    if (auto done = commit_group(lock, release_while_writing, std::move(next)); !done) {
      return done;
    }
    if (dispatch_each) {
      dispatch_members();
    }
  }
  return {};
}

Status Fleet::commit_group(std::unique_lock<std::mutex>& lock, bool release_while_writing, Sealed sealed) {
  Staged& group = sealed.group;
  if (release_while_writing) {
    lock.unlock();
  }
  auto results = sealed.written.valid() ? sealed.written.get()
                 : group.batches.empty() ? GroupResults{}
                                         : store_.commit_group(group.batches);
  if (release_while_writing) {
    lock.lock();
  }
  return act_on_answer(std::move(sealed), results);
}

Status Fleet::act_on_answer(Sealed sealed, const GroupResults& results) {
  // Written or not (a refused batch), what the store holds is read again.
  stale_values_.merge(sealed.group.apps_with_values);
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i]) {
      continue;
    }
    if (results[i].error().code == ErrorCode::kConflict) {
      // An operator's change won the race (e.g. a rollout paused meanwhile):
      // the next pass reads it.
      spdlog::info("fleet: a change was not saved ({}); the next pass reads what won",
                   results[i].error().describe());
      continue;
    }
    spdlog::error("fleet: cannot persist {} change(s): {}; reloading the fleet from the store", results.size(),
                  results[i].error().describe());
    staged_ = Staged{};  // staged on top of what was not written
    sealed_.clear();  // what was written ahead of it too (each of those waits for it first)
    durable_generation_ = staged_generation_ - 1;
    all_values_stale_ = true;
    if (auto reloaded = reload_members(); !reloaded) {
      spdlog::error("fleet: cannot reload members: {}", reloaded.error().describe());
    }
    return std::unexpected(results[i].error());
  }
  durable_generation_ = sealed.generation;
  for (const auto& r : results) {
    own_events_ += r ? r->event_seqs.size() : 0;
  }
  for (auto& action : sealed.group.after_commit) {
    action();
  }
  return {};
}

// Between two clusters of a pass: the groups written ahead whose answer is
// in are acted on at once, their commands sent while the pass stages the
// next ones. Only answers that wrote the whole group: a refused one waits
// for commit_staged(), since reloading the view now would pull it from
// under the pass.
void Fleet::act_on_written_ahead() {
  while (!sealed_.empty() && sealed_.front().written.valid() &&
         sealed_.front().written.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
         written_whole(sealed_.front().written.get())) {
    Sealed next = std::move(sealed_.front());
    sealed_.pop_front();
    const std::shared_future<GroupResults> written = next.written;  // the answer, not a copy of it
    (void)act_on_answer(std::move(next), written.get());  // written whole: nothing to report
    dispatch_members();
  }
}

Status Fleet::set_state(MemberEntry& m, MemberState to, const std::string& reason, std::vector<Mutation> also) {
  return set_states({&m}, to, reason, std::move(also));
}

// Staged in batches of at most kMembersPerBatch members (an etcd
// transaction holds 128 operations); the group still costs one fsync. A
// maintenance --all-at-once changes 100,000 members in one pass: each costs
// its row and its event, and nothing else (no copy of its record but the
// one written, one log line per cluster and former state, the cluster
// queued once).
Status Fleet::set_states(const std::vector<MemberEntry*>& members, MemberState to, const std::string& reason,
                         std::vector<Mutation> also) {
  constexpr size_t kMembersPerBatch = 60;
  for (const MemberEntry* m : members) {
    if (!can_transition(m->state, to)) {
      return fail(ErrorCode::kInternal, "member " + m->record.id + ": no transition " +
                                            std::string(to_string(m->state)) + " -> " + std::string(to_string(to)));
    }
  }
  ++state_changes_;
  const std::string to_name(to_string(to));
  if (members.size() == 1) {
    spdlog::info("member {} {} -> {}: {}", members[0]->record.id, members[0]->record.state, to_name, reason);
  } else {
    std::map<std::pair<std::string, std::string>, size_t> changed;  // (cluster's path, former state) -> members
    for (const MemberEntry* m : members) {
      ++changed[{full_path(m->record.app, m->record.cluster), m->record.state}];
    }
    for (const auto& [where, count] : changed) {
      spdlog::info("{} members of {} {} -> {}: {}", count, where.first, where.second, to_name, reason);
    }
  }
  const TimePoint now = clock_.now();
  const std::string to_json = nlohmann::json(to_name).dump();
  const MemberRecord* previous = nullptr;  // its cluster is queued already
  WriteBatch batch;
  for (size_t i = 0; i < members.size(); ++i) {
    MemberEntry& m = *members[i];
    EventRecord event;
    event.time = now;
    event.app = m.record.app;
    event.path = full_path(m.record.app, m.record.cluster);
    event.member = m.record.id;
    event.type = "MemberStateChanged";
    event.from_json = nlohmann::json(m.record.state).dump();
    event.to_json = to_json;
    event.message = reason;
    m.record.state = to_name;
    m.record.updated_at = now;
    if (is_live(to)) {
      m.record.healing_delayed_since.reset();  // nothing left to heal
    }
    batch.mutations.push_back(PutMember{m.record});
    batch.mutations.push_back(AppendEvent{std::move(event)});
    m.state = to;
    note_change(m);
    m.command_sent = false;
    m.generation = staged_generation_;
    outstanding_.try_emplace(m.record.id, &m);  // no node made when it is there already
    if (previous == nullptr || previous->cluster != m.record.cluster || previous->app != m.record.app) {
      work_.add_cluster(m.record.app, m.record.cluster);
    }
    previous = &m.record;
    if (to != MemberState::kStarting && to != MemberState::kActive) {
      m.healthy_since.reset();
    }
    if ((i + 1) % kMembersPerBatch == 0 && i + 1 < members.size()) {
      stage(std::exchange(batch, WriteBatch{}));
    }
  }
  std::move(also.begin(), also.end(), std::back_inserter(batch.mutations));
  stage(std::move(batch));
  return {};
}

}  // namespace tranche
