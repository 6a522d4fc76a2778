#pragma once
// The fleet: hosts and their agents, members and their lifecycle, the
// scheduler and the reconciler that keeps every deployed cluster at
// `desired` members. Level-triggered: tick() compares what the store wants
// with what agents report and takes the next safe step, for the clusters and
// applications in its work queue (see work_).
//
// Group commit: a change is applied to the fleet's view at once and staged
// (with its MemberStateChanged event); flush() writes everything staged
// since the last one as one store group (one fsync), and only then is it
// acted on: a member's command goes out once the change that calls for it
// is durable, an agent's result is acknowledged once its effect is. Commands
// are idempotent by id, so a restart at any instant re-derives and resends
// what is outstanding. A group the store refuses makes the fleet reload its
// view from the store, dropping what was staged on top of it.
//
// Thread-safety: one mutex guards the view; a second one serializes
// commits, which hold the view's lock only while they stage and apply, not
// while the store writes. Agent connections and API handlers call in from
// their own threads; nothing waits for an agent (logs() answers through a
// callback).

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/histogram.h"
#include "engine/access.h"
#include "engine/agent_upgrade.h"
#include "engine/fleet/agent_inbox.h"
#include "engine/fleet/agent_link.h"
#include "engine/fleet/cluster_load.h"
#include "engine/fleet/entries.h"
#include "engine/fleet/fleet_options.h"
#include "engine/fleet/host_deadlines.h"
#include "engine/fleet/member_state.h"
#include "engine/fleet/staged_group.h"
#include "engine/fleet/work_queue.h"
#include "engine/migration.h"
#include "engine/reconcile/balancer_sync.h"
#include "engine/reconcile/scheduler.h"
#include "engine/rollout.h"
#include "engine/spec_cache.h"
#include "model/manifest.h"
#include "protocol/messages.h"
#include "store/store.h"

namespace tranche {

class Fleet {
 public:
  // `specs`: the controller's one cache, shared with the ApplicationService;
  // without one the fleet makes its own.
  Fleet(Store& store, const Clock& clock, FleetOptions options, std::shared_ptr<SpecCache> specs = nullptr);

  // Reads hosts and members from the store. Every known host gets a few
  // heartbeat timeouts to reconnect before it is called Unreachable
  // (HostDeadlines::await_reconnection).
  Status load();

  // Members of clusters with `loadBalancer` are kept in their backends
  // through `balancer` from the next tick on; without one they are not
  // registered anywhere. Call before the first tick.
  void attach_balancer(BalancerSync& balancer);

  // An agent said hello: authenticates it, agrees on a protocol version and
  // checks its build against this controller's (protocol/versions.h),
  // registers or refreshes its host, sends `welcome`, and reconciles what it
  // runs. Returns the host id. An authenticated agent that is refused is
  // recorded (a HostRefused event, the host's `refused` in hosts_json; a
  // first join as a host in state Refused) and the error says why.
  Result<std::string> connect(const protocol::Hello& hello, std::shared_ptr<AgentLink> link);
  // A message from the agent of `host_id` (not hello), decoded at the edge
  // (protocol::decode_agent_frame): nothing here reads an agent's JSON.
  // It waits in the inbox (agent_inbox.h), never for the fleet's lock: the
  // committer takes it with the next flush (results and events wake it),
  // handle_inbox() or the pass whichever comes first (heartbeats); without
  // a committer it is handled and flushed before this returns.
  void receive(const std::string& host_id, protocol::AgentMessage message);
  // Handles what waits in the inbox, and has the committer write what that
  // staged. Heartbeats wake nobody: the controller calls this every few
  // milliseconds, so that a heartbeat waits that long for its handling
  // (quality.md P0: p99 < 5 ms), not a whole tick, and a wake-up serves
  // every heartbeat that came meanwhile.
  void handle_inbox();
  // A frame from the agent of `host_id` that did not decode: counted and
  // logged (host and reason), nothing else. The link stays up; a rejected
  // message does not count as hearing from the host.
  void reject(const std::string& host_id, const Error& reason);
  // Frames rejected since start (/metrics: tranche_agent_messages_rejected_total).
  uint64_t rejected_messages() const { return rejected_messages_.load(std::memory_order_relaxed); }
  // How long each heartbeat took from its arrival (receive()) to the end of
  // its handling, the wait in the inbox included (/metrics:
  // tranche_heartbeat_handling_seconds). A copy; any thread, never waits
  // for the fleet's lock.
  Histogram heartbeat_handling() const;
  void disconnect(const std::string& host_id, const AgentLink* link);

  // Heartbeat timeouts, then one reconcile pass over every application,
  // committed as one group; then the commands it made durable go out.
  // Returns whether the pass left work that the next one can do at once (it
  // placed as many members as a pass may): the caller ticks again sooner.
  bool tick();
  // Someone else changed what the fleet reconciles (an operator's write, or
  // an agent's answer that flush() wrote): the controller runs a pass within
  // milliseconds (take_pass_request) instead of at the next tick. Any
  // thread; requests between two looks are one.
  void request_pass() { pass_requested_.store(true, std::memory_order_relaxed); }
  bool take_pass_request() { return pass_requested_.exchange(false, std::memory_order_relaxed); }

  // Commits what is staged (see above). Any thread; commits are serialized.
  Status flush();
  // Called, without the fleet's lock, whenever an agent's message staged a
  // change or waits in the inbox: the controller's committer wakes on it
  // and flushes, so that agents' connections never wait for the disk or the
  // fleet. Without one, receive() flushes before it returns. Set once,
  // before agents connect.
  void on_staged(std::function<void()> wake);

  // `members` counts only `visible_app`'s when given: a scoped token learns
  // nothing of other applications.
  nlohmann::json hosts_json(const std::optional<std::string>& visible_app) const;
  Result<nlohmann::json> set_host_draining(const std::string& host_id, bool draining, const Caller& caller);
  // A page of GET /members: ordered by id, at most `limit` members after the
  // id `after` (the previous page's cursor, its last id); every member
  // without a limit. The answer's "continue" is the next page's cursor, or
  // null after the last page.
  struct MemberPage {
    std::optional<size_t> limit;
    std::string after;
  };
  Result<nlohmann::json> members_json(const MemberQuery& query, const std::optional<std::string>& visible_app,
                                      const MemberPage& page = {});
  // What the members of each of `clusters` (paths within `app`) are doing
  // now, for the application's view: from the cluster index, never the store.
  struct ClusterCounts {
    int64_t count = 0;  // members that exist (Terminated ones are history)
    std::array<int64_t, static_cast<size_t>(MemberState::kUnreachable) + 1> by_state{};
    int64_t healthy = 0;          // reporting healthy
    int64_t updating = 0;         // Updating, or being replaced by a successor
    int64_t healing_delayed = 0;  // a replacement held back (autohealing off, a lock)
    std::map<int64_t, int64_t> by_revision;
    std::map<int64_t, int64_t> live_by_revision;  // the rollout view's "updated"
  };
  std::map<std::string, ClusterCounts> cluster_counts(const std::string& app,
                                                      const std::vector<std::string>& clusters) const;
  static nlohmann::json to_json(const ClusterCounts& counts);
  Result<nlohmann::json> member_json(const std::string& member_id, const std::optional<std::string>& visible_app);
  // Per cluster of `app`: the load state, the average load over the window,
  // and the member count the autoscaler wants (nullopt: the manifest's).
  nlohmann::json load_json(const std::string& app) const;

  // A member's output, or with `hook` ("update", "maintenance") that hook's
  // output, asked of its agent; also for members that are gone, as long as
  // their host's agent is connected (hook output outlives the member).
  // Nothing waits for the agent: `done` is called once, with the logs or why
  // there are none, at once, from the thread that receives the agent's
  // answer, or from the pass that finds `timeout` passed. It must not call
  // back into the fleet.
  using LogsCallback = std::function<void(Result<nlohmann::json>)>;
  void logs(const std::string& member_id, const std::optional<std::string>& visible_app,
            const std::optional<std::string>& hook, std::chrono::milliseconds timeout, LogsCallback done);

  // Agent upgrades (reconcile/agent_upgrade.cc, engine/agent_upgrade.h):
  // one at a time, under the platform's migration lock; acknowledged once
  // durable. The artifact is the agent binary (already in the store).
  struct AgentUpgradeRequest {
    std::string version;
    ArtifactRecord artifact;
    int64_t max_unavailable = 1;
    std::string selector;  // "k=v,..." of host labels; "" every host
    int64_t fallback_seconds = 60;
  };
  Result<nlohmann::json> start_agent_upgrade(const AgentUpgradeRequest& request, const Caller& caller);
  // The newest upgrade's progress; kNotFound when there was none.
  Result<nlohmann::json> agent_upgrade_json() const;
  // "pause", "resume" or "abort".
  Result<nlohmann::json> control_agent_upgrade(const std::string& action, const Caller& caller);
  // The host whose agent holds `token` (an agent downloading its binary).
  std::optional<std::string> host_of_token(std::string_view token) const;

 private:
  // Host states (model.md): Ready, Draining (cordoned), Unreachable, Left;
  // and Refused.
  static constexpr const char* kHostReady = "Ready";
  static constexpr const char* kHostUnreachable = "Unreachable";
  static constexpr const char* kHostDraining = "Draining";
  // Joined with the join token but refused (protocol or build skew): never
  // welcomed, so it has no token of its own; its next join takes this record.
  static constexpr const char* kHostRefused = "Refused";

  // What the view holds per host and member (entries.h).
  using HostEntry = fleet::HostEntry;
  using MemberEntry = fleet::MemberEntry;
  using RosterEntry = fleet::RosterEntry;
  using Roster = fleet::Roster;
  // The group commit's units (staged_group.h).
  using Staged = fleet::StagedGroup;
  using Sealed = fleet::SealedGroup;
  using GroupResults = fleet::GroupResults;
  struct ClusterRef {
    const ApplicationRecord* app;
    std::string path;
    const ClusterSpec* spec;
  };
  struct LogRequest {
    std::string member;
    TimePoint deadline;
    std::chrono::milliseconds timeout;
    LogsCallback done;
  };
  // The application's rollout while it moves members, as read at the start
  // of a tick; changes are collected and committed together (see
  // reconcile/rollout.cc).
  struct ActiveRollout {
    RolloutRecord record;
    RolloutPhase phase = RolloutPhase::kProgressing;
    RolloutProgress progress;
    std::map<std::string, std::set<std::string>> prerequisites;
    std::vector<EventRecord> events;  // to commit with the record
    std::vector<Mutation> outcome;    // once finished: its apply's operation record, committed with it
    bool dirty = false;
  };

  MemberEntry& remember(MemberRecord record, MemberState state);
  void forget(std::map<std::string, MemberEntry>::iterator it);
  // After any change to a member's state, revision or record: its roster
  // entry says the same again.
  void note_change(MemberEntry& m);
  // The cluster's roster, without holes; null when the cluster has no
  // member. A member created meanwhile is appended (entries move).
  Roster* roster_of(const std::string& app, const std::string& cluster) const;
  // A cluster's members oldest first (by ordinal), for the steps that read
  // members themselves.
  std::vector<MemberEntry*> members_of(const std::string& app, const std::string& cluster) const;
  // Between two passes (a walk may hold a roster): rosters of clusters
  // whose every member left.
  void forget_empty_rosters();
  // Its live members (is_live()); 0 for none.
  static int live_in(const Roster* roster);

  // Without mu_: hands what is staged to the committer, or commits it.
  void wake_or_flush();
  Result<std::string> connect_and_stage(const protocol::Hello& hello, std::shared_ptr<AgentLink> link);
  // With mu_ held: the host in state Refused of the hello's hostname and
  // labels, or null.
  HostEntry* refused_joiner(const protocol::Hello& hello);
  // With mu_ held: a first join's host record (the Refused one of its
  // machine when there is one), or an error when it could not be written.
  Result<HostEntry*> join(const protocol::Hello& hello, const std::string& host_token, TimePoint now);
  // With mu_ held: records that the (authenticated) agent of `host` (null:
  // a first join) was refused, once per reason.
  void record_refusal(HostEntry* host, const protocol::Hello& hello, TimePoint now, const std::string& why);

  // All of these run with mu_ held.
  // Handles what waits in the inbox, oldest first.
  void drain_inbox();
  void receive_locked(const std::string& host_id, TimePoint arrived, const protocol::AgentMessage& message);
  // Writes to come with the next flush, and what to do once they are durable.
  void stage(WriteBatch batch);
  void after_commit(std::function<void()> action);
  // commit_mu_ held, mu_ held through `lock`; with `release_while_writing`
  // the view is free for readers and agents while the store writes. Each
  // sealed group is written in turn; with `dispatch_each` the commands that
  // each one made durable go out before the next is written.
  Status commit_staged(std::unique_lock<std::mutex>& lock, bool release_while_writing, bool dispatch_each = false);
  Status commit_group(std::unique_lock<std::mutex>& lock, bool release_while_writing, Sealed sealed);
  // After a refused group: the view as the store has it (links kept).
  Status reload_members();
  void reconcile_pass();
  void expire_log_requests();
  void dispatch_outstanding();
  // The members' part of it: the command of each outstanding member whose
  // latest change is durable.
  void dispatch_members();
  // Persists the change (with `also`, in the same batch) before it is acted on.
  Status set_state(MemberEntry& m, MemberState to, const std::string& reason, std::vector<Mutation> also = {});
  Status set_states(const std::vector<MemberEntry*>& members, MemberState to, const std::string& reason,
                    std::vector<Mutation> also = {});
  // Members' maintenance markers (restart|replace) by member path, indexed
  // once per pass: with every member marked, a scan per member would cost
  // members x markers on every tick.
  using MaintenanceMarkers = std::unordered_map<std::string, const OperationalValueRecord*>;
  static MaintenanceMarkers index_markers(const std::vector<OperationalValueRecord>& values);
  // An application's operational values from values_ (nullptr when the store cannot say).
  const std::vector<OperationalValueRecord>* values_of(const std::string& app);
  void start_maintenance(const ClusterRef& cluster, const MaintenanceMarkers& markers, int desired);
  // `started`: the restarted process, when the agent said (a result's data).
  void resume_after_maintenance(MemberEntry& m, const std::string& message, const protocol::ProcessStarted* started);
  // Ends the maintenance commands whose members are all through: a node's
  // (its value returns to off) and a member's own; returns whether none of
  // the application's is still Running.
  bool complete_maintenance(const std::string& app, const std::vector<OperationalValueRecord>& values);
  // Whether every member marked in `app` is in its maintenance step with the
  // command at its agent: nothing moves until an agent answers, and that
  // answer queues the member's cluster (no pass needed meanwhile).
  bool maintenance_at_agents(const std::string& app, const MaintenanceMarkers& markers) const;
  struct ReplaceTally;
  std::string replaced_or_removed(const std::string& app, const OperationalValueRecord& v,
                                  const ReplaceTally& tally) const;
  static std::string maintenance_command_id(const MemberEntry& m);
  void set_host_state(HostEntry& h, const std::string& to, const std::string& reason);
  void check_heartbeats();
  // Returns whether the cluster is settled (see settled()). `switches`:
  // the application's autoscaling and autohealing values (switches_of()).
  bool reconcile_cluster(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& switches,
                         const MaintenanceMarkers& markers, const std::vector<ClusterScaleRecord>& scales,
                         ActiveRollout* rollout);
  // An application's values but its maintenance markers: what autoscaling
  // and autohealing resolve against, per cluster and per failed member. A
  // maintenance marks every member; a scan of all values per look-up cost
  // 100 clusters x 100,000 markers a pass.
  static std::vector<OperationalValueRecord> switches_of(const std::vector<OperationalValueRecord>& values);
  bool settled(const ClusterRef& cluster, int desired) const;
  void mark_changed_applications(const std::vector<ApplicationRecord>& apps);
  // At each resync: the cluster indexes and template comparisons of
  // revisions that neither a member nor its application runs any more.
  void forget_unused_revisions(const std::vector<ApplicationRecord>& apps);
  // Whether load samples of the application's clusters are in a window.
  bool tracks_load(const std::string& app) const;
  // Rollouts (reconcile/rollout.cc).
  std::optional<ActiveRollout> load_rollout(const ApplicationRecord& app);
  // Counts new failures and applies onFailure, persisted before anything acts
  // on them; false when this application must wait for the next tick.
  bool observe_rollout(const ApplicationRecord& app, ActiveRollout& rollout);
  // Takes the cluster's next rollout step; false when the rollout does not
  // own the cluster's members now (done, waiting or paused).
  bool drive_rollout(const ClusterRef& cluster, const Roster& roster, int desired, ActiveRollout& rollout);
  // The revision that healing creates members on while a rollout holds a cluster.
  int64_t held_revision(const ClusterRef& cluster, const Roster& roster, const ActiveRollout* rollout) const;
  void advance_rollout(const ApplicationRecord& app, ActiveRollout& rollout);
  void set_phase(ActiveRollout& rollout, RolloutPhase to, const std::string& reason);
  // Appends the record and the collected events to `batch` and stages it.
  void stage_rollout(ActiveRollout& rollout, WriteBatch batch = {});
  void begin_rollback(const ApplicationRecord& app, ActiveRollout& rollout, const std::string& reason);
  void begin_updates(std::span<MemberEntry* const> members, const ClusterRef& cluster, int64_t rollout_id);
  static std::string update_command_id(const MemberEntry& m);
  // Members whose template equals their cluster's current one take the
  // current revision's number without being touched.
  void relabel(const ClusterRef& cluster, const Roster& roster);
  // Load balancing (updates.md): whether the member takes no traffic from
  // its backend (true when it has none), the targets for the balancer, and
  // the balancer's problem with any backend of `spec`, met by a pass that
  // began at `since` or later.
  bool out_of_traffic(const MemberEntry& m);
  // The state rollouts and maintenance pace by: an Active member that its
  // load balancer does not send traffic to yet is not available yet.
  MemberState planned_state(const MemberEntry& m);
  std::map<std::string, BalancerTarget> balancer_targets();
  std::optional<std::string> balancer_problem(const ApplicationSpec& spec, TimePoint since) const;
  // When this controller first saw the rollout in its present phase.
  TimePoint phase_seen_since(const ActiveRollout& rollout);
  // Builds placement_ for this pass, at most once, and only when a member is placed.
  void view_placement();
  // Updates the load state and, with autoscaling on, decides a new member
  // count; returns the count the cluster should have now.
  int autoscale(const ClusterRef& cluster, const std::vector<OperationalValueRecord>& switches,
                const std::vector<ClusterScaleRecord>& scales);
  // `why`: autohealing is off, or a migration lock suspends it.
  void delay_healing(MemberEntry& m, const std::string& why);
  void resume_healing(MemberEntry& m);
  void record_healing(MemberEntry& m, std::optional<TimePoint> delayed_since, const char* event,
                      const std::string& message);
  // Draining -> Stopping once its load balancer sends it nothing more.
  void stop_if_drained(MemberEntry& m);
  void retire(MemberEntry& m, const std::string& reason, std::vector<Mutation> also = {});
  // Why a replace step (a rollout's, a maintenance's) retires `m`: replaced
  // by its successor, or surplus as the cluster shrank to `desired`.
  std::string replaced_by(const MemberEntry& m, int desired) const;
  void scale_down(const ClusterRef& cluster, std::vector<MemberEntry*> live, const MaintenanceMarkers& markers,
                  int desired);
  // model.md, "maintenance replace": members marked for it are replaced by
  // new ones with the rollouts' replace step; false when none is marked.
  bool replace_for_maintenance(const ClusterRef& cluster, const MaintenanceMarkers& markers, int desired);
  // Whether the cluster's maintenance replace waits for `rollout`
  // (reconcile/interactions.h), said once per rollout in an event.
  bool replace_waits_for_rollout(const ClusterRef& cluster, const MaintenanceMarkers& markers,
                                 const ActiveRollout* rollout);
  // Pairs each member being replaced (oldest first) that has no live
  // successor with the oldest successor not yet paired.
  static void pair_successors(const std::vector<MemberEntry*>& replaced, const std::vector<MemberEntry*>& successors);
  // Migration mode (reconcile/migration.cc): the locks as of this pass.
  struct LockEntry {
    MigrationLockRecord record;
    MigrationDetail detail;
  };
  // Also ends whole-application performs whose rollout ended, and member
  // performs whose member is gone.
  void read_migration_locks();
  // The lock holding `app`: its own, else the platform's; nullptr: none.
  const LockEntry* migration_lock(const std::string& app) const;
  // Moves the member of a running member perform one step; true while the
  // perform owns the cluster's members (nothing else changes them).
  bool drive_member_perform(const ClusterRef& cluster);
  void finish_perform(LockEntry& lock, bool succeeded, const std::string& message);
  Status create_member(const ClusterRef& cluster, int64_t revision, const std::string& reason = {});
  void send_outstanding(MemberEntry& m);
  void send(HostEntry& h, const protocol::Command& command);
  void send(HostEntry& h, std::string text);
  // The spec of one kind of command for the member's cluster at its
  // revision, made once per hand-off (send_collected() forgets them): the
  // same for every member there, and a batch of 10,000 would build it 10,000
  // times.
  template <class MakeSpec>
  const protocol::SpecText& spec_text(char kind, const MemberEntry& m, const MakeSpec& make);
  std::unordered_map<std::string, protocol::SpecText> spec_texts_;
  // While a dispatch runs, send() collects each agent's commands here, and
  // they go out as one batch per agent when it ends (send_all).
  struct Outgoing {
    std::shared_ptr<AgentLink> link;
    std::vector<std::string> messages;
  };
  std::unordered_map<const AgentLink*, Outgoing> outbox_;
  bool collecting_ = false;
  size_t collected_ = 0;
  static constexpr size_t kCollectedPerHandOff = 4096;
  void send_collected();
  void on_heartbeat(HostEntry& h, const protocol::Heartbeat& hb);
  void on_report(MemberEntry& m, const protocol::MemberReport& report);
  void on_result(HostEntry& h, const protocol::CommandResult& result);
  void on_event(HostEntry& h, const protocol::AgentEvent& event);
  void reconcile_hello(HostEntry& h, const protocol::Hello& hello);
  std::shared_ptr<const ApplicationSpec> spec_of(const std::string& app, int64_t revision);
  const ClusterSpec* cluster_spec(const MemberEntry& m);
  const ClusterSpec* cluster_of(const std::string& app, int64_t revision, const std::string& path);
  int64_t next_ordinal(const std::string& app, const std::string& cluster);
  protocol::StartSpec start_spec(const MemberEntry& m, const ClusterSpec& c) const;
  nlohmann::json to_json(const MemberEntry& m);
  void report_failure_once(const std::string& key, const std::string& message);

  Store& store_;
  const Clock& clock_;
  FleetOptions options_;
  std::string join_token_hash_;
  BalancerSync* balancer_ = nullptr;

  std::mutex commit_mu_;  // taken before mu_, never after
  mutable std::mutex mu_;
  Staged staged_;
  uint64_t staged_generation_ = 1;   // the group being staged now
  uint64_t durable_generation_ = 0;  // the newest group written
  // Groups closed at a safe point (seal_group()), oldest first, waiting for
  // commit_staged(): each is its own store group (one fsync), so that a
  // pass that changes 100,000 members sends the first ones' commands while
  // the store writes the next ones.
  std::deque<Sealed> sealed_;
  // Closes the group being staged; the caller vouches that nothing staged
  // so far needs anything staged after it to be durable with it.
  void seal_group();
  // The group closed once it holds options_.mutations_per_group.
  void seal_group_if_large() {
    if (staged_.mutations >= options_.mutations_per_group) {
      seal_group();
    }
  }
  // The pass's seal_group_if_large(), at `mutations` (between two clusters,
  // or every updates_per_group updates of a rollout's batch): the group
  // closed is written at once, on a thread of its own, after the one written
  // ahead before it, while the pass stages the next (a pass holds
  // commit_mu_, and nothing else seals a group meanwhile); the groups
  // written ahead whose answer is in are acted on first
  // (act_on_written_ahead()), the rest by commit_staged().
  void write_ahead_if_large(size_t mutations);
  // What a group's answer calls for: on a refusal, the view reloaded from
  // the store; else the group is durable and its after_commit() actions run.
  Status act_on_answer(Sealed sealed, const GroupResults& results);
  void act_on_written_ahead();
  std::function<void()> wake_committer_;
  std::atomic<bool> committer_attached_{false};  // wake_committer_ is set (and stays)
  AgentInbox inbox_;
  std::vector<AgentInbox::Entry> inbox_batch_;  // the batch being handled; its buffer is reused
  HostDeadlines deadlines_;
  std::map<std::string, HostEntry> hosts_;
  // Ids of the hosts in state Refused, which a first join looks among: a
  // scan of hosts_ per join made a 10,000-host fleet's first connections
  // quadratic.
  std::set<std::string> refused_hosts_;
  std::map<std::string, MemberEntry> members_;  // by id; Terminated ones leave memory
  // Indexes into members_ (whose entries never move), kept by remember()
  // and forget(): a pass, a reconnect or a read costs what it touches.
  using MemberIndex = std::map<std::string, MemberEntry*>;  // by id
  std::unordered_map<std::string, MemberIndex> by_cluster_;  // "app/cluster"
  std::unordered_map<std::string, MemberIndex> by_host_;
  // By "app/cluster" (see Roster). Mutable: roster_of() closes a roster's
  // holes as it is read.
  mutable std::unordered_map<std::string, Roster> rosters_;
  // Members whose state may call for a command not sent yet (entries of
  // members_, dropped by forget()).
  std::map<std::string, MemberEntry*> outstanding_;
  // What the next pass reconciles. A cluster is queued when one of its
  // members changes state and stays queued until it is settled; an
  // application when someone else's change names it (an event the fleet did
  // not write), while a rollout or a maintenance runs, and at every resync.
  WorkQueue work_;
  uint64_t seen_seq_ = 0;    // the newest event seq a pass has accounted for
  uint64_t own_events_ = 0;  // events the fleet wrote since then
  std::shared_ptr<SpecCache> specs_;
  // The clusters of each revision a member or a pass asked about, by path;
  // the index holds its revision's spec, which its pointers point into, and
  // so keeps it in the SpecCache until forget_unused_revisions().
  struct ClusterIndex {
    std::shared_ptr<const ApplicationSpec> spec;
    std::map<std::string, const ClusterSpec*> by_path;
  };
  std::map<std::pair<std::string, int64_t>, ClusterIndex> cluster_index_;
  // (app, cluster, revision a, revision b) -> whether their member templates are equal.
  std::map<std::tuple<std::string, std::string, int64_t, int64_t>, bool> same_template_;
  std::map<std::string, int64_t> last_ordinal_;  // "app/cluster" -> highest ordinal handed out
  // Each application's operational values as the store last gave them: a
  // maintenance of 100,000 members holds 100,000 markers, which every pass
  // of it read again otherwise. Stale once someone else's event names the
  // application (mark_changed_applications()), once a group of the fleet's
  // own that writes one is answered, and all of them at a resync or a
  // refused group. Read again only by values_of(), at the top of a pass's
  // turn for the application: MaintenanceMarkers point into these.
  std::map<std::string, std::vector<OperationalValueRecord>> values_;
  std::set<std::string> stale_values_;
  bool all_values_stale_ = false;
  std::map<std::string, std::string> reported_failures_;
  // Applications with no maintenance command Running (complete_maintenance).
  std::set<std::string> maintenance_settled_;
  // A node's maintenance replace as this controller saw it, by "app/node":
  // how many members it marked (the most markers seen below it at once), so
  // that its completion tells replaced from removed as the cluster shrank.
  // Memory only: a controller started after the command (started_at_) may
  // have missed members that left before.
  struct ReplaceTally {
    TimePoint set_at{};
    size_t marked = 0;
  };
  std::map<std::string, ReplaceTally> replace_tallies_;
  const TimePoint started_at_;
  std::map<std::string, LogRequest> log_requests_;
  std::atomic<uint64_t> rejected_messages_{0};  // agent frames that did not decode
  std::atomic<bool> pass_requested_{false};
  uint64_t state_changes_ = 0;  // set_states() calls so far
  // An agent's message changed a member's state since the last pass began:
  // flush() asks for a pass once that is written.
  bool agent_changed_member_ = false;
  // Taken after mu_ (drain_inbox adds a batch) or alone (a reader).
  mutable std::mutex heartbeat_handling_mu_;
  Histogram heartbeat_handling_;
  // Built at most once per pass, when a member is placed (view_placement()).
  PlacementView placement_;
  // A pass places at most this many members, so that it commits, sends their
  // start commands and lets go of the view within a bounded time; a large
  // apply is placed over several passes.
  static constexpr int kPlacementsPerPass = 2000;
  std::map<std::string, ClusterLoad> loads_;          // by "app/cluster"; never erased (see MemberEntry::load)
  // Settled clusters' load windows are looked at this often, not every pass.
  static constexpr std::chrono::milliseconds kLoadCheckInterval{1000};
  TimePoint next_load_check_{};
  std::map<std::string, std::optional<int>> scaled_;  // by "app/cluster", for load_json
  std::map<std::string, LockEntry> locks_;  // by app, "" the platform's (read_migration_locks)
  // By app. Only a balancer pass that began after a rollout entered its
  // phase may pause it: else a resume is undone by what a pass found
  // before the operator resumed it.
  struct PhaseSeen {
    int64_t rollout = 0;
    RolloutPhase phase = RolloutPhase::kProgressing;
    TimePoint since;
  };
  std::map<std::string, PhaseSeen> phases_seen_;

  // Agent upgrades (reconcile/agent_upgrade.cc), all with mu_ held.
  Status load_agent_upgrade();
  std::map<std::string, UpgradeHostView> upgrade_views() const;
  Result<bool> platform_locked() const;
  // The pass's step of the upgrade; staged with its events.
  void drive_agent_upgrade();
  void stage_agent_upgrade();
  // Sends the command of every host upgrading that has not had it on its
  // current connection, once the upgrade's latest change is durable.
  void dispatch_agent_upgrade();
  // A hello: its new connection gets the command again; its report (if any)
  // is an outcome.
  void agent_upgrade_hello(HostEntry& h, const protocol::Hello& hello);
  void agent_upgrade_outcome(HostEntry& h, const std::string& command_id, bool ok, const std::string& message);
  std::optional<AgentUpgradePlan> upgrade_;  // the newest, as persisted (or staged)
  uint64_t upgrade_generation_ = 0;          // the group its latest change was staged in
  std::set<std::string> upgrade_sent_;       // hosts whose command went out on their current connection
};

}  // namespace tranche
