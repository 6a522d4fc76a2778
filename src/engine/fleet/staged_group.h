#pragma once
// Part of the fleet (fleet.h): the group commit's units. Changes are staged
// into a group; a group is sealed at a safe point and written as one store
// group (one fsync), in order, possibly ahead on a thread of its own.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <set>
#include <string>
#include <vector>

#include "store/store.h"

namespace tranche::fleet {

struct StagedGroup {
  std::vector<WriteBatch> batches;
  std::vector<std::function<void()>> after_commit;
  size_t mutations = 0;
  bool last_never_conflicts = false;       // the last batch may take the next one in (Fleet::stage())
  std::set<std::string> apps_with_values;  // whose operational values it writes (stale once it is answered)
  bool empty() const { return batches.empty() && after_commit.empty(); }
};

// The store's answer to a group: one result per batch.
using GroupResults = std::vector<Result<CommitResult>>;

struct SealedGroup {
  StagedGroup group;
  uint64_t generation = 0;
  // The store's answer when the group is written ahead (its batches were
  // handed over); the fleet's commit_staged() takes it, in order, as if it
  // wrote it.
  std::shared_future<GroupResults> written;
};

}  // namespace tranche::fleet
