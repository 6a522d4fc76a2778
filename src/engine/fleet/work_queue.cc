#include "engine/fleet/work_queue.h"

#include <algorithm>

namespace tranche {

bool WorkQueue::anything_queued_for(const std::string& app) const {
  if (apps_.contains(app)) {
    return true;
  }
  const std::string prefix = app + "/";
  auto it = clusters_.lower_bound(prefix);
  return it != clusters_.end() && it->starts_with(prefix);
}

bool WorkQueue::resync_due(TimePoint now) {
  if (last_resync_ && now - *last_resync_ < resync_interval_) {
    return false;
  }
  last_resync_ = now;
  return true;
}

void WorkQueue::keep_only(const std::set<std::string>& known) {
  std::erase_if(clusters_, [&](const std::string& k) { return !known.contains(k.substr(0, k.find('/'))); });
}

}  // namespace tranche
