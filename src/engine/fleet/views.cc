// What the API reads of the fleet: hosts and members, costing what they return.

#include "engine/fleet/fleet.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/maintenance_marks.h"

namespace tranche {

namespace {

using nlohmann::json;

}  // namespace

json Fleet::hosts_json(const std::optional<std::string>& visible_app) const {
  std::lock_guard lock(mu_);
  json items = json::array();
  for (const auto& [id, h] : hosts_) {
    int members = 0;
    if (auto on_host = by_host_.find(id); on_host != by_host_.end()) {
      for (const auto& [mid, m] : on_host->second) {
        members += may_run(m->state) && (!visible_app || m->record.app == *visible_app) ? 1 : 0;
      }
    }
    items.push_back({{"id", id},
                     {"hostname", h.record.hostname},
                     {"state", h.record.state},
                     {"connected", h.link != nullptr},
                     {"labels", h.record.labels},
                     {"slots", h.record.slots},
                     {"members", members},
                     {"agentVersion", h.agent_version.empty() ? json(nullptr) : json(h.agent_version)},
                     {"protocol", h.protocol == 0 ? json(nullptr) : json(h.protocol)},
                     {"refused", h.refused.empty() ? json(nullptr) : json(h.refused)},
                     {"lastSeen", format_rfc3339(h.last_seen)}});
  }
  return json{{"items", items}};
}

json Fleet::to_json(const MemberEntry& m) {
  json j = {{"id", m.record.id},           {"app", m.record.app},
            {"cluster", m.record.cluster}, {"host", m.record.host},
            {"state", m.record.state},     {"revision", m.record.revision},
            {"version", m.record.version}, {"ports", m.record.ports},
            {"healthy", m.healthy},        {"updatedAt", format_rfc3339(m.record.updated_at)}};
  j["pid"] = m.record.pid ? json(*m.record.pid) : json(nullptr);
  j["load"] = m.stats ? json(m.stats->load) : json(nullptr);
  j["healingDelayedSince"] =
      m.record.healing_delayed_since ? json(format_rfc3339(*m.record.healing_delayed_since)) : json(nullptr);
  if (!m.successor.empty() && m.state != MemberState::kTerminated) {
    // model.md: Updating, "it is being replaced". Beside its state, which
    // says whether it still serves (and counts as available) meanwhile.
    j["updating"] = {{"method", "replace"}, {"successor", m.successor}};
  }
  const ClusterSpec* spec = balancer_ ? cluster_spec(m) : nullptr;
  if (spec && !spec->load_balancer.haproxy_backend.empty()) {
    j["loadBalancer"] = {{"backend", spec->load_balancer.haproxy_backend},
                         {"state", to_string(balancer_->presence(m.record.id))}};
  }
  return j;
}

namespace {

// The member's maintenance mark (MaintenanceMarks reads the store), added
// once the fleet's lock is let go: a store read may wait behind a commit's
// fsync, which the view's readers and agents must not.
void add_maintenance_marks(Store& store, json& items) {
  MaintenanceMarks marks(store);
  MemberRecord key;
  for (auto& item : items) {
    key.id = item["id"].get<std::string>();
    key.app = item["app"].get<std::string>();
    item["maintenance"] = marks.of(key);
  }
}

// The page's answer: `more` says whether members follow the last item.
json page_json(json items, bool more) {
  json next = more && !items.empty() ? items.back()["id"] : json(nullptr);
  return json{{"items", std::move(items)}, {"continue", std::move(next)}};
}

}  // namespace

Result<json> Fleet::members_json(const MemberQuery& query, const std::optional<std::string>& visible_app,
                                 const MemberPage& page) {
  if (visible_app && query.app && *query.app != *visible_app) {
    return page_json(json::array(), false);
  }
  MemberQuery q = query;
  if (visible_app) {
    q.app = visible_app;
  }
  // Ordered by id; a page holds the first `limit` after the cursor. One more
  // is looked for, to tell whether a next page exists.
  const size_t wanted = page.limit ? *page.limit + 1 : std::numeric_limits<size_t>::max();
  const auto matches = [&q](const MemberRecord& r) {
    return (!q.state || r.state == *q.state) && (!q.cluster || r.cluster == *q.cluster);
  };
  json items = json::array();
  // Terminated members are history: only in the store, and only when asked for.
  if (q.state && *q.state == "Terminated") {
    auto records = store_.list_members(q);
    if (!records) {
      return std::unexpected(records.error());
    }
    std::erase_if(*records, [&](const MemberRecord& r) { return r.id <= page.after; });
    std::sort(records->begin(), records->end(),
              [](const MemberRecord& a, const MemberRecord& b) { return a.id < b.id; });
    std::lock_guard lock(mu_);  // to_json reads the specs' cache
    for (size_t i = 0; i < records->size() && items.size() < wanted; ++i) {
      items.push_back(to_json(MemberEntry{(*records)[i], MemberState::kTerminated}));
    }
  } else {
    // From the indexes (all by id): O(page) with a cluster, O(clusters x page)
    // with only an application, under the view's lock for no longer.
    std::vector<const MemberEntry*> found;
    const auto collect = [&](const auto& by_id, auto entry_of) {
      size_t taken = 0;
      for (auto it = by_id.upper_bound(page.after); it != by_id.end() && taken < wanted; ++it) {
        const MemberEntry& m = entry_of(it->second);
        if (matches(m.record)) {
          found.push_back(&m);
          ++taken;
        }
      }
    };
    const auto indexed = [](const MemberEntry* m) -> const MemberEntry& { return *m; };
    std::lock_guard lock(mu_);
    if (q.app && q.cluster) {
      if (auto it = by_cluster_.find(*q.app + "/" + *q.cluster); it != by_cluster_.end()) {
        collect(it->second, indexed);
      }
    } else if (q.app) {
      for (const auto& [key, index] : by_cluster_) {
        if (key.size() > q.app->size() && key.starts_with(*q.app) && key[q.app->size()] == '/') {
          collect(index, indexed);
        }
      }
      std::sort(found.begin(), found.end(),
                [](const MemberEntry* a, const MemberEntry* b) { return a->record.id < b->record.id; });
    } else {
      collect(members_, [](const MemberEntry& m) -> const MemberEntry& { return m; });
    }
    for (size_t i = 0; i < found.size() && items.size() < wanted; ++i) {
      items.push_back(to_json(*found[i]));
    }
  }
  const bool more = page.limit && items.size() > *page.limit;
  if (more) {
    items.erase(items.end() - 1);
  }
  add_maintenance_marks(store_, items);
  return page_json(std::move(items), more);
}

std::map<std::string, Fleet::ClusterCounts> Fleet::cluster_counts(const std::string& app,
                                                                 const std::vector<std::string>& clusters) const {
  std::map<std::string, ClusterCounts> out;
  std::string key;
  std::lock_guard lock(mu_);
  for (const auto& path : clusters) {
    ClusterCounts& counts = out[path];
    key = app + "/" + path;
    if (auto it = by_cluster_.find(key); it != by_cluster_.end()) {
      // Plain fields only: no JSON, no string built, per member.
      for (const auto& [id, m] : it->second) {
        ++counts.count;
        ++counts.by_state[static_cast<size_t>(m->state)];
        counts.healthy += m->healthy ? 1 : 0;
        counts.updating += m->state == MemberState::kUpdating || !m->successor.empty() ? 1 : 0;
        counts.healing_delayed += m->record.healing_delayed_since ? 1 : 0;
        ++counts.by_revision[m->record.revision];
        counts.live_by_revision[m->record.revision] += is_live(m->state) ? 1 : 0;
      }
    }
  }
  return out;
}

json Fleet::to_json(const ClusterCounts& c) {
  json states = json::object();
  for (size_t i = 0; i < c.by_state.size(); ++i) {
    if (c.by_state[i] > 0) {
      states[std::string(tranche::to_string(static_cast<MemberState>(i)))] = c.by_state[i];
    }
  }
  json revisions = json::object();
  for (const auto& [revision, n] : c.by_revision) {
    revisions[std::to_string(revision)] = n;
  }
  return json{{"count", c.count},
              {"states", std::move(states)},
              {"available", c.by_state[static_cast<size_t>(MemberState::kActive)]},
              {"healthy", c.healthy},
              {"updating", c.updating},
              {"healingDelayed", c.healing_delayed},
              {"revisions", std::move(revisions)}};
}

Result<json> Fleet::member_json(const std::string& member_id, const std::optional<std::string>& visible_app) {
  json items = json::array();
  {
    std::lock_guard lock(mu_);
    auto it = members_.find(member_id);
    if (it != members_.end() && (!visible_app || it->second.record.app == *visible_app)) {
      items.push_back(to_json(it->second));
    }
  }
  const std::string app = member_id.substr(0, member_id.find('/'));
  if (items.empty() && (!visible_app || app == *visible_app)) {
    auto record = store_.get_member(app, member_id);
    if (record && *record) {
      std::lock_guard lock(mu_);  // to_json reads the specs' cache
      items.push_back(to_json(MemberEntry{**record, MemberState::kTerminated}));
    }
  }
  if (items.empty()) {
    return fail(ErrorCode::kNotFound, "member '" + member_id + "' not found");
  }
  add_maintenance_marks(store_, items);
  return std::move(items[0]);
}

}  // namespace tranche
