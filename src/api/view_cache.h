#pragma once
// Answers of read routes kept between events (ControllerApi's application
// view and member pages): an answer rendered when the newest committed event
// was `seq` is given again while that is still the newest and for a
// lifetime (plus the time one caller takes to render it again), which
// bounds how stale what no event announces may be (health, load samples).
// Every other change of what they show commits an event first, so a caller
// who changed something sees it on its next read. A large answer is also
// kept gzip-compressed (common/gzip.h), compressed once when it is kept: a
// thousand callers a second of a 1 MB view would otherwise cost a thousand
// compressions, or a gigabyte a second through the sockets. Thread-safe;
// bounded: past kMaxEntries it starts afresh.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/gzip.h"

namespace tranche::api {

// An answer's body as given to one caller: gzip-compressed when that caller
// accepts it and the answer is large enough to be kept so.
struct KeptAnswer {
  std::string body;
  bool gzipped = false;
  bool operator==(const KeptAnswer&) const = default;
};

class ViewCache {
 public:
  // Smaller answers are given as they are: compressing them saves less than
  // it costs.
  static constexpr size_t kGzipAbove = 16 * 1024;

  explicit ViewCache(std::chrono::milliseconds lifetime) : lifetime_(lifetime) {}

  // The kept answer if it may be given: rendered at `seq` within its
  // lifetime; or, past its lifetime (still at `seq`), while another caller
  // renders it again, so that one caller renews it and the others do not
  // all render at once. nullopt: the caller renders and keep()s it. After
  // a new event every caller renders: none is answered from before it.
  std::optional<KeptAnswer> find(const std::string& key, uint64_t seq, TimePoint now, bool accepts_gzip = false) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.seq != seq) {
      return std::nullopt;
    }
    Entry& e = it->second;
    if (now >= e.at && now - e.at < lifetime_) {
      return e.answer(accepts_gzip);
    }
    if (e.renewing && now >= e.renewing_since && now - e.renewing_since < lifetime_) {
      return e.answer(accepts_gzip);  // a renewal that failed is retried after a lifetime
    }
    e.renewing = true;
    e.renewing_since = now;
    return std::nullopt;
  }

  // `seq`: the newest event as read BEFORE rendering `body`, so that an
  // event committed meanwhile makes the next read render again. Answers
  // the rendering caller as find() would.
  KeptAnswer keep(const std::string& key, uint64_t seq, TimePoint now, std::string body, bool accepts_gzip = false) {
    Entry entry{seq, now, std::move(body), {}, false, {}};
    if (entry.body.size() > kGzipAbove) {
      entry.gzipped = gzip(entry.body);  // before the lock: readers of other keys do not wait for it
    }
    KeptAnswer answer = entry.answer(accepts_gzip);
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(key)) {
      entries_.clear();  // cursors and filters make keys without end
    }
    entries_[key] = std::move(entry);
    return answer;
  }

 private:
  static constexpr size_t kMaxEntries = 1024;
  struct Entry {
    uint64_t seq = 0;
    TimePoint at;
    std::string body;
    std::string gzipped;    // empty: not kept compressed (small)
    bool renewing = false;  // a caller renders it again
    TimePoint renewing_since;

    KeptAnswer answer(bool accepts_gzip) const {
      return accepts_gzip && !gzipped.empty() ? KeptAnswer{gzipped, true} : KeptAnswer{body, false};
    }
  };
  const std::chrono::milliseconds lifetime_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tranche::api
