#pragma once
// Agent upgrades (updates.md, "Upgrading Tranche itself"; docs/upgrading.md):
// a new agent binary rolled across the hosts in batches of maxUnavailable.
// This is the plan, independent of the fleet: the upgrade's record and
// per-host progress, the next step given what the hosts look like now, the
// agents' outcomes and the operator's controls. Each call changes the
// upgrade in memory and collects events; the fleet
// (reconcile/agent_upgrade.cc) persists the record with them before it
// acts (sends a command), and sends each host's command.
//
// Rules (what an operator can rely on):
// - The hosts are fixed when the upgrade starts (those matching the
//   selector, not Left), in id order; batch k is hosts [k*m, (k+1)*m) for
//   m = maxUnavailable, and batch k+1 starts once every host of batch k is
//   done or skipped: at most m hosts upgrade at once.
// - When its batch comes, a host already on the version is done at once; a
//   host whose agent is not connected (Unreachable, Refused, Left) or speaks
//   protocol 1 (which has no self-upgrade) is skipped, with the reason:
//   the upgrade does not wait for it. Running the same upgrade again later
//   upgrades the stragglers (the others are done at once).
// - A host is done when its agent answered the command ok and reports the
//   version; a not-ok answer (the agent fell back to its previous binary by
//   itself) or no answer within fallbackSeconds + kReconnectMargin fails the
//   host and pauses the upgrade with the reason. Hosts already upgrading go
//   on; no other host starts.
// - resume retries the failed hosts (a new command id each time) and goes
//   on; abort ends the upgrade (hosts already upgrading still report).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "store/records.h"

namespace tranche {

enum class AgentUpgradeState { kRunning, kPaused, kAborted, kCompleted };
std::string_view to_string(AgentUpgradeState state);
std::optional<AgentUpgradeState> agent_upgrade_state_from_string(std::string_view name);

enum class HostUpgradeStatus { kPending, kUpgrading, kDone, kFailed, kSkipped };
std::string_view to_string(HostUpgradeStatus status);

struct HostUpgrade {
  HostUpgradeStatus status = HostUpgradeStatus::kPending;
  std::string from;     // its agent's version when its turn came
  std::string message;  // what happened, in words
  int64_t attempt = 0;  // bumped by each start: part of the command id
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;

  bool operator==(const HostUpgrade&) const = default;
};

struct AgentUpgradeProgress {
  std::vector<std::string> order;  // the hosts, in the order they upgrade
  std::map<std::string, HostUpgrade> hosts;

  bool operator==(const AgentUpgradeProgress&) const = default;
};

std::string progress_to_json(const AgentUpgradeProgress& progress);
Result<AgentUpgradeProgress> agent_upgrade_progress_from_json(const std::string& text);

// What the plan sees of a host now.
struct UpgradeHostView {
  bool connected = false;     // its agent is connected and welcomed
  std::string state;          // Ready | Draining | Unreachable | Refused | Left
  int protocol = 0;           // agreed with its agent (0: never connected)
  std::string agent_version;  // as its agent last said
};

// An agent's answer may take the download, the switch and the new binary's
// first heartbeat beyond its fallback deadline.
inline constexpr std::chrono::seconds kReconnectMargin{60};
// The first protocol version with upgradeAgent.
inline constexpr int kAgentUpgradeProtocol = 2;

class AgentUpgradePlan {
 public:
  // A new upgrade of `hosts` (ids, any order), state Running.
  static AgentUpgradePlan start(AgentUpgradeRecord record, const std::vector<std::string>& hosts, TimePoint now);
  // A stored upgrade.
  static Result<AgentUpgradePlan> load(const AgentUpgradeRecord& record);

  // Deadlines of hosts upgrading, then (Running) the current batch: hosts
  // done at once, skipped, or started. Returns the hosts started, whose
  // command goes out once the record is durable.
  std::vector<std::string> step(const std::map<std::string, UpgradeHostView>& hosts, TimePoint now);
  // An agent's answer to `command_id` (a result, or the report in its
  // hello); `agent_version` is what it runs now. False when it is not the
  // answer awaited (stale, duplicate, another upgrade's).
  bool on_outcome(const std::string& host, const std::string& command_id, bool ok, const std::string& message,
                  const std::string& agent_version, TimePoint now);
  // Pauses a Running upgrade (the platform's lock lifted, an operator).
  void pause(const std::string& reason, TimePoint now);

  // Operator controls; kConflict when the state does not allow it.
  Status pause_by(const std::string& actor, TimePoint now);
  Status resume_by(const std::string& actor, TimePoint now);
  Status abort_by(const std::string& actor, TimePoint now);

  // "upgradeAgent:<upgrade>:<host>:<attempt>".
  std::string command_id(const std::string& host) const;
  // Hosts whose command is outstanding (Upgrading), in order.
  std::vector<std::string> upgrading() const;

  const AgentUpgradeRecord& record() const { return record_; }
  // The record to persist (progress written in) with the events since the
  // last call; the record's version is then the one it will have.
  std::pair<AgentUpgradeRecord, std::vector<EventRecord>> take_changes(TimePoint now);
  bool dirty() const { return dirty_; }
  AgentUpgradeState state() const { return state_; }
  const AgentUpgradeProgress& progress() const { return progress_; }
  // Batch k (from 1) of n: the first batch with a host not done or skipped.
  std::pair<int64_t, int64_t> batch() const;
  std::chrono::seconds host_deadline() const {
    return std::chrono::seconds(record_.fallback_seconds) + kReconnectMargin;
  }

  // GET /agents/upgrade: {id, version, artifact, maxUnavailable, hosts
  // (selector), state, reason, batch, batches, counts, hostsProgress: [...]}.
  nlohmann::json to_json() const;

 private:
  AgentUpgradePlan(AgentUpgradeRecord record, AgentUpgradeState state, AgentUpgradeProgress progress)
      : record_(std::move(record)), state_(state), progress_(std::move(progress)) {}
  void set_state(AgentUpgradeState to, const std::string& reason, const std::string& event, TimePoint now);
  void finish_host(const std::string& host, HostUpgradeStatus status, const std::string& message, TimePoint now);
  // A pending host whose batch came: done, skipped or started (true).
  bool start_host(const std::string& id, const std::map<std::string, UpgradeHostView>& hosts, int64_t batch,
                  int64_t batches, TimePoint now);
  void event(TimePoint now, const std::string& host, const std::string& type, const std::string& message);
  // "3 upgraded, 1 already on 0.2.0, 1 skipped".
  std::string summary() const;

  AgentUpgradeRecord record_;
  AgentUpgradeState state_;
  AgentUpgradeProgress progress_;
  std::vector<EventRecord> events_;
  bool dirty_ = false;
};

// Whether an agent reporting `reported` runs `wanted`: the same, or
// `wanted` without build metadata ("0.2.0" is run by "0.2.0+g1a2b3c").
bool runs_version(const std::string& reported, const std::string& wanted);

// Whether a host's labels match a selector: "" matches every host;
// "k=v,k2=v2" every pair (the manifest's placement selector syntax).
// kInvalid naming `field` for a selector that does not parse.
Result<std::map<std::string, std::string>> parse_host_selector(const std::string& selector, const std::string& field);

}  // namespace tranche
