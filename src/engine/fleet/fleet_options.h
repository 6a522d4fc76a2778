#pragma once
// What a Fleet is built with (fleet.h): the heartbeat timing the agents are
// told and judged by, the join secret, and the sizes of its write groups.

#include <chrono>
#include <cstddef>
#include <string>

#include "common/build_version.h"

namespace tranche {

struct FleetOptions {
  std::chrono::milliseconds heartbeat_interval{2000};
  std::chrono::milliseconds heartbeat_timeout{6000};
  std::chrono::milliseconds stop_grace{10000};
  std::string join_token;  // the secret agents join with
  // With a load balancer: hold every command that stops a member's process
  // until its server is drained. Off only for the control experiment
  // (`--no-lb-drain`): servers are still added and removed, without waiting.
  bool drain_before_stop = true;
  // Every application is reconciled at least this often, changed or not.
  std::chrono::milliseconds resync_interval{10000};
  // This controller's build, which agents' builds are judged against
  // (protocol/versions.h, check_skew).
  std::string controller_version = build_version();
  // A pass's changes are written in groups of about this many mutations
  // (closed between clusters), each group's commands sent once it is
  // durable, while the next one is written.
  size_t mutations_per_group = 20000;
  // A rollout's batch is written ahead in groups of this many updates (a
  // row and an event each), so that its first commands go out while the
  // rest are written: a 10,000-member batch as one group took 0.1-0.3 s
  // before any agent heard of it.
  size_t updates_per_group = 2000;
};

}  // namespace tranche
