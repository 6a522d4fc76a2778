#pragma once
// Edits of a normalized manifest (the JSON of a revision, model's to_json)
// made by client commands before they apply it again.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tranche::cli {

// `manifest` with artifact.version of the cluster at `cluster_path` ("web",
// "backend/db": clusters sit in `clusters` at the top or under `groups`, at
// any depth) set to `version`. kNotFound naming APP/PATH when there is no such
// cluster; kInvalid when the path names a group.
Result<nlohmann::json> with_cluster_version(nlohmann::json manifest, std::string_view cluster_path,
                                            const std::string& version);

// `manifest` with members.desired of the cluster at `cluster_path` set to
// `desired`; kInvalid naming the cluster's min and max when `desired` is
// outside them (the manifest's bounds change only through an apply), else as
// with_cluster_version.
Result<nlohmann::json> with_cluster_desired(nlohmann::json manifest, std::string_view cluster_path, int64_t desired);

}  // namespace tranche::cli
