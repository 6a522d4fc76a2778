#pragma once
// Resource names and paths (model.md, "Resource paths").

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tranche {

// [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?
bool is_valid_name(std::string_view name);

// Checks a name and says why it is bad, naming `field`.
Status check_name(std::string_view name, std::string_view field);

// "backend/db" -> {"backend", "db"}; "" -> {}.
std::vector<std::string> split_path(std::string_view path);

}  // namespace tranche
