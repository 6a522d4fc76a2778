#pragma once
// Answers of read routes kept between events (ControllerApi's application
// view and member pages): an answer rendered when the newest committed event
// was `seq` is given again while that is still the newest and for at most a
// lifetime, which bounds how stale what no event announces may be (health,
// load samples). Every other change of what they show commits an event
// first, so a caller who changed something sees it on its next read.
// Thread-safe; bounded: past kMaxEntries it starts afresh.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"

namespace tranche::api {

class ViewCache {
 public:
  explicit ViewCache(std::chrono::milliseconds lifetime) : lifetime_(lifetime) {}

  std::optional<std::string> find(const std::string& key, uint64_t seq, TimePoint now) const {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.seq != seq || now < it->second.at || now - it->second.at >= lifetime_) {
      return std::nullopt;
    }
    return it->second.body;
  }

  // `seq`: the newest event as read BEFORE rendering `body`, so that an
  // event committed meanwhile makes the next read render again.
  void keep(const std::string& key, uint64_t seq, TimePoint now, std::string body) {
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(key)) {
      entries_.clear();  // cursors and filters make keys without end
    }
    entries_[key] = Entry{seq, now, std::move(body)};
  }

 private:
  static constexpr size_t kMaxEntries = 1024;
  struct Entry {
    uint64_t seq = 0;
    TimePoint at;
    std::string body;
  };
  const std::chrono::milliseconds lifetime_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tranche::api
