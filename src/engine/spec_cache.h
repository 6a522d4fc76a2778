#pragma once
// The parsed specs of stored revisions, one cache for the process: the
// controller makes one and gives it to the ApplicationService and the
// Fleet, so that a revision is parsed once, not once per reader (parsing is
// most of what reading a revision costs). A revision never changes once
// stored, so a parsed one is shared as is: readers get a
// shared_ptr<const ApplicationSpec> and keep what they use alive for as long
// as they hold it.
//
// What the cache keeps: the newest revision it has seen of each
// application. An older one lives only while someone holds it (the fleet
// holds the revisions its members run); until then the cache still finds it
// without parsing it again. A newer revision of an application lets go of
// the older one, which costs nothing to whoever still holds it.
//
// Thread-safe. A miss reads the store and parses under a lock of its own, so
// that two threads missing the same revision parse it once, while hits never
// wait for a parse.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/error.h"
#include "model/manifest.h"
#include "store/store.h"

namespace tranche {

class SpecCache {
 public:
  explicit SpecCache(Store& store) : store_(store) {}

  // Revision `revision` of `app`, parsed. kNotFound when the store has no
  // such revision; kInternal when the stored manifest does not parse.
  // A revision the store has deleted since it was cached may still be
  // answered while someone holds it: revision numbers are never reused.
  Result<std::shared_ptr<const ApplicationSpec>> get(const std::string& app, int64_t revision);

  // How many manifests this cache has parsed: each revision once while it
  // is held (tests count them).
  size_t parses() const;

 private:
  using Key = std::pair<std::string, int64_t>;
  std::shared_ptr<const ApplicationSpec> find(const Key& key) const;  // mu_ held
  // Keeps `spec` as `key` and makes it its application's newest if it is;
  // forgets the application's revisions nobody holds any more. mu_ held.
  void remember(const Key& key, const std::shared_ptr<const ApplicationSpec>& spec);

  Store& store_;
  std::mutex loading_;     // one miss at a time: taken before mu_, never after
  mutable std::mutex mu_;  // the maps below
  std::map<Key, std::weak_ptr<const ApplicationSpec>> known_;
  // By application: its newest revision seen, kept alive by the cache.
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const ApplicationSpec>>> newest_;
  size_t parses_ = 0;
};

}  // namespace tranche
