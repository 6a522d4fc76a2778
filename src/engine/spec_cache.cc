#include "engine/spec_cache.h"

#include <iterator>
#include <limits>

namespace tranche {

std::shared_ptr<const ApplicationSpec> SpecCache::find(const Key& key) const {
  auto it = known_.find(key);
  return it == known_.end() ? nullptr : it->second.lock();
}

void SpecCache::remember(const Key& key, const std::shared_ptr<const ApplicationSpec>& spec) {
  known_[key] = spec;
  auto [newest, inserted] = newest_.try_emplace(key.first, key.second, spec);
  if (!inserted && newest->second.first < key.second) {
    newest->second = {key.second, spec};
  }
  // The application's entries are contiguous in known_ (keyed by app first).
  for (auto it = known_.lower_bound({key.first, std::numeric_limits<int64_t>::min()}); it != known_.end() && it->first.first == key.first;) {
    it = it->second.expired() ? known_.erase(it) : std::next(it);
  }
}

Result<std::shared_ptr<const ApplicationSpec>> SpecCache::get(const std::string& app, int64_t revision) {
  const Key key{app, revision};
  {
    std::lock_guard lock(mu_);
    if (auto spec = find(key)) {
      return spec;
    }
  }
  std::lock_guard loading(loading_);
  {
    // Another thread may have parsed it while this one waited for loading_.
    std::lock_guard lock(mu_);
    if (auto spec = find(key)) {
      return spec;
    }
  }
  auto record = store_.get_revision(app, revision);
  if (!record) {
    return std::unexpected(record.error());
  }
  if (!*record) {
    return fail(ErrorCode::kNotFound, "application '" + app + "' has no revision " + std::to_string(revision));
  }
  auto parsed = parse_manifest((*record)->manifest_json, ManifestFormat::kJson);
  std::lock_guard lock(mu_);
  ++parses_;
  if (!parsed) {
    return fail(ErrorCode::kInternal, "revision " + std::to_string(revision) + " of '" + app +
                                          "' does not parse: " + parsed.error().describe());
  }
  auto spec = std::make_shared<const ApplicationSpec>(std::move(*parsed));
  remember(key, spec);
  return spec;
}

size_t SpecCache::parses() const {
  std::lock_guard lock(mu_);
  return parses_;
}

}  // namespace tranche
