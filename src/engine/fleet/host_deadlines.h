#pragma once
// When each host was last heard from, and which ones have been silent too
// long. Arrivals are stamped by the connections' threads as frames come in,
// before the fleet's lock, so a host is never called silent because its
// heartbeat waited behind a reconcile pass. Finding the silent ones costs
// O(expired) per pass, not O(hosts): hosts wait in a min-heap by deadline,
// and one heard from since its deadline was queued goes back in once with
// its new deadline (lazy re-insertion: at most one entry per host).

#include <algorithm>
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
  // A host known from the store when the controller starts: it has no
  // connection yet, and is not silent before kReconnectTimeouts timeouts from
  // `now`. Every agent reconnects to a restarted controller at once and waits
  // its turn among thousands of hellos, with a backoff of up to a few seconds
  // between tries; one timeout from the restart would call those at the back
  // of the line Unreachable and replace their members (seen at 10,000 hosts:
  // 277 of them). Kubernetes' node lifecycle controller likewise gives every
  // node a whole grace period from when it first sees it after its start.
  void await_reconnection(const std::string& host, TimePoint now);
  // No longer watched (until it arrives again).
  void forget(const std::string& host);

  struct Silent {
    std::string host;
    TimePoint last_heard;
  };
  // Hosts not heard from for more than the timeout at `now`. Each is
  // reported once, then no longer watched until it arrives again.
  //
  // Except when most hosts go silent together (at least kMassSilenceHosts,
  // and more than half of those watched): that is far likelier a stall of
  // the controller itself (starved of CPU, its frames unread in the socket
  // buffers) or of its network than that many failures at once, and calling
  // them all Unreachable would replace every member and bring every agent
  // back at once, which is how an overloaded controller never recovers. They
  // are held, watched again for one more timeout, for at most
  // kMassSilenceTimeouts timeouts from the first such check; then whoever is
  // still silent is reported. Kubernetes' node lifecycle controller stops
  // evicting in a fully disrupted zone for the same reason.
  std::vector<Silent> expired(TimePoint now);
  // How many silent hosts the last expired() held back (0: none).
  size_t held() const;
  // Watched again for one more timeout, keeping when they were last heard:
  // silent hosts the caller knows spoke (their frames wait unread).
  void watch_again(const std::vector<Silent>& hosts, TimePoint now);

  static constexpr size_t kMassSilenceHosts = 10;
  static constexpr int kMassSilenceTimeouts = 3;
  static constexpr int kReconnectTimeouts = 3;

  std::optional<TimePoint> last_heard(const std::string& host) const;

 private:
  struct Entry {
    TimePoint last_heard;
    TimePoint grace_until;  // watch_again(), await_reconnection(): not silent before this
    bool queued = false;
  };
  TimePoint deadline(const Entry& entry) const { return std::max(entry.last_heard + timeout_, entry.grace_until); }
  using Deadline = std::pair<TimePoint, std::string>;

  void watch_again_locked(const std::vector<Silent>& hosts, TimePoint now);

  const std::chrono::milliseconds timeout_;
  std::optional<TimePoint> mass_silence_since_;
  size_t held_ = 0;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> hosts_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> queue_;
};

}  // namespace tranche
