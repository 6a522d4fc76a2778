// The fleet's side of agent upgrades (engine/agent_upgrade.h has the plan
// and its rules): the operator's start and controls, the pass's step, the
// agents' outcomes, and each host's upgradeAgent command, sent once the
// record that started it is durable and again on each new connection of
// its agent until it answers (the agent acts on an id once).
//
// An agent upgrade runs under the platform's migration lock (`tranche
// migration begin --all`): nothing else changes the fleet while agents
// re-execute themselves. Starting or resuming one without the lock is
// refused (409), and lifting the lock pauses a running one.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/secrets.h"
#include "engine/artifacts.h"
#include "engine/fleet/fleet.h"
#include "protocol/versions.h"

namespace tranche {

namespace {

using nlohmann::json;

const char* const kNeedsLock =
    "agent upgrades run under the platform's migration lock, so that nothing else changes the fleet while agents "
    "re-execute themselves: `tranche migration begin --all` first, `tranche migration complete --all` once they are "
    "upgraded";

bool matches(const std::map<std::string, std::string>& labels, const std::map<std::string, std::string>& selector) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) {
      return false;
    }
  }
  return true;
}

}  // namespace

Status Fleet::load_agent_upgrade() {
  upgrade_.reset();
  auto record = store_.latest_agent_upgrade();
  if (!record) {
    return std::unexpected(record.error());
  }
  if (!*record) {
    return {};
  }
  auto plan = AgentUpgradePlan::load(**record);
  if (!plan) {
    return std::unexpected(plan.error());
  }
  upgrade_ = std::move(*plan);
  upgrade_sent_.clear();
  return {};
}

std::map<std::string, UpgradeHostView> Fleet::upgrade_views() const {
  std::map<std::string, UpgradeHostView> views;
  for (const auto& [id, h] : hosts_) {
    views[id] = UpgradeHostView{h.link != nullptr, h.record.state, h.protocol, h.agent_version};
  }
  return views;
}

void Fleet::stage_agent_upgrade() {
  auto [record, events] = upgrade_->take_changes(clock_.now());
  WriteBatch batch;
  batch.mutations.push_back(PutAgentUpgrade{std::move(record)});
  for (auto& e : events) {
    spdlog::info("{}", e.message);
    batch.mutations.push_back(AppendEvent{std::move(e)});
  }
  stage(std::move(batch));
  upgrade_generation_ = staged_generation_;
}

Result<bool> Fleet::platform_locked() const {
  auto lock = store_.get_migration_lock("");
  if (!lock) {
    return std::unexpected(lock.error());
  }
  return lock->has_value();
}

Result<json> Fleet::start_agent_upgrade(const AgentUpgradeRequest& request, const Caller& caller) {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  if (upgrade_ && (upgrade_->state() == AgentUpgradeState::kRunning ||
                   upgrade_->state() == AgentUpgradeState::kPaused)) {
    return fail(ErrorCode::kConflict, fmt::format("agent upgrade {} to {} is {}; abort it first (tranche agent upgrade "
                                                  "abort) or let it complete",
                                                  upgrade_->record().id, upgrade_->record().agent_version,
                                                  upgrade_->record().state));
  }
  if (auto skew = protocol::check_skew(request.version, options_.controller_version); !skew) {
    return fail(ErrorCode::kInvalid, "version " + request.version + ": " + skew.error().message, "version");
  }
  auto selector = parse_host_selector(request.selector, "hosts");
  if (!selector) {
    return std::unexpected(selector.error());
  }
  auto locked = platform_locked();
  if (!locked) {
    return std::unexpected(locked.error());
  }
  if (!*locked) {
    return fail(ErrorCode::kConflict, kNeedsLock);
  }
  std::vector<std::string> targets;
  for (const auto& [id, h] : hosts_) {
    if (h.record.state != "Left" && matches(h.record.labels, *selector)) {
      targets.push_back(id);
    }
  }
  if (targets.empty()) {
    return fail(ErrorCode::kInvalid,
                request.selector.empty() ? "there is no host to upgrade" : "no host matches '" + request.selector + "'",
                "hosts");
  }
  auto latest = store_.latest_agent_upgrade();
  if (!latest) {
    return std::unexpected(latest.error());
  }
  const TimePoint now = clock_.now();
  AgentUpgradeRecord record;
  record.id = *latest ? (*latest)->id + 1 : 1;
  record.agent_version = request.version;
  record.artifact_sha256 = request.artifact.sha256;
  record.artifact_size = request.artifact.size;
  record.max_unavailable = request.max_unavailable;
  record.selector = request.selector;
  record.fallback_seconds = request.fallback_seconds;
  record.reason = fmt::format("started by {} with artifact {} {}", caller.actor, request.artifact.name,
                              request.artifact.version);
  record.author = caller.actor;
  record.created_at = now;
  AgentUpgradePlan plan = AgentUpgradePlan::start(std::move(record), targets, now);
  const std::optional<AgentUpgradePlan> previous = std::move(upgrade_);
  upgrade_ = std::move(plan);
  upgrade_sent_.clear();
  upgrade_->step(upgrade_views(), now);
  stage_agent_upgrade();
  WriteBatch audit;
  audit.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, "agents",
                                         fmt::format("201 agent upgrade {} to {}", upgrade_->record().id,
                                                     upgrade_->record().agent_version)}});
  stage(std::move(audit));
  // Acknowledged, and its first commands sent, only once durable.
  if (auto done = commit_staged(lock, false); !done) {
    upgrade_ = previous;
    return std::unexpected(done.error());
  }
  dispatch_agent_upgrade();
  return upgrade_->to_json();
}

Result<json> Fleet::agent_upgrade_json() const {
  std::lock_guard lock(mu_);
  if (!upgrade_) {
    return fail(ErrorCode::kNotFound, "no agent upgrade has been started");
  }
  return upgrade_->to_json();
}

Result<json> Fleet::control_agent_upgrade(const std::string& action, const Caller& caller) {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  if (!upgrade_) {
    return fail(ErrorCode::kNotFound, "no agent upgrade has been started");
  }
  const TimePoint now = clock_.now();
  Status done;
  if (action == "pause") {
    done = upgrade_->pause_by(caller.actor, now);
  } else if (action == "abort") {
    done = upgrade_->abort_by(caller.actor, now);
  } else if (action == "resume") {
    auto locked = platform_locked();
    if (!locked) {
      return std::unexpected(locked.error());
    }
    done = *locked ? upgrade_->resume_by(caller.actor, now) : Status(fail(ErrorCode::kConflict, kNeedsLock));
  } else {
    return fail(ErrorCode::kInvalid, "action must be pause, resume or abort", "action");
  }
  if (!done) {
    return std::unexpected(done.error());
  }
  if (action == "resume") {
    upgrade_->step(upgrade_views(), now);
  }
  stage_agent_upgrade();
  WriteBatch audit;
  audit.mutations.push_back(AppendAudit{
      {0, now, caller.actor, caller.action, "agents",
       fmt::format("200 agent upgrade {} {}", upgrade_->record().id, upgrade_->record().state)}});
  stage(std::move(audit));
  if (auto committed = commit_staged(lock, false); !committed) {
    (void)load_agent_upgrade();
    return std::unexpected(committed.error());
  }
  dispatch_agent_upgrade();
  return upgrade_->to_json();
}

std::optional<std::string> Fleet::host_of_token(std::string_view token) const {
  const std::string hash = sha256_hex(token);
  std::lock_guard lock(mu_);
  for (const auto& [id, h] : hosts_) {
    if (constant_time_equals(hash, h.record.token_hash)) {
      return id;
    }
  }
  return std::nullopt;
}

void Fleet::drive_agent_upgrade() {
  if (!upgrade_ || upgrade_->state() == AgentUpgradeState::kCompleted ||
      (upgrade_->state() == AgentUpgradeState::kAborted && upgrade_->upgrading().empty())) {
    return;
  }
  const TimePoint now = clock_.now();
  if (upgrade_->state() == AgentUpgradeState::kRunning) {
    auto locked = platform_locked();
    if (locked && !*locked) {
      upgrade_->pause(
          "the platform's migration lock was lifted; `tranche migration begin --all` and `tranche agent upgrade "
          "resume` to go on",
          now);
    }
  }
  for (const auto& host : upgrade_->step(upgrade_views(), now)) {
    upgrade_sent_.erase(host);
  }
  if (upgrade_->dirty()) {
    stage_agent_upgrade();
  }
}

void Fleet::dispatch_agent_upgrade() {
  if (!upgrade_ || upgrade_generation_ > durable_generation_) {
    return;
  }
  const AgentUpgradeRecord& r = upgrade_->record();
  for (const auto& id : upgrade_->upgrading()) {
    auto host = hosts_.find(id);
    if (host == hosts_.end() || !host->second.link || host->second.protocol < kAgentUpgradeProtocol ||
        upgrade_sent_.contains(id)) {
      continue;
    }
    send(host->second,
         protocol::Command{upgrade_->command_id(id), "",
                           protocol::AgentUpgradeSpec{r.agent_version, r.artifact_sha256, r.artifact_size,
                                                      artifact_download_path(r.artifact_sha256), r.fallback_seconds}});
    upgrade_sent_.insert(id);
  }
}

void Fleet::agent_upgrade_hello(HostEntry& h, const protocol::Hello& hello) {
  upgrade_sent_.erase(h.record.id);  // a new connection: the command goes out again until answered
  if (hello.upgrade) {
    agent_upgrade_outcome(h, hello.upgrade->command_id, hello.upgrade->ok, hello.upgrade->message);
  }
}

void Fleet::agent_upgrade_outcome(HostEntry& h, const std::string& command_id, bool ok, const std::string& message) {
  if (upgrade_ && upgrade_->on_outcome(h.record.id, command_id, ok, message, h.agent_version, clock_.now())) {
    stage_agent_upgrade();
  }
}

}  // namespace tranche
