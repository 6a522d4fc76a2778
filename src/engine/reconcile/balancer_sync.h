#pragma once
// Keeps load balancer backends in line with the members the fleet wants in
// them (updates.md, "load balancer"). The fleet states, each tick, one target
// per member of a balanced cluster: serve (an Active member: add and enable
// its server) or leave (drain it, wait until its sessions reach zero or the
// drain timeout passes, put it in maintenance, delete it). The fleet holds
// back every command that stops a member's process until presence() says
// the member is out of traffic.
//
// Balancer calls block (lb::LoadBalancer), so they run in run_once() on a
// thread of their own, never under the fleet's lock: the fleet only swaps
// targets in and reads presence, both under this object's short mutex.
// Level-triggered: each pass lists every backend and takes the next step
// for each server, so a balancer reload (servers lost) or a controller
// restart (drains half done) is repaired by the next pass.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"
#include "lb/load_balancer.h"

namespace tranche {

struct BalancerTarget {
  std::string backend;
  std::string server;  // lb::server_name_for(member id)
  // Where the member listens; nullopt while unknown (its agent has not
  // connected since the controller started): it can leave, not be added.
  std::optional<lb::ServerAddress> address;
  bool serve = false;                    // false: leave the backend
  std::chrono::seconds drain_timeout{};  // leaving: the longest wait for sessions to end
};

// What the last pass saw of a member's server.
enum class BalancerPresence {
  kUnknown,   // not seen yet, or the balancer did not answer
  kServing,   // enabled, takes new traffic
  kDraining,  // takes no new traffic; sessions still open
  kOut,       // takes no traffic at all: absent, or in maintenance
};

std::string_view to_string(BalancerPresence presence);

// Why the balancer of a backend could not be read or changed.
struct BalancerProblem {
  std::string message;
  TimePoint seen_at;  // when the last pass that met it began on the backend
};

class BalancerSync {
 public:
  BalancerSync(lb::LoadBalancer& balancer, const Clock& clock);

  // Every member that is or may be in a backend, by member id. Servers of
  // member names that no target mentions are stale and leave at once.
  void set_targets(std::map<std::string, BalancerTarget> targets);

  BalancerPresence presence(const std::string& member) const;

  // The problem the last pass met on `backend`; nullopt when everything it
  // was asked succeeded.
  std::optional<BalancerProblem> problem(const std::string& backend) const;

  // One pass over every backend; blocks on the balancer.
  void run_once();

 private:
  struct Pass;
  void sync_backend(const std::string& backend, Pass& pass);
  BalancerPresence serve(const BalancerTarget& target, const lb::ServerInfo* server, Pass& pass);
  BalancerPresence leave(const BalancerTarget& target, const lb::ServerInfo* server, Pass& pass);

  lb::LoadBalancer& balancer_;
  const Clock& clock_;

  mutable std::mutex mu_;
  std::map<std::string, BalancerTarget> targets_;
  std::map<std::string, BalancerPresence> presence_;
  std::map<std::string, BalancerProblem> problems_;  // by backend
  std::set<std::string> backends_;                   // every backend a target ever named

  // Touched by run_once() only.
  std::map<std::string, TimePoint> drain_started_;  // by server name
};

}  // namespace tranche
