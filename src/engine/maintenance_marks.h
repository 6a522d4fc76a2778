#pragma once
// A member's effective maintenance mark, as GET /members shows it. For
// maintenance it is the member's own marker, not what it inherits: a
// maintenance acts on the members that exist when it is accepted, each of
// which gets a marker (model.md), so a member created meanwhile under a node
// set to `replace` is not in maintenance and shows "off". The values are read
// once per application per lookup object and indexed by path: a listing of
// N members costs one store read per application.

#include <map>
#include <string>
#include <unordered_map>

#include "store/store.h"

namespace tranche {

class MaintenanceMarks {
 public:
  explicit MaintenanceMarks(Store& store) : store_(store) {}

  // "off", "restart" or "replace".
  std::string of(const MemberRecord& member);

 private:
  Store& store_;
  std::map<std::string, std::unordered_map<std::string, std::string>> by_app_;  // app -> path -> value
};

}  // namespace tranche
