#pragma once
// When each host was last heard from, and which ones have been silent too
// long. Arrivals are stamped by the connections' threads as frames come in,
// before the fleet's lock, so a host is never called silent because its
// heartbeat waited behind a reconcile pass. Finding the silent ones costs
// O(expired) per pass, not O(hosts): hosts wait in a min-heap by deadline,
// and one heard from since its deadline was queued goes back in once with
// its new deadline (lazy re-insertion: at most one entry per host).

#include <chrono>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"

namespace tranche {

class HostDeadlines {
 public:
  explicit HostDeadlines(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  // Thread-safe; cheap (one small lock, no allocation for a known host).
  void arrived(const std::string& host, TimePoint at);
  // No longer watched (until it arrives again).
  void forget(const std::string& host);

  struct Silent {
    std::string host;
    TimePoint last_heard;
  };
  // Hosts not heard from for more than the timeout at `now`. Each is
  // reported once, then no longer watched until it arrives again.
  std::vector<Silent> expired(TimePoint now);

  std::optional<TimePoint> last_heard(const std::string& host) const;

 private:
  struct Entry {
    TimePoint last_heard;
    bool queued = false;
  };
  using Deadline = std::pair<TimePoint, std::string>;

  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> hosts_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> queue_;
};

}  // namespace tranche
