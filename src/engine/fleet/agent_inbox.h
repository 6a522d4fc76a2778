#pragma once
// Agents' messages between their connections and the fleet. A connection's
// thread only appends here (one small lock, never the fleet's): it goes back
// to its socket at once, to read the next frame and to write the commands
// queued for its agent, however long a reconcile pass holds the fleet. The
// fleet takes everything at once, in arrival order, and handles it as one
// batch under its own lock (the committer's flush, the pass, a hello).
// Arrival is stamped before a message waits here (host_deadlines.h), so a
// message that waits is never taken for silence.

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "protocol/messages.h"

namespace tranche {

class AgentInbox {
 public:
  struct Entry {
    std::string host;
    TimePoint arrived;
    protocol::AgentMessage message;
  };

  // Any thread.
  void push(Entry entry) {
    std::lock_guard lock(mu_);
    entries_.push_back(std::move(entry));
  }

  // Everything queued, oldest first; the inbox is empty afterwards. The
  // caller's vector is reused as the next buffer, so that a steady stream
  // of messages allocates nothing.
  std::vector<Entry> take(std::vector<Entry>&& spare = {}) {
    spare.clear();
    std::lock_guard lock(mu_);
    std::swap(spare, entries_);
    return std::move(spare);
  }

  bool empty() const {
    std::lock_guard lock(mu_);
    return entries_.empty();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

}  // namespace tranche
