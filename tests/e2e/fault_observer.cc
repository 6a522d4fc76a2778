// The campaign's observer: the controller's event log is the record of every
// decision it committed, in order, so the budgets are checked there, at the
// instant of each decision, against the state the log itself gives.

#include <algorithm>
#include <cstdlib>

#include "cli/client.h"
#include "fault_campaign.h"

namespace tranche::e2e::campaign {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// "25%" of `desired`, or a plain number; rounded as the engine does
// (maxUnavailable down, maxSurge up).
int resolve(const json& value, int desired, bool round_up) {
  if (value.is_number_integer()) {
    return value.get<int>();
  }
  if (value.is_string()) {
    const int percent = std::atoi(value.get<std::string>().c_str());
    return round_up ? (desired * percent + 99) / 100 : desired * percent / 100;
  }
  return 0;
}

const std::set<std::string> kExisting = {"Created",     "Starting", "Active",  "Updating",
                                         "Maintenance", "Draining", "Stopping"};
// Where the controller moves an Active member when it takes it out itself.
const std::set<std::string> kTakenOut = {"Updating", "Maintenance", "Draining", "Stopping"};

}  // namespace

uint64_t Figures::total_checks() const {
  uint64_t n = 0;
  for (const auto& [name, count] : checks) {
    n += count;
  }
  return n;
}

InvariantObserver::InvariantObserver(std::string server, std::string token, std::string app, std::string cluster)
    : server_(std::move(server)),
      token_(std::move(token)),
      app_(std::move(app)),
      cluster_(std::move(cluster)),
      thread_([this] { run(); }) {}

InvariantObserver::~InvariantObserver() { stop(); }

void InvariantObserver::stop() {
  stopping_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
}

Figures InvariantObserver::figures() const {
  std::lock_guard lock(mu_);
  return figures_;
}

std::map<std::string, std::string> InvariantObserver::member_states() const {
  std::lock_guard lock(mu_);
  return states_;
}

std::map<uint64_t, std::string> InvariantObserver::digests() const {
  std::lock_guard lock(mu_);
  return digests_;
}

void InvariantObserver::add_violation(const std::string& what) {
  std::lock_guard lock(mu_);
  figures_.violations.push_back(what);
}

void InvariantObserver::count_check(const std::string& invariant, uint64_t n) {
  std::lock_guard lock(mu_);
  figures_.checks[invariant] += n;
}

std::string InvariantObserver::digest(const json& e) {
  return e.value("type", "") + "|" + e.value("path", "") + "|" + e.value("member", "") + "|" +
         e.value("from", json()).dump() + "|" + e.value("to", json()).dump();
}

void InvariantObserver::run() {
  const cli::ApiClient client(server_, token_);
  constexpr size_t kPage = 1000;
  while (!stopping_) {
    size_t read = 0;
    // While the controller is down (killed, restarting) this fails and is
    // simply asked again: the log is durable, nothing is missed.
    auto reply =
        client.send("GET", "/api/v1/events?limit=" + std::to_string(kPage) + "&since=" + std::to_string(seen_));
    if (reply && reply->status == 200) {
      const json page = json::parse(reply->body, nullptr, false);
      if (page.is_object() && page["items"].is_array()) {
        for (const json& e : page["items"]) {
          observe(e);
        }
        read = page["items"].size();
      }
    }
    if (read < kPage) {
      std::this_thread::sleep_for(50ms);  // the log's poll interval
    }
  }
}

void InvariantObserver::violation(const std::string& what, const json& event) {
  figures_.violations.push_back("seq " + std::to_string(event.value("seq", uint64_t{0})) + ": " + what + "; event " +
                                event.dump());
}

void InvariantObserver::observe(const json& e) {
  std::lock_guard lock(mu_);
  const uint64_t seq = e.value("seq", uint64_t{0});
  ++figures_.checks["seq gap-free"];
  if (seq != seen_ + 1) {
    violation("the log skips from seq " + std::to_string(seen_) + " to " + std::to_string(seq), e);
  }
  seen_ = std::max<uint64_t>(seen_, seq);
  digests_[seq] = digest(e);
  ++figures_.events;
  const std::string type = e.value("type", "");
  if (type == "HostStateChanged" && e["to"] == "Unreachable") {
    ++figures_.hosts_unreachable;
  }
  if (e.value("app", "") != app_) {
    return;
  }
  if (type == "RevisionCreated" && e["to"].is_number_integer()) {
    revision_ = e["to"].get<int64_t>();
    if (auto budget = budget_of_revision(revision_)) {
      budget_ = *budget;
    } else {
      violation("revision " + std::to_string(revision_) + " cannot be read", e);
    }
  } else if (type == "ApplicationUndeployed") {
    undeployed_ = true;
  } else if (type == "ApplicationDeployed") {
    undeployed_ = false;
  } else if (type == "OperationalStateChanged" || type == "OperationalStateExpired") {
    on_operational_event(e);
  } else if (type == "MemberStateChanged" && e.value("member", "").starts_with(cluster_ + "/")) {
    on_member_event(e, e["member"]);
  }
}

void InvariantObserver::on_operational_event(const json& e) {
  // Which setting changed is said only in the message ("maintenance restart
  // (all at once) on shop/web", "autohealing off on shop/web", "maintenance
  // restart of shop/web completed: ...").
  const std::string message = e.value("message", "");
  const std::string path = e.value("path", "");
  if (message.starts_with("maintenance")) {
    // Any later maintenance command re-marks the members; completion and
    // off end it: the window of all-at-once closes with any of them.
    all_at_once_restart_ = e["to"] == "restart" && message.find("(all at once)") != std::string::npos;
  } else if (message.starts_with("autohealing") && (path == app_ || path == cluster_)) {
    autohealing_off_ = e["to"] == "off";
  }
}

int InvariantObserver::count_states(const std::set<std::string>& states, bool skip_lost) const {
  int n = 0;
  for (const auto& [id, state] : states_) {
    n += states.contains(state) && !(skip_lost && lost_.contains(id)) ? 1 : 0;
  }
  return n;
}

void InvariantObserver::on_member_event(const json& e, const std::string& member) {
  const std::string to = e["to"].is_string() ? e["to"].get<std::string>() : "";
  const std::string from = e["from"].is_string() ? e["from"].get<std::string>() : "";
  const auto known = states_.find(member);
  const std::string before = known == states_.end() ? "" : known->second;
  ++figures_.checks["from = state the log gave"];
  if (from != before) {
    violation(member + " moves from " + from + " but the log left it " + (before.empty() ? "unborn" : before), e);
  }
  states_[member] = to;
  if (to == "Failed" || to == "Unreachable") {
    lost_.insert(member);
    ++(to == "Failed" ? figures_.members_failed : figures_.members_unreachable);
  } else if (to == "Starting" || to == "Active" || to == "Terminated") {
    lost_.erase(member);  // back in the controller's hands, or gone
  }
  if (undeployed_) {
    return;  // a deleted application's members all go: no budget applies
  }

  if (before == "Active" && kTakenOut.contains(to)) {
    ++figures_.take_downs;
    if (to == "Maintenance" && all_at_once_restart_) {
      ++figures_.checks["availability: exempt (maintenance --all-at-once)"];
    } else {
      // docs/operational-state.md: maintenance takes at least one at a time.
      const int unavailable = to == "Maintenance" ? std::max(budget_.max_unavailable, 1) : budget_.max_unavailable;
      const int active = count_states({"Active"}, false);
      // With autohealing off the engine keeps failing members in place and
      // runs rollouts and maintenance against desired - held (reconcile/replicas.cc,
      // reconcile_cluster): it takes the budget from what is left, below
      // updates.md's desired - maxUnavailable. Checked by the engine's rule;
      // how often the spec's reading is not met is a figure of its own.
      const int held = autohealing_off_ ? count_states({"Failed", "Unreachable"}, false) : 0;
      const int floor = budget_.desired - held - unavailable;
      ++figures_.checks["availability"];
      if (active < budget_.desired - unavailable && active >= floor) {
        ++figures_.below_spec_budget_with_autohealing_off;
      }
      if (active < floor) {
        violation(member + " taken out (" + to + ") leaves " + std::to_string(active) + " Active < desired " +
                      std::to_string(budget_.desired) + " - held " + std::to_string(held) + " - maxUnavailable " +
                      std::to_string(unavailable) + " (" +
                      std::to_string(count_states({"Failed", "Unreachable"}, false)) +
                      " Failed/Unreachable, autohealing " + (autohealing_off_ ? "off" : "on") + ")",
                  e);
      }
    }
  }
  if (to == "Created") {
    ++figures_.members_created;
    const int existing = count_states(kExisting, true);
    ++figures_.checks["surge"];
    if (existing > budget_.desired + budget_.max_surge) {
      violation(member + " created: " + std::to_string(existing) + " exist > desired " +
                    std::to_string(budget_.desired) + " + maxSurge " + std::to_string(budget_.max_surge),
                e);
    }
  }
  if (to == "Updating") {
    ++figures_.checks["updated once per revision"];
    if (++updating_[{member, revision_}] > 1) {
      violation(member + " is Updating a second time for revision " + std::to_string(revision_), e);
    }
  }
}

std::optional<Budget> InvariantObserver::budget_of_revision(int64_t revision) {
  const cli::ApiClient client(server_, token_);
  const std::string web = cluster_.substr(app_.size() + 1);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!stopping_ && std::chrono::steady_clock::now() < deadline) {
    auto reply = client.send("GET", "/api/v1/applications/" + app_ + "/revisions/" + std::to_string(revision));
    const json body = reply && reply->status == 200 ? json::parse(reply->body, nullptr, false) : json();
    if (body.is_object() && body.contains("manifest")) {
      for (const json& c : body["manifest"].value("clusters", json::array())) {
        if (c.value("name", "") == web) {
          Budget b;
          b.desired = c["members"].value("desired", 0);
          const json update = c.value("update", json::object());
          b.max_unavailable = resolve(update.value("maxUnavailable", json(1)), b.desired, false);
          b.max_surge = resolve(update.value("maxSurge", json(1)), b.desired, true);
          return b;
        }
      }
      return std::nullopt;
    }
    std::this_thread::sleep_for(100ms);  // the controller is restarting: ask again
  }
  return std::nullopt;
}

}  // namespace tranche::e2e::campaign
