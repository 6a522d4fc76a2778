// The application's view (GET /applications/{app}) carries each cluster's
// counts, not its members; the members `describe` lists come from GET
// /members, a page at a time, at most --members of each cluster (20 unless
// asked: a cluster of 100,000 members is described by its counts and 20
// lines, as `kubectl describe deployment` shows replica counts, not pods).

#include "cli/describe_verb.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/migration_verbs.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/time_format.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// Members asked of GET /members in one request when more are wanted.
constexpr size_t kPage = 500;

std::string time_left(const std::string& expires_at) {
  auto t = parse_rfc3339(expires_at);
  if (!t) {
    return expires_at;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*t - std::chrono::system_clock::now());
  return left.count() > 0 ? format_duration(std::chrono::duration_cast<std::chrono::seconds>(left)) + " left"
                          : "expiring";
}

// "off (explicit, 4m left)", "off (from backend)", "on (default)".
std::string setting_cell(const json& s) {
  std::string out = s.value("effective", "?");
  if (s.value("allAtOnce", false)) {
    out += " all at once";
  }
  if (!s["explicit"].is_null()) {
    out += s.contains("expiresAt") ? " (explicit, " + time_left(s["expiresAt"]) + ")" : " (explicit)";
  } else if (s["source"] == "default") {
    out += " (default)";
  } else {
    const std::string source = s["source"];
    out += " (from " + (source.empty() ? std::string("app") : source) + ")";
  }
  return out;
}

std::string fmt_load(double load) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", load);
  return buf;
}

// --members: a count, or "all" (nullopt).
Result<std::optional<size_t>> parse_bound(const std::string& text) {
  if (text == "all") {
    return std::optional<size_t>();
  }
  size_t n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return fail(ErrorCode::kInvalid, "expected a number of members or 'all', got '" + text + "'", "--members");
  }
  return std::optional<size_t>(n);
}

// Up to `bound` members of the cluster, in id order, into its node's
// members.items; members.continue is the cursor of those not listed (null:
// every one is).
Status list_members(const Session& s, const std::string& app, json& node, std::optional<size_t> bound) {
  json& members = node["members"];
  json items = json::array();
  json cursor = nullptr;
  const bool any = members.value("count", 0) > 0;
  while (any && (!bound || items.size() < *bound)) {
    const size_t limit = bound ? std::min(kPage, *bound - items.size()) : kPage;
    std::string target = "/api/v1/members?app=" + url_encode(app) +
                         "&cluster=" + url_encode(node["path"].get<std::string>()) +
                         "&limit=" + std::to_string(limit);
    if (cursor.is_string()) {
      target += "&continue=" + url_encode(cursor.get<std::string>());
    }
    auto page = s.call("GET", target);
    if (!page) {
      return std::unexpected(page.error());
    }
    for (auto& m : (*page)["items"]) {
      items.push_back(std::move(m));
    }
    cursor = (*page)["continue"];
    if (cursor.is_null()) {
      break;
    }
  }
  members["items"] = std::move(items);
  members["continue"] = cursor;
  return {};
}

// "3 Active, 1 Starting; 3 available, 4 healthy, 1 updating".
std::string counts_line(const json& m) {
  std::string out;
  const json states = m.value("states", json::object());
  for (const auto& [state, n] : states.items()) {
    out += (out.empty() ? "" : ", ") + n.dump() + " " + state;
  }
  out = (out.empty() ? "none" : out) + "; " + std::to_string(m.value("available", 0)) + " available, " +
        std::to_string(m.value("healthy", 0)) + " healthy";
  if (m.value("updating", 0) > 0) {
    out += ", " + std::to_string(m.value("updating", 0)) + " updating";
  }
  if (m.value("healingDelayed", 0) > 0) {
    out += ", healing delayed for " + std::to_string(m.value("healingDelayed", 0));
  }
  return out;
}

// PATH names a member (shop/web/3): it, and its settings as it inherits them.
int describe_member(const Session& s, const std::string& app, const std::string& node, const Error& not_a_node) {
  auto member = s.call("GET", "/api/v1/members/" + url_encode(app + "/" + node));
  if (!member) {
    return report(member.error().code == ErrorCode::kNotFound ? not_a_node : member.error());
  }
  auto state = s.call("GET", "/api/v1/applications/" + url_encode(app) + "/operational-state?path=" + url_encode(node));
  if (!state) {
    return report(state.error());
  }
  const json operational = (*state)["nodes"].empty() ? json(nullptr) : (*state)["nodes"][0];
  const json doc = {{"member", *member}, {"operational", operational}};
  if (s.print_structured(doc)) {
    return 0;
  }
  const json& m = *member;
  std::cout << "Member:       " << cell(m["id"]) << "\n"
            << "State:        " << cell(m["state"]) << (m.value("healthy", false) ? " (healthy)" : "") << "\n"
            << "Host:         " << cell(m["host"]) << "\n"
            << "Revision:     " << cell(m["revision"]) << " (version " << cell(m["version"]) << ")\n"
            << "PID:          " << cell(m["pid"]) << "\n"
            << "Maintenance:  " << cell(m.value("maintenance", json("off"))) << "\n";
  if (operational.is_object()) {
    for (const char* setting : {"autoscaling", "autohealing", "maintenance"}) {
      std::cout << "  " << setting << ": " << setting_cell(operational[setting]) << "\n";
    }
  }
  if (!m["healingDelayedSince"].is_null()) {
    std::cout << "Healing delayed since " << cell(m["healingDelayedSince"]) << "\n";
  }
  return 0;
}

int cmd_describe(const Session& s, const std::string& path, const std::string& members_flag) {
  const auto [app, node] = split_app(path);
  if (app.empty()) {
    return report(Error{ErrorCode::kInvalid, "give an application or a node path like shop/web", "PATH"});
  }
  auto bound = parse_bound(members_flag);
  if (!bound) {
    return report(bound.error());
  }
  auto reply = s.call("GET", "/api/v1/applications/" + url_encode(app));
  if (!reply) {
    return report(reply.error());
  }
  json& doc = *reply;
  json tree = json::array();
  for (const auto& n : doc["tree"]) {
    const std::string p = n["path"];
    if (node.empty() || p == node || p.starts_with(node + "/")) {
      tree.push_back(n);
    }
  }
  if (tree.empty()) {
    return describe_member(s, app, node,
                           Error{ErrorCode::kNotFound, "'" + node + "' is not a node of application " + app, "PATH"});
  }
  if (!bound->has_value() || **bound > 0) {
    for (auto& n : tree) {
      if (n.contains("members")) {
        if (auto listed = list_members(s, app, n, *bound); !listed) {
          return report(listed.error());
        }
      }
    }
  }
  doc["tree"] = tree;
  if (s.print_structured(doc)) {
    return 0;
  }
  std::cout << "Application:  " << cell(doc["name"]) << "\n"
            << "Description:  " << cell(doc["description"]) << "\n"
            << "Revision:     " << cell(doc["revision"]) << "\n"
            << "Deployed:     " << cell(doc["deployed"]) << "\n"
            << "Updated:      " << cell(doc["updatedAt"]) << "\n"
            << "Migration:    " << migration_cell(doc.value("migration", json())) << "\n\n";
  std::vector<Row> rows;
  for (const auto& n : tree) {
    const std::string p = n["path"];
    std::string counts = "-";
    std::string load = "-";
    if (n.contains("members")) {
      const json& m = n["members"];
      const json scaled = n.contains("load") ? n["load"]["scaledDesired"] : json(nullptr);
      counts = std::to_string(m.value("count", 0)) + " of " +
               (scaled.is_null() ? cell(m["desired"]) : cell(scaled) + " (autoscaled)") + " (" + cell(m["min"]) + ".." +
               cell(m["max"]) + ")";
      if (n.contains("load")) {
        load = cell(n["load"]["state"]);
        if (n["load"]["average"].is_number()) {
          load += " (" + fmt_load(n["load"]["average"].get<double>()) + ")";
        }
      }
    }
    rows.push_back({p.empty() ? app : app + "/" + p, cell(n["kind"]), setting_cell(n["autoscaling"]),
                    setting_cell(n["autohealing"]), setting_cell(n["maintenance"]), counts, load});
  }
  print_table(std::cout, {"NODE", "KIND", "AUTOSCALING", "AUTOHEALING", "MAINTENANCE", "MEMBERS", "LOAD"}, rows);
  for (const auto& n : tree) {
    if (!n.contains("members")) {
      continue;
    }
    const json& m = n["members"];
    const std::string where = app + "/" + n["path"].get<std::string>();
    std::cout << "\nMembers of " << where << ": " << counts_line(m) << "\n";
    std::vector<Row> listed;
    std::string delayed;
    for (const auto& member : m.value("items", json::array())) {
      const std::string mark = member.value("maintenance", "off");
      listed.push_back({"  " + cell(member["id"]), cell(member["state"]), cell(member["host"]), cell(member["revision"]),
                        cell(member["healthy"]), mark == "off" ? "-" : "maintenance=" + mark});
      if (!member["healingDelayedSince"].is_null()) {
        delayed += "Healing of " + cell(member["id"]) + " (" + cell(member["state"]) + ") delayed since " +
                   cell(member["healingDelayedSince"]) + ": autohealing is off\n";
      }
    }
    if (!listed.empty()) {
      print_table(std::cout, {"  ID", "STATE", "HOST", "REVISION", "HEALTHY", "MARKS"}, listed);
    }
    if (m.value("continue", json()).is_string()) {
      const int64_t rest = m.value("count", 0) - static_cast<int64_t>(listed.size());
      std::cout << "  ... " << (rest > 0 ? std::to_string(rest) + " more" : "more")
                << ": tranche describe " << where << " --members all, or tranche get members " << where << "\n";
    }
    std::cout << delayed;
  }
  std::cout << "\nRecent events:\n";
  if (doc["recentEvents"].empty()) {
    std::cout << "  (none)\n";
  }
  for (const auto& e : doc["recentEvents"]) {
    std::cout << "  " << event_line(e) << '\n';
  }
  return 0;
}

}  // namespace

void add_describe_verb(CLI::App& app, ClientOptions& options, int& exit_code) {
  struct Args {
    std::string path;
    std::string members = "20";
  };
  auto args = std::make_shared<Args>();
  auto* describe = app.add_subcommand(
      "describe", "a node: settings, its members' counts, some members, recent events; or one member");
  describe->add_option("PATH", args->path, "APP, APP/GROUP/.../CLUSTER or a member, APP/.../CLUSTER/N")->required();
  describe->add_option("--members", args->members,
                       "members listed per cluster: a number (default 20, 0: none) or 'all'");
  describe->callback([&options, &exit_code, args] {
    exit_code = cmd_describe(Session(options), args->path, args->members);
  });
}

}  // namespace tranche::cli
