// Host lifecycle (model.md): Ready, Draining, Unreachable; silent hosts are
// found through their heartbeat deadlines at O(expired) per tick.

#include "engine/fleet/fleet.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/events.h"

namespace tranche {

namespace {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

}  // namespace

void Fleet::set_host_state(HostEntry& h, const std::string& to, const std::string& reason) {
  if (h.record.state == to) {
    return;
  }
  const TimePoint now = clock_.now();
  HostRecord next = h.record;
  next.state = to;
  next.updated_at = now;
  WriteBatch batch;
  batch.mutations.push_back(PutHost{next});
  batch.mutations.push_back(
      AppendEvent{make_event(now, "", "host/" + h.record.id, "", "HostStateChanged", h.record.state, to, reason)});
  stage(std::move(batch));
  spdlog::info("host {} {} -> {}: {}", h.record.id, h.record.state, to, reason);
  if (h.record.state == kHostRefused) {
    refused_hosts_.erase(h.record.id);
  }
  h.record = std::move(next);
}

void Fleet::check_heartbeats() {
  const TimePoint now = clock_.now();
  std::vector<std::string> unreachable;
  const auto expired = deadlines_.expired(now);
  if (const size_t held = deadlines_.held(); held > 0) {
    report_failure_once("heartbeats", fmt::format("{} hosts went silent together; they stay Ready for up to {} "
                                                  "heartbeat timeouts (host_deadlines.h: a controller starved of "
                                                  "CPU or cut off looks like this)",
                                                  held, HostDeadlines::kMassSilenceTimeouts));
  } else {
    reported_failures_.erase("heartbeats");
  }
  std::vector<HostDeadlines::Silent> unread;
  for (const auto& silent : expired) {
    auto it = hosts_.find(silent.host);
    if (it == hosts_.end()) {
      continue;
    }
    HostEntry& h = it->second;
    if (h.record.state != kHostReady && h.record.state != kHostDraining) {
      continue;
    }
    // Its frames wait unread: the agent spoke, and this controller is
    // behind (starved of CPU); given up on only after a few timeouts, in
    // case nothing here will ever read them.
    if (h.link && h.link->has_unread_input() &&
        now - silent.last_heard < options_.heartbeat_timeout * HostDeadlines::kMassSilenceTimeouts) {
      unread.push_back(silent);
      continue;
    }
    const auto quiet = duration_cast<milliseconds>(now - silent.last_heard);
    set_host_state(h, kHostUnreachable, "no heartbeat for " + format_duration(quiet));
    if (h.link) {
      h.link->close("heartbeat timeout");
      h.link.reset();
    }
    unreachable.push_back(silent.host);
  }
  if (!unread.empty()) {
    deadlines_.watch_again(unread, now);
    report_failure_once("heartbeats-unread", "hosts past their heartbeat deadline have frames waiting unread: "
                                             "the controller is behind, they stay Ready meanwhile");
  } else {
    reported_failures_.erase("heartbeats-unread");
  }
  if (unreachable.empty()) {
    return;
  }
  for (const std::string& host : unreachable) {
    auto on_host = by_host_.find(host);
    for (auto& [id, m] : on_host == by_host_.end() ? MemberIndex{} : on_host->second) {
      if (can_transition(m->state, MemberState::kUnreachable)) {
        m->active_when_lost = m->state == MemberState::kActive;
        (void)set_state(*m, MemberState::kUnreachable, "host " + host + " is unreachable");
      }
    }
  }
}

Result<json> Fleet::set_host_draining(const std::string& host_id, bool draining, const Caller& caller) {
  std::lock_guard committing(commit_mu_);
  std::unique_lock lock(mu_);
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    return fail(ErrorCode::kNotFound, "host '" + host_id + "' not found");
  }
  HostEntry& h = it->second;
  const std::string from = h.record.state;
  if (draining && from == kHostReady) {
    set_host_state(h, kHostDraining, "cordoned by " + caller.actor);
  } else if (!draining && from == kHostDraining) {
    set_host_state(h, kHostReady, "uncordoned by " + caller.actor);
  } else if (from != (draining ? kHostDraining : kHostReady)) {
    return fail(ErrorCode::kConflict, "host " + host_id + " is " + from);
  }
  WriteBatch audit;
  audit.mutations.push_back(
      AppendAudit{{0, clock_.now(), caller.actor, caller.action, "host " + host_id, from + " -> " + h.record.state}});
  stage(std::move(audit));
  // Acknowledged only once durable.
  if (auto done = commit_staged(lock, false); !done) {
    return std::unexpected(done.error());
  }
  return json{{"id", host_id}, {"state", h.record.state}, {"message", "host " + host_id + " is " + h.record.state}};
}

}  // namespace tranche
