#pragma once
// Internal to src/model, not part of manifest.h: what the files that read a
// manifest share (manifest_cluster.cc, manifest_tree.cc, manifest_documents.cc,
// and the spellings for manifest_normalized.cc). Defined in
// manifest_readers.cc, except the readers of the manifest's parts at the end.

#include <algorithm>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/manifest.h"

namespace tranche::manifest_detail {

using nlohmann::json;

// Validation stops at the first problem. The walk over the document is deeply
// recursive, so the problem travels out as this exception and parse_manifest
// turns it back into an Error value; nothing outside src/model sees it.
struct Rejection {
  Error error;
};

[[noreturn]] void reject(std::string field, std::string message);
[[noreturn]] void reject_syntax(std::string message);
void ensure(const Status& status);

// Limits that keep hostile documents (alias bombs, absurd nesting) from
// exhausting the stack or memory; real manifests stay far below them.
inline constexpr int kMaxGroupDepth = 32;
inline constexpr int kMaxYamlDepth = 256;
// A real manifest spends several bytes per node; a document that expands to
// far more nodes than that is being multiplied by aliases.
inline size_t max_yaml_nodes(size_t text_size) { return 10'000 + text_size / 2; }
inline std::string too_deep() { return "the manifest nests deeper than " + std::to_string(kMaxYamlDepth) + " levels"; }

// ---------------------------------------------------------------------------
// Enumerations and their manifest spellings.

template <class E>
struct Spelling {
  std::string_view name;
  E value;
};

inline constexpr Spelling<ApplicationSpec::UpdateOrder> kUpdateOrders[] = {
    {"dependencies", ApplicationSpec::UpdateOrder::kDependencies},
    {"reverse", ApplicationSpec::UpdateOrder::kReverse},
    {"parallel", ApplicationSpec::UpdateOrder::kParallel},
};
inline constexpr Spelling<UpdatePolicy::Method> kMethods[] = {
    {"replace", UpdatePolicy::Method::kReplace},
    {"in-place", UpdatePolicy::Method::kInPlace},
};
inline constexpr Spelling<UpdatePolicy::Strategy> kStrategies[] = {
    {"rolling", UpdatePolicy::Strategy::kRolling},
    {"all-at-once", UpdatePolicy::Strategy::kAllAtOnce},
};
inline constexpr Spelling<UpdatePolicy::OnFailure> kOnFailures[] = {
    {"rollback", UpdatePolicy::OnFailure::kRollback},
    {"pause", UpdatePolicy::OnFailure::kPause},
};
inline constexpr Spelling<bool> kOnOff[] = {{"on", true}, {"off", false}};

template <class E, size_t N>
std::string_view spelling_of(const Spelling<E> (&table)[N], E value) {
  for (const auto& entry : table) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return "unknown";  // every enumerator is in its table
}

template <class E, size_t N>
std::string list_spellings(const Spelling<E> (&table)[N]) {
  std::string out;
  for (const auto& entry : table) {
    out += out.empty() ? "" : ", ";
    out += entry.name;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Paths and value descriptions for messages.

std::string field_path(std::string_view base, std::string_view key);
std::string item_path(std::string_view list_path, size_t index);
std::string type_name(const json& v);
std::string format_number(double x);
std::string format_int_or_percent(const IntOrPercent& v);

// ---------------------------------------------------------------------------
// Typed readers. Each takes the value and its path, and rejects with that path.

std::string read_string(const json& v, const std::string& path);
std::string read_nonempty_string(const json& v, const std::string& path);
int read_int(const json& v, const std::string& path);
int read_int_at_least(const json& v, const std::string& path, int minimum);
double read_nonnegative_number(const json& v, const std::string& path);
const json& read_list(const json& v, const std::string& path);
std::string read_name(const json& v, const std::string& path);
std::vector<std::string> read_name_list(const json& v, const std::string& path);
std::vector<std::string> read_command(const json& v, const std::string& path);
std::map<std::string, std::string> read_string_map(const json& v, const std::string& path);

template <class E, size_t N>
E read_enum(const json& v, const std::string& path, const Spelling<E> (&table)[N]) {
  if (!v.is_string()) {
    reject(path, "expected one of " + list_spellings(table) + ", got " + type_name(v) +
                     (v.is_boolean() ? " (quote it)" : ""));
  }
  const auto& s = v.get_ref<const std::string&>();
  for (const auto& entry : table) {
    if (entry.name == s) {
      return entry.value;
    }
  }
  reject(path, "'" + s + "' is not one of " + list_spellings(table));
}

// One mapping of the manifest: checks that it is a mapping holding only known
// keys, then hands out its members with their paths. A null member counts as
// absent, as an empty `hooks:` line in YAML means "nothing here".
class Fields {
 public:
  Fields(const json& value, std::string path, std::initializer_list<std::string_view> known)
      : value_(value), path_(std::move(path)) {
    if (!value_.is_object()) {
      reject(path_, "expected a mapping, got " + type_name(value_));
    }
    for (auto it = value_.begin(); it != value_.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
        reject(field_path(path_, it.key()), "unknown field '" + it.key() + "'");
      }
    }
  }

  std::string path(std::string_view key) const { return field_path(path_, key); }
  const std::string& path() const { return path_; }

  const json* find(std::string_view key) const {
    const auto it = value_.find(std::string(key));
    if (it == value_.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  const json& required(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) {
      reject(path(key), "missing required field '" + std::string(key) + "'");
    }
    return *v;
  }

  int int_at_least(std::string_view key, int fallback, int minimum) const {
    const json* v = find(key);
    return v == nullptr ? fallback : read_int_at_least(*v, path(key), minimum);
  }

  template <class E, size_t N>
  E enumeration(std::string_view key, E fallback, const Spelling<E> (&table)[N]) const {
    const json* v = find(key);
    return v == nullptr ? fallback : read_enum(*v, path(key), table);
  }

 private:
  const json& value_;
  std::string path_;
};

// ---------------------------------------------------------------------------
// The readers of the manifest's parts.

// manifest_cluster.cc
ClusterSpec read_cluster(const json& v, const std::string& path);
InitialOperational read_operational(const json& v, const std::string& path);

// manifest_tree.cc: the whole document, groups and clusters checked.
ApplicationSpec read_application(const json& doc);

}  // namespace tranche::manifest_detail
