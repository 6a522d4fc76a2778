#include "engine/agent_upgrade.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "engine/artifacts.h"
#include "engine/events.h"

namespace tranche {

namespace {

using nlohmann::json;

constexpr std::pair<AgentUpgradeState, std::string_view> kStates[] = {
    {AgentUpgradeState::kRunning, "Running"},
    {AgentUpgradeState::kPaused, "Paused"},
    {AgentUpgradeState::kAborted, "Aborted"},
    {AgentUpgradeState::kCompleted, "Completed"},
};
constexpr std::pair<HostUpgradeStatus, std::string_view> kStatuses[] = {
    {HostUpgradeStatus::kPending, "pending"}, {HostUpgradeStatus::kUpgrading, "upgrading"},
    {HostUpgradeStatus::kDone, "done"},       {HostUpgradeStatus::kFailed, "failed"},
    {HostUpgradeStatus::kSkipped, "skipped"},
};

std::optional<HostUpgradeStatus> status_from_string(std::string_view name) {
  for (const auto& [status, text] : kStatuses) {
    if (text == name) {
      return status;
    }
  }
  return std::nullopt;
}

json opt_time(const std::optional<TimePoint>& t) { return t ? json(to_unix_millis(*t)) : json(nullptr); }
std::optional<TimePoint> read_time(const json& j) {
  return j.is_number_integer() ? std::optional(from_unix_millis(j.get<int64_t>())) : std::nullopt;
}

}  // namespace

bool runs_version(const std::string& reported, const std::string& wanted) {
  return reported == wanted ||
         (wanted.find('+') == std::string::npos && reported.size() > wanted.size() && reported.starts_with(wanted) &&
          reported[wanted.size()] == '+');
}

std::string_view to_string(AgentUpgradeState state) {
  for (const auto& [s, text] : kStates) {
    if (s == state) {
      return text;
    }
  }
  return "Unknown";
}

std::optional<AgentUpgradeState> agent_upgrade_state_from_string(std::string_view name) {
  for (const auto& [s, text] : kStates) {
    if (text == name) {
      return s;
    }
  }
  return std::nullopt;
}

std::string_view to_string(HostUpgradeStatus status) {
  for (const auto& [s, text] : kStatuses) {
    if (s == status) {
      return text;
    }
  }
  return "unknown";
}

std::string progress_to_json(const AgentUpgradeProgress& progress) {
  json hosts = json::object();
  for (const auto& [id, h] : progress.hosts) {
    hosts[id] = json{{"status", to_string(h.status)},     {"from", h.from},
                     {"message", h.message},              {"attempt", h.attempt},
                     {"startedAt", opt_time(h.started_at)}, {"finishedAt", opt_time(h.finished_at)}};
  }
  return json{{"order", progress.order}, {"hosts", hosts}}.dump();
}

Result<AgentUpgradeProgress> agent_upgrade_progress_from_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    AgentUpgradeProgress progress;
    progress.order = j.at("order").get<std::vector<std::string>>();
    for (const auto& [id, h] : j.at("hosts").items()) {
      auto status = status_from_string(h.at("status").get<std::string>());
      if (!status) {
        return fail(ErrorCode::kInternal, "agent upgrade progress: host " + id + " has an unknown status");
      }
      progress.hosts[id] = HostUpgrade{*status,
                                       h.at("from").get<std::string>(),
                                       h.at("message").get<std::string>(),
                                       h.at("attempt").get<int64_t>(),
                                       read_time(h.at("startedAt")),
                                       read_time(h.at("finishedAt"))};
    }
    for (const auto& id : progress.order) {
      if (!progress.hosts.contains(id)) {
        return fail(ErrorCode::kInternal, "agent upgrade progress: host " + id + " has no entry");
      }
    }
    return progress;
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInternal, std::string("agent upgrade progress does not parse: ") + e.what());
  }
}

Result<std::map<std::string, std::string>> parse_host_selector(const std::string& selector, const std::string& field) {
  std::map<std::string, std::string> labels;
  if (selector.empty()) {
    return labels;
  }
  size_t start = 0;
  while (start <= selector.size()) {
    const size_t comma = std::min(selector.find(',', start), selector.size());
    const std::string pair = selector.substr(start, comma - start);
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
      return fail(ErrorCode::kInvalid, "a host selector is key=value[,key=value...]; got '" + selector + "'", field);
    }
    labels[pair.substr(0, eq)] = pair.substr(eq + 1);
    start = comma + 1;
  }
  return labels;
}

AgentUpgradePlan AgentUpgradePlan::start(AgentUpgradeRecord record, const std::vector<std::string>& hosts,
                                         TimePoint now) {
  AgentUpgradeProgress progress;
  progress.order = hosts;
  std::sort(progress.order.begin(), progress.order.end());
  for (const auto& id : progress.order) {
    progress.hosts[id] = HostUpgrade{};
  }
  record.state = std::string(to_string(AgentUpgradeState::kRunning));
  AgentUpgradePlan plan(std::move(record), AgentUpgradeState::kRunning, std::move(progress));
  plan.dirty_ = true;
  plan.event(now, "", "AgentUpgradeStarted",
             fmt::format("agent upgrade {} to {} started by {}: {} host(s), {} at a time{}", plan.record_.id,
                         plan.record_.agent_version, plan.record_.author, plan.progress_.order.size(),
                         plan.record_.max_unavailable,
                         plan.record_.selector.empty() ? "" : " (hosts " + plan.record_.selector + ")"));
  return plan;
}

Result<AgentUpgradePlan> AgentUpgradePlan::load(const AgentUpgradeRecord& record) {
  auto state = agent_upgrade_state_from_string(record.state);
  if (!state) {
    return fail(ErrorCode::kInternal, "agent upgrade " + std::to_string(record.id) + " has unknown state " + record.state);
  }
  auto progress = agent_upgrade_progress_from_json(record.progress_json);
  if (!progress) {
    return std::unexpected(progress.error());
  }
  return AgentUpgradePlan(record, *state, std::move(*progress));
}

std::string AgentUpgradePlan::command_id(const std::string& host) const {
  auto it = progress_.hosts.find(host);
  return fmt::format("upgradeAgent:{}:{}:{}", record_.id, host, it == progress_.hosts.end() ? 0 : it->second.attempt);
}

std::vector<std::string> AgentUpgradePlan::upgrading() const {
  std::vector<std::string> out;
  for (const auto& id : progress_.order) {
    if (progress_.hosts.at(id).status == HostUpgradeStatus::kUpgrading) {
      out.push_back(id);
    }
  }
  return out;
}

std::pair<int64_t, int64_t> AgentUpgradePlan::batch() const {
  const auto size = static_cast<size_t>(std::max<int64_t>(1, record_.max_unavailable));
  const auto batches = static_cast<int64_t>((progress_.order.size() + size - 1) / size);
  for (size_t i = 0; i < progress_.order.size(); ++i) {
    const HostUpgradeStatus s = progress_.hosts.at(progress_.order[i]).status;
    if (s != HostUpgradeStatus::kDone && s != HostUpgradeStatus::kSkipped) {
      return {static_cast<int64_t>(i / size) + 1, batches};
    }
  }
  return {batches, batches};
}

void AgentUpgradePlan::event(TimePoint now, const std::string& host, const std::string& type,
                             const std::string& message) {
  events_.push_back(make_event(now, "", host.empty() ? "agents" : "host/" + host, "", type, nullptr,
                               json{{"upgrade", record_.id}, {"version", record_.agent_version}}, message));
  dirty_ = true;
}

void AgentUpgradePlan::set_state(AgentUpgradeState to, const std::string& reason, const std::string& type,
                                 TimePoint now) {
  state_ = to;
  record_.state = std::string(to_string(to));
  record_.reason = reason;
  if (to == AgentUpgradeState::kAborted || to == AgentUpgradeState::kCompleted) {
    record_.finished_at = now;
  }
  event(now, "", type, fmt::format("agent upgrade {} to {}: {}", record_.id, record_.agent_version, reason));
}

void AgentUpgradePlan::finish_host(const std::string& host, HostUpgradeStatus status, const std::string& message,
                                   TimePoint now) {
  HostUpgrade& h = progress_.hosts.at(host);
  h.status = status;
  h.message = message;
  h.finished_at = now;
  const char* type = status == HostUpgradeStatus::kDone      ? "HostAgentUpgraded"
                     : status == HostUpgradeStatus::kSkipped ? "HostAgentUpgradeSkipped"
                                                             : "HostAgentUpgradeFailed";
  event(now, host, type, "host " + host + ": " + message);
}

std::vector<std::string> AgentUpgradePlan::step(const std::map<std::string, UpgradeHostView>& hosts, TimePoint now) {
  const std::string& v = record_.agent_version;
  for (const auto& id : upgrading()) {
    HostUpgrade& h = progress_.hosts.at(id);
    if (h.started_at && now >= *h.started_at + host_deadline()) {
      const std::string why = fmt::format("its agent did not come back on {} within {}", v,
                                          format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::seconds(host_deadline()))));
      finish_host(id, HostUpgradeStatus::kFailed, why, now);
      if (state_ == AgentUpgradeState::kRunning) {
        pause("host " + id + ": " + why, now);
      }
    }
  }
  std::vector<std::string> started;
  const auto size = static_cast<size_t>(std::max<int64_t>(1, record_.max_unavailable));
  const auto settled = [&](const std::string& id) {
    const HostUpgradeStatus s = progress_.hosts.at(id).status;
    return s == HostUpgradeStatus::kDone || s == HostUpgradeStatus::kSkipped;
  };
  // Hosts done or skipped at once let the next batch start in the same
  // pass: a fleet already on the version completes in one.
  while (state_ == AgentUpgradeState::kRunning) {
    const auto [k, n] = batch();
    const size_t first = static_cast<size_t>(k - 1) * size;
    const size_t last = std::min(first + size, progress_.order.size());
    for (size_t i = first; i < last; ++i) {
      const std::string& id = progress_.order[i];
      if (progress_.hosts.at(id).status == HostUpgradeStatus::kPending && start_host(id, hosts, k, n, now)) {
        started.push_back(id);
      }
    }
    if (!std::all_of(progress_.order.begin() + static_cast<std::ptrdiff_t>(first),
                     progress_.order.begin() + static_cast<std::ptrdiff_t>(last), settled)) {
      break;
    }
    if (std::all_of(progress_.order.begin(), progress_.order.end(), settled)) {
      set_state(AgentUpgradeState::kCompleted, summary(), "AgentUpgradeCompleted", now);
    }
  }
  return started;
}

bool AgentUpgradePlan::start_host(const std::string& id, const std::map<std::string, UpgradeHostView>& hosts,
                                  int64_t batch, int64_t batches, TimePoint now) {
  const std::string& v = record_.agent_version;
  HostUpgrade& h = progress_.hosts.at(id);
  auto view = hosts.find(id);
  if (view == hosts.end()) {
    finish_host(id, HostUpgradeStatus::kSkipped, "skipped: the host is gone", now);
  } else if (view->second.connected && runs_version(view->second.agent_version, v)) {
    h.from = view->second.agent_version;
    finish_host(id, HostUpgradeStatus::kDone, "already on " + v, now);
  } else if (!view->second.connected) {
    finish_host(id, HostUpgradeStatus::kSkipped,
                "skipped: its agent is not connected (host " + view->second.state +
                    "); run the upgrade again once it is back",
                now);
  } else if (view->second.protocol < kAgentUpgradeProtocol) {
    finish_host(id, HostUpgradeStatus::kSkipped,
                fmt::format("skipped: its agent ({}) speaks protocol {}, which cannot upgrade itself; "
                            "install {} on it by hand",
                            view->second.agent_version.empty() ? "version unknown" : view->second.agent_version,
                            view->second.protocol, v),
                now);
  } else {
    h.status = HostUpgradeStatus::kUpgrading;
    h.from = view->second.agent_version;
    h.message = "upgrading from " + (h.from.empty() ? std::string("an unknown version") : h.from);
    h.attempt += 1;
    h.started_at = now;
    h.finished_at.reset();
    event(now, id, "HostAgentUpgrading",
          fmt::format("host {}: upgrading its agent from {} to {} (batch {} of {})", id, h.from.empty() ? "?" : h.from,
                      v, batch, batches));
    return true;
  }
  return false;
}

bool AgentUpgradePlan::on_outcome(const std::string& host, const std::string& command_id, bool ok,
                                  const std::string& message, const std::string& agent_version, TimePoint now) {
  auto it = progress_.hosts.find(host);
  if (it == progress_.hosts.end() || it->second.status != HostUpgradeStatus::kUpgrading ||
      command_id != this->command_id(host)) {
    return false;
  }
  const std::string& v = record_.agent_version;
  std::string failure;
  if (!ok) {
    failure = message.empty() ? "the agent could not upgrade" : message;
  } else if (!runs_version(agent_version, v)) {
    failure = "its agent answered ok but runs " + (agent_version.empty() ? std::string("an unknown version") : agent_version) +
              ", not " + v;
  }
  if (failure.empty()) {
    finish_host(host, HostUpgradeStatus::kDone,
                "upgraded from " + (it->second.from.empty() ? std::string("?") : it->second.from) + " to " + v +
                    (message.empty() ? "" : ": " + message),
                now);
    return true;
  }
  finish_host(host, HostUpgradeStatus::kFailed, failure, now);
  if (state_ == AgentUpgradeState::kRunning) {
    pause("host " + host + ": " + failure + "; the other hosts are untouched", now);
  }
  return true;
}

void AgentUpgradePlan::pause(const std::string& reason, TimePoint now) {
  if (state_ == AgentUpgradeState::kRunning) {
    set_state(AgentUpgradeState::kPaused, reason, "AgentUpgradePaused", now);
  }
}

Status AgentUpgradePlan::pause_by(const std::string& actor, TimePoint now) {
  if (state_ != AgentUpgradeState::kRunning) {
    return fail(ErrorCode::kConflict,
                "agent upgrade " + std::to_string(record_.id) + " is " + record_.state + "; only a Running one pauses");
  }
  pause("paused by " + actor, now);
  return {};
}

Status AgentUpgradePlan::resume_by(const std::string& actor, TimePoint now) {
  if (state_ != AgentUpgradeState::kPaused) {
    return fail(ErrorCode::kConflict,
                "agent upgrade " + std::to_string(record_.id) + " is " + record_.state + "; only a Paused one resumes");
  }
  int retried = 0;
  for (const auto& id : progress_.order) {
    HostUpgrade& h = progress_.hosts.at(id);
    if (h.status == HostUpgradeStatus::kFailed) {
      h.status = HostUpgradeStatus::kPending;
      h.message = "to be retried: " + h.message;
      ++retried;
    }
  }
  set_state(AgentUpgradeState::kRunning,
            "resumed by " + actor + (retried > 0 ? fmt::format(" ({} failed host(s) to be retried)", retried) : ""),
            "AgentUpgradeResumed", now);
  return {};
}

Status AgentUpgradePlan::abort_by(const std::string& actor, TimePoint now) {
  if (state_ != AgentUpgradeState::kRunning && state_ != AgentUpgradeState::kPaused) {
    return fail(ErrorCode::kConflict, "agent upgrade " + std::to_string(record_.id) + " is already " + record_.state);
  }
  const auto in_flight = upgrading().size();
  set_state(AgentUpgradeState::kAborted,
            "aborted by " + actor + "; " + summary() +
                (in_flight > 0 ? fmt::format("; {} host(s) still upgrading finish on their own", in_flight) : ""),
            "AgentUpgradeAborted", now);
  return {};
}

std::string AgentUpgradePlan::summary() const {
  int upgraded = 0;
  int already = 0;
  int skipped = 0;
  int failed = 0;
  int pending = 0;
  for (const auto& [id, h] : progress_.hosts) {
    if (h.status == HostUpgradeStatus::kDone) {
      (runs_version(h.from, record_.agent_version) ? already : upgraded) += 1;
    } else if (h.status == HostUpgradeStatus::kSkipped) {
      ++skipped;
    } else if (h.status == HostUpgradeStatus::kFailed) {
      ++failed;
    } else if (h.status == HostUpgradeStatus::kPending) {
      ++pending;
    }
  }
  std::string out = fmt::format("{} of {} host(s) upgraded", upgraded, progress_.order.size());
  if (already > 0) out += fmt::format(", {} already on {}", already, record_.agent_version);
  if (skipped > 0) out += fmt::format(", {} skipped", skipped);
  if (failed > 0) out += fmt::format(", {} failed", failed);
  if (pending > 0) out += fmt::format(", {} not started", pending);
  return out;
}

std::pair<AgentUpgradeRecord, std::vector<EventRecord>> AgentUpgradePlan::take_changes(TimePoint now) {
  AgentUpgradeRecord out = record_;
  out.progress_json = progress_to_json(progress_);
  out.updated_at = now;
  record_ = out;
  record_.version += 1;  // what the store keeps once `out` is written
  dirty_ = false;
  return {std::move(out), std::exchange(events_, {})};
}

nlohmann::json AgentUpgradePlan::to_json() const {
  json hosts = json::array();
  std::map<std::string, int> counts;
  for (const auto& id : progress_.order) {
    const HostUpgrade& h = progress_.hosts.at(id);
    counts[std::string(to_string(h.status))] += 1;
    hosts.push_back(json{{"host", id},
                         {"status", to_string(h.status)},
                         {"from", h.from},
                         {"message", h.message},
                         {"attempt", h.attempt},
                         {"startedAt", h.started_at ? json(format_rfc3339(*h.started_at)) : json(nullptr)},
                         {"finishedAt", h.finished_at ? json(format_rfc3339(*h.finished_at)) : json(nullptr)}});
  }
  json count_json = json::object();
  for (const auto& [status, text] : kStatuses) {
    count_json[std::string(text)] = counts[std::string(text)];
  }
  const auto [k, n] = batch();
  return json{{"id", record_.id},
              {"version", record_.agent_version},
              {"artifact", {{"sha256", record_.artifact_sha256},
                            {"size", record_.artifact_size},
                            {"path", artifact_download_path(record_.artifact_sha256)}}},
              {"maxUnavailable", record_.max_unavailable},
              {"hosts", record_.selector},
              {"fallbackSeconds", record_.fallback_seconds},
              {"state", record_.state},
              {"reason", record_.reason},
              {"batch", k},
              {"batches", n},
              {"counts", count_json},
              {"progress", hosts},
              {"author", record_.author},
              {"createdAt", format_rfc3339(record_.created_at)},
              {"updatedAt", format_rfc3339(record_.updated_at)},
              {"finishedAt", record_.finished_at ? json(format_rfc3339(*record_.finished_at)) : json(nullptr)}};
}

}  // namespace tranche
