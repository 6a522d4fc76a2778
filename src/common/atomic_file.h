#pragma once
// Replacing a file so that a crash at any instant leaves either the old or
// the new content: temp file, fsync, rename, fsync of the directory.

#include <sys/types.h>

#include <filesystem>
#include <string_view>

#include "common/error.h"

namespace tranche {

Status write_file_atomically(const std::filesystem::path& path, std::string_view content, mode_t mode);

}  // namespace tranche
