#pragma once
// Internal to src/model, not part of manifest.h: the parts of the normalized
// document (manifest_normalized.cc) that diff_summary compares node by node.

#include <nlohmann/json.hpp>

#include "model/manifest.h"

namespace tranche::manifest_detail {

nlohmann::json cluster_json(const ClusterSpec& c);
nlohmann::json group_fields_json(const GroupSpec& g);
nlohmann::json application_fields_json(const ApplicationSpec& spec);

}  // namespace tranche::manifest_detail
