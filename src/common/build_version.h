#pragma once
// The version this binary was built as ("0.1.0+<git describe>"), one
// definition for the controller, the CLI and the agent (which says it in
// its hello, so the fleet can show which agents run which build).

#include <string>

namespace tranche {

std::string build_version();

}  // namespace tranche
