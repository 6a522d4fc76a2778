#pragma once
// Staging a downloaded build of the agent in its state dir:
// versions/<version>/tranche, 0755, written only once its size and sha256
// are the ones the upgradeAgent command announced.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tranche::agent {

// Whether `version` can name a directory: letters, digits and ". _ + -",
// not "." or "..". The error names the field "spec.version".
Status check_version_name(const std::string& version);

// Checks the bytes against `size` and `sha256`, then writes them to
// state_dir/versions/<version>/tranche (temp file, fsync, rename, fsync of
// the directory) and returns that path. A mismatch writes nothing; its
// error names both digests (or sizes).
Result<std::filesystem::path> stage_agent_binary(const std::filesystem::path& state_dir, const std::string& version,
                                                 std::string_view bytes, const std::string& sha256, int64_t size);

}  // namespace tranche::agent
