#pragma once
// What the next reconcile pass has to look at (the controller-runtime
// pattern): applications and their clusters, each queued at most once
// however often it is marked, until a pass finds it settled; and the clock
// of the periodic resync that queues every application as a safety net for
// a change the fleet did not notice. Used under the fleet's lock.

#include <chrono>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"

namespace tranche {

class WorkQueue {
 public:
  explicit WorkQueue(std::chrono::milliseconds resync_interval) : resync_interval_(resync_interval) {}

  void add_application(const std::string& app) { apps_.insert(app); }
  void add_cluster(const std::string& app, const std::string& cluster) { clusters_.insert(key(app, cluster)); }
  void done_application(const std::string& app) { apps_.erase(app); }
  void done_cluster(const std::string& app, const std::string& cluster) { clusters_.erase(key(app, cluster)); }

  bool application_queued(const std::string& app) const { return apps_.contains(app); }
  bool cluster_queued(const std::string& app, const std::string& cluster) const {
    return clusters_.contains(key(app, cluster));
  }
  // The application, or any of its clusters.
  bool anything_queued_for(const std::string& app) const;

  // True once per interval (and on the first call): the caller then queues
  // every application.
  bool resync_due(TimePoint now);

  // Drops the clusters of applications not in `known` (deleted ones).
  void keep_only(const std::set<std::string>& known);

  size_t size() const { return apps_.size() + clusters_.size(); }

 private:
  static std::string key(const std::string& app, const std::string& cluster) { return app + "/" + cluster; }

  const std::chrono::milliseconds resync_interval_;
  std::set<std::string> apps_;
  std::set<std::string> clusters_;  // "app/cluster", sorted so an application's clusters are adjacent
  std::optional<TimePoint> last_resync_;
};

}  // namespace tranche
