#pragma once
// Answers of read routes kept between events (ControllerApi's application
// view and member pages): an answer rendered when the newest committed event
// was `seq` is given again while that is still the newest and for a
// lifetime (plus the time one caller takes to render it again), which bounds
// how stale what no event announces may be (health, load samples). Every other change of what they show commits an event
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

  // The kept answer if it may be given: rendered at `seq` within its
  // lifetime; or, past its lifetime (still at `seq`), while another caller
  // renders it again, so that one caller renews it and the others do not
  // all render at once. nullopt: the caller renders and keep()s it. After
  // a new event every caller renders: none is answered from before it.
  std::optional<std::string> find(const std::string& key, uint64_t seq, TimePoint now) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.seq != seq) {
      return std::nullopt;
    }
    Entry& e = it->second;
    if (now >= e.at && now - e.at < lifetime_) {
      return e.body;
    }
    if (e.renewing && now >= e.renewing_since && now - e.renewing_since < lifetime_) {
      return e.body;  // a renewal that failed is retried after a lifetime
    }
    e.renewing = true;
    e.renewing_since = now;
    return std::nullopt;
  }

  // `seq`: the newest event as read BEFORE rendering `body`, so that an
  // event committed meanwhile makes the next read render again.
  void keep(const std::string& key, uint64_t seq, TimePoint now, std::string body) {
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(key)) {
      entries_.clear();  // cursors and filters make keys without end
    }
    entries_[key] = Entry{seq, now, std::move(body), false, {}};
  }

 private:
  static constexpr size_t kMaxEntries = 1024;
  struct Entry {
    uint64_t seq = 0;
    TimePoint at;
    std::string body;
    bool renewing = false;  // a caller renders it again
    TimePoint renewing_since;
  };
  const std::chrono::milliseconds lifetime_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tranche::api
