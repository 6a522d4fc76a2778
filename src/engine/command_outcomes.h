#pragma once
// What happened to a command, in its operation record (GET /operations/{id})
// and an event (model.md "Ordering"). A maintenance restart or replace is
// Running from its acceptance until the fleet has taken every member
// through it (Succeeded; one given on a single member: until that member
// resumed or left the cluster), its time box ends or a later maintenance command on its node or above
// supersedes it (Superseded, naming that command's operation and what
// reconcile/interactions.h says happens), or a delete cancels it
// (Cancelled). An apply that starts a rollout is Running until the rollout
// ends, and ends as it does: Succeeded, Failed, Cancelled (aborted, or the
// application deleted) or Superseded by a newer apply. Other commands are
// Succeeded once accepted.

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "store/store.h"

namespace tranche {

// For a maintenance `value` ("restart", "replace", "off") given on `path` as
// operation `by`: the Running maintenance operations at or below `path` are
// Superseded. Returns what `by`'s own record says of them ("" for none).
std::string supersede_maintenance(Store& store, const std::string& app, const std::string& path,
                                  const std::string& value, const OperationRecord& by, TimePoint now,
                                  WriteBatch& batch);

// Every Running operation of `app` is Cancelled by `by`, because of `why`.
void cancel_maintenance_operations(Store& store, const std::string& app, const OperationRecord& by,
                                   const std::string& why, TimePoint now, WriteBatch& batch);

// The Running operations that set the node's maintenance `value` end with
// `status` and `message`.
void finish_maintenance_operations(Store& store, const std::string& app, const OperationalValueRecord& value,
                                   const std::string& status, const std::string& message, TimePoint now,
                                   WriteBatch& batch);

// The Running apply operations of `app` (the one whose rollout ends) end
// with `status` and `message`; with `by`, the operation that ended them,
// each also gets a CommandSuperseded event naming it. Returns what `by`'s
// own record says of them ("" for none).
std::string end_apply_operations(Store& store, const std::string& app, const std::string& status,
                                 const std::string& message, const OperationRecord* by, TimePoint now,
                                 std::vector<Mutation>& out);

// How a maintenance command given on one member ended.
struct MemberMaintenanceOutcome {
  std::string status;  // Succeeded | Cancelled
  std::string message;
};
// The Running maintenance operations given on a member (a path that is no
// node of the application, `nodes`) whose marker is no longer among
// `values` end as `outcome` says of (member path, value), each with an
// OperationalStateChanged event. Returns how many maintenance operations of
// `app` are still Running.
size_t finish_member_maintenance_operations(
    Store& store, const std::string& app, const std::vector<OperationalValueRecord>& values,
    const std::set<std::string>& nodes,
    const std::function<MemberMaintenanceOutcome(const std::string& path, const std::string& value)>& outcome,
    TimePoint now, WriteBatch& batch);

}  // namespace tranche
