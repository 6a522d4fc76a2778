#include "engine/fleet/host_deadlines.h"

namespace tranche {

void HostDeadlines::arrived(const std::string& host, TimePoint at) {
  std::lock_guard lock(mu_);
  Entry& entry = hosts_[host];
  entry.last_heard = std::max(entry.last_heard, at);
  if (!entry.queued) {
    entry.queued = true;
    queue_.emplace(entry.last_heard + timeout_, host);
  }
}

void HostDeadlines::forget(const std::string& host) {
  std::lock_guard lock(mu_);
  hosts_.erase(host);  // its queue entry, if any, finds nothing and is dropped
}

std::vector<HostDeadlines::Silent> HostDeadlines::expired(TimePoint now) {
  std::lock_guard lock(mu_);
  std::vector<Silent> silent;
  while (!queue_.empty() && queue_.top().first < now) {
    Deadline due = queue_.top();
    queue_.pop();
    auto it = hosts_.find(due.second);
    if (it == hosts_.end()) {
      continue;
    }
    Entry& entry = it->second;
    const TimePoint deadline = entry.last_heard + timeout_;
    if (deadline < now) {
      silent.push_back({due.second, entry.last_heard});
      hosts_.erase(it);
    } else {
      queue_.emplace(deadline, std::move(due.second));  // heard from since: its new deadline
    }
  }
  return silent;
}

std::optional<TimePoint> HostDeadlines::last_heard(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host);
  return it == hosts_.end() ? std::nullopt : std::optional(it->second.last_heard);
}

}  // namespace tranche
