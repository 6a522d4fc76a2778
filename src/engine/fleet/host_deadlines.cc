#include "engine/fleet/host_deadlines.h"

namespace tranche {

void HostDeadlines::arrived(const std::string& host, TimePoint at) {
  std::lock_guard lock(mu_);
  Entry& entry = hosts_[host];
  entry.last_heard = std::max(entry.last_heard, at);
  if (!entry.queued) {
    entry.queued = true;
    queue_.emplace(deadline(entry), host);
  }
}

void HostDeadlines::await_reconnection(const std::string& host, TimePoint now) {
  std::lock_guard lock(mu_);
  Entry& entry = hosts_[host];
  entry.last_heard = std::max(entry.last_heard, now);
  entry.grace_until = now + timeout_ * kReconnectTimeouts;
  if (!entry.queued) {
    entry.queued = true;
    queue_.emplace(deadline(entry), host);
  }
}

void HostDeadlines::watch_again(const std::vector<Silent>& hosts, TimePoint now) {
  std::lock_guard lock(mu_);
  watch_again_locked(hosts, now);
}

void HostDeadlines::watch_again_locked(const std::vector<Silent>& hosts, TimePoint now) {
  for (const Silent& silent : hosts) {
    Entry& entry = hosts_[silent.host];
    entry.last_heard = std::max(entry.last_heard, silent.last_heard);
    entry.grace_until = now + timeout_;
    if (!entry.queued) {
      entry.queued = true;
      queue_.emplace(deadline(entry), silent.host);
    }
  }
}

void HostDeadlines::forget(const std::string& host) {
  std::lock_guard lock(mu_);
  hosts_.erase(host);  // its queue entry, if any, finds nothing and is dropped
}

std::vector<HostDeadlines::Silent> HostDeadlines::expired(TimePoint now) {
  std::lock_guard lock(mu_);
  const size_t watched = hosts_.size();
  std::vector<Silent> silent;
  while (!queue_.empty() && queue_.top().first < now) {
    Deadline due = queue_.top();
    queue_.pop();
    auto it = hosts_.find(due.second);
    if (it == hosts_.end()) {
      continue;
    }
    Entry& entry = it->second;
    const TimePoint due_at = deadline(entry);
    if (due_at < now) {
      silent.push_back({due.second, entry.last_heard});
      hosts_.erase(it);
    } else {
      queue_.emplace(due_at, std::move(due.second));  // heard from since: its new deadline
    }
  }
  held_ = 0;
  const bool mass = silent.size() >= kMassSilenceHosts && silent.size() * 2 > watched;
  if (!mass) {
    mass_silence_since_.reset();
    return silent;
  }
  if (!mass_silence_since_) {
    mass_silence_since_ = now;
  }
  if (now - *mass_silence_since_ >= timeout_ * kMassSilenceTimeouts) {
    return silent;  // not a stall after all: they are gone
  }
  held_ = silent.size();
  watch_again_locked(silent, now);
  return {};
}

size_t HostDeadlines::held() const {
  std::lock_guard lock(mu_);
  return held_;
}

std::optional<TimePoint> HostDeadlines::last_heard(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host);
  return it == hosts_.end() ? std::nullopt : std::optional(it->second.last_heard);
}

}  // namespace tranche
