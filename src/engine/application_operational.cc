// The operational-state verbs of ApplicationService (model.md "Operational
// state"): setting autoscaling, autohealing and maintenance on a node, the
// markers a maintenance leaves on each member, the expiry of time-boxed
// values, and reading a node's explicit and effective values.

#include <algorithm>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/application_service.h"
#include "engine/command_outcomes.h"
#include "engine/events.h"
#include "engine/migration.h"
#include "engine/operational_state.h"

namespace tranche {

namespace {

using nlohmann::json;

json optional_json(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

bool is_at_or_below(const std::string& path, const std::string& node) { return path == node || is_below(path, node); }

std::vector<NodeRef> node_refs(const ApplicationSpec& spec, const std::vector<MemberRecord>& members) {
  std::vector<NodeRef> nodes;
  for (const auto& n : flatten(spec)) {
    nodes.push_back({n.path, std::string(to_string(n.kind))});
  }
  for (const auto& m : members) {
    nodes.push_back({member_path(m), "member"});
  }
  return nodes;
}

}  // namespace

Result<OperationalChange> parse_operational_change(const json& body) {
  if (!body.is_object()) {
    return fail(ErrorCode::kInvalid, "body must be a JSON object");
  }
  OperationalChange change;
  for (const auto& [key, value] : body.items()) {
    auto expect_string = [&]() -> Result<std::string> {
      if (!value.is_string()) {
        return fail(ErrorCode::kInvalid, "expected a string", key);
      }
      return value.get<std::string>();
    };
    auto expect_bool = [&]() -> Result<bool> {
      if (!value.is_boolean()) {
        return fail(ErrorCode::kInvalid, "expected true or false", key);
      }
      return value.get<bool>();
    };
    if (key == "path") {
      auto s = expect_string();
      if (!s) {
        return std::unexpected(s.error());
      }
      change.path = *s;
      for (const auto& part : split_path(change.path)) {
        if (!is_valid_name(part) && !std::all_of(part.begin(), part.end(), ::isdigit)) {
          return fail(ErrorCode::kInvalid, "'" + part + "' is not a valid node name", "path");
        }
      }
      // Normalize "a//b/" to "a/b".
      std::string normalized;
      for (const auto& part : split_path(change.path)) {
        normalized += (normalized.empty() ? "" : "/") + part;
      }
      change.path = normalized;
    } else if (auto setting = setting_from_string(key)) {
      auto s = expect_string();
      if (!s) {
        return std::unexpected(s.error());
      }
      if (!is_allowed_value(*setting, *s)) {
        return fail(ErrorCode::kInvalid,
                    "'" + *s + "' is not a value of " + key +
                        (*setting == Setting::kMaintenance ? " (off, restart, replace)" : " (on, off)"),
                    key);
      }
      (*setting == Setting::kAutoscaling   ? change.autoscaling
       : *setting == Setting::kAutohealing ? change.autohealing
                                           : change.maintenance) = *s;
    } else if (key == "propagate" || key == "allAtOnce") {
      auto b = expect_bool();
      if (!b) {
        return std::unexpected(b.error());
      }
      (key == "propagate" ? change.propagate : change.all_at_once) = *b;
    } else if (key == "for") {
      auto s = expect_string();
      if (!s) {
        return std::unexpected(s.error());
      }
      auto d = parse_duration(*s);
      if (!d) {
        return fail(ErrorCode::kInvalid, d.error().message, "for");
      }
      change.duration = *d;
    } else {
      return fail(ErrorCode::kInvalid, "unknown field '" + key + "'", key);
    }
  }
  if (!change.autoscaling && !change.autohealing && !change.maintenance) {
    return fail(ErrorCode::kInvalid, "give at least one of autoscaling, autohealing, maintenance");
  }
  return change;
}

Result<json> ApplicationService::set_operational_state(const std::string& app_name, const OperationalChange& change,
                                                       const Caller& caller) {
  std::lock_guard lock(commands_);
  if (auto unlocked = refuse_if_locked(store_, app_name); !unlocked) {
    return std::unexpected(unlocked.error());
  }
  auto current = load(app_name);
  if (!current) {
    return std::unexpected(current.error());
  }
  auto members = current_members(app_name);
  if (!members) {
    return std::unexpected(members.error());
  }
  const auto nodes = node_refs(*current->spec, *members);
  if (std::none_of(nodes.begin(), nodes.end(), [&](const NodeRef& n) { return n.path == change.path; })) {
    return fail(ErrorCode::kNotFound, "'" + change.path + "' is not a node of application " + app_name, "path");
  }
  auto values = store_.list_operational_values(app_name);
  if (!values) {
    return std::unexpected(values.error());
  }

  const TimePoint now = clock_.now();
  const std::string where = full_path(app_name, change.path);
  ApplicationRecord app = current->app;
  WriteBatch batch;
  batch.preconditions.push_back({app_name, app.version});
  json request = {{"path", change.path}, {"propagate", change.propagate}, {"allAtOnce", change.all_at_once}};
  if (change.duration) {
    request["for"] = format_duration(*change.duration);
  }
  json changes = json::array();
  std::vector<std::string> notes;

  for (Setting setting : kAllSettings) {
    const std::optional<std::string>& wanted = setting == Setting::kAutoscaling   ? change.autoscaling
                                               : setting == Setting::kAutohealing ? change.autohealing
                                                                                  : change.maintenance;
    if (!wanted) {
      continue;
    }
    const std::string name(to_string(setting));
    request[name] = *wanted;
    const bool maintenance_run = setting == Setting::kMaintenance && *wanted != "off";
    const bool has_members = std::any_of(members->begin(), members->end(), [&](const MemberRecord& m) {
      return is_at_or_below(member_path(m), change.path);
    });
    if (maintenance_run && !has_members) {
      // model.md: maintenance acts on the members that exist now; with none,
      // it completes at once and says so.
      const std::string note = "maintenance " + *wanted + " on " + where + " completed at once: no members";
      notes.push_back(note);
      batch.mutations.push_back(AppendEvent{make_event(now, app_name, full_path(app_name, change.path), "",
                                                       "OperationalStateChanged", "off", "off", note)});
      changes.push_back({{"path", change.path}, {"setting", name}, {"from", "off"}, {"to", "off"}, {"note", note}});
      continue;
    }

    const OperationalValueRecord* old = find_value(*values, change.path, setting);
    // The flag belongs to this value: a time box reverts to the previous value
    // without it.
    const bool all_at_once = maintenance_run && change.all_at_once;
    OperationalValueRecord record{app_name,     change.path,  setting, *wanted,    std::nullopt,
                                  std::nullopt, caller.actor, now,     all_at_once};
    const std::string shown = *wanted + (all_at_once ? " (all at once)" : "");
    std::string until;
    if (change.duration) {
      record.expires_at = now + *change.duration;
      // A time box on top of a time box still reverts to the last permanent value.
      record.previous_value = old ? (old->expires_at ? old->previous_value : std::optional(old->value)) : std::nullopt;
      until = " for " + format_duration(*change.duration) + ", until " + format_rfc3339(*record.expires_at);
    }
    batch.mutations.push_back(PutOperationalValue{record});
    const json from = old ? json(old->value) : json(nullptr);
    batch.mutations.push_back(
        AppendEvent{make_event(now, app_name, full_path(app_name, change.path), "", "OperationalStateChanged", from,
                               *wanted, name + " " + shown + " on " + where + until)});
    changes.push_back({{"path", change.path}, {"setting", name}, {"from", from}, {"to", *wanted}});
    if (all_at_once) {
      changes.back()["allAtOnce"] = true;
    }

    if (change.propagate) {
      for (const auto& v : *values) {
        if (v.setting != setting || !is_below(v.path, change.path)) {
          continue;
        }
        batch.mutations.push_back(DeleteOperationalValue{app_name, v.path, setting});
        batch.mutations.push_back(AppendEvent{
            make_event(now, app_name, full_path(app_name, v.path), "", "OperationalStateChanged", v.value, nullptr,
                       name + " on " + full_path(app_name, v.path) + " now inherits " + *wanted + " from " + where)});
        changes.push_back({{"path", v.path}, {"setting", name}, {"from", v.value}, {"to", nullptr}});
      }
    }
    if (setting == Setting::kMaintenance) {
      mark_for_maintenance(app_name, change.path, *wanted, all_at_once, *members, caller, now, batch);
    }
  }

  OperationRecord op = next_operation(app, "operational-state", request, caller);
  op.message = notes.empty() ? "operational state of " + where + " changed" : notes.front();
  if (change.maintenance) {
    op.message += supersede_maintenance(store_, app_name, change.path, *change.maintenance, op, now, batch);
    if (*change.maintenance != "off" && notes.empty()) {
      // Under way until the fleet has taken every member through it.
      op.status = "Running";
    }
  }
  batch.mutations.push_back(PutApplication{app});
  batch.mutations.push_back(PutOperation{op});
  batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, where, request.dump()}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  json out = {
      {"application", app_name}, {"operation", op.id}, {"seq", op.seq}, {"changes", changes}, {"message", op.message}};
  return out;
}

// model.md: maintenance acts on the members that exist when the command is
// accepted. Each gets its own explicit value as a durable marker, which the
// fleet clears when the member has resumed (a marker carries --all-at-once,
// the pacing the fleet follows for that member); "off" clears the markers of
// members not yet taken into maintenance (those in it finish and resume).
void ApplicationService::mark_for_maintenance(const std::string& app, const std::string& path, const std::string& value,
                                              bool all_at_once, const std::vector<MemberRecord>& members,
                                              const Caller& caller, TimePoint now, WriteBatch& batch) const {
  for (const auto& m : members) {
    const std::string node = member_path(m);
    if (!is_at_or_below(node, path) || node == path) {
      continue;
    }
    if (value != "off") {
      batch.mutations.push_back(PutOperationalValue{
          {app, node, Setting::kMaintenance, value, std::nullopt, std::nullopt, caller.actor, now, all_at_once}});
    } else if (m.state != "Maintenance") {
      batch.mutations.push_back(DeleteOperationalValue{app, node, Setting::kMaintenance});
    }
  }
}

Result<int> ApplicationService::expire_operational_values() {
  std::lock_guard lock(commands_);
  const TimePoint now = clock_.now();
  auto due = store_.list_expiring_values(now);
  if (!due) {
    return std::unexpected(due.error());
  }
  if (due->empty()) {
    return 0;
  }
  WriteBatch batch;
  const Caller expiry{"expiry", "expire operational values"};
  std::map<std::string, ApplicationRecord> operated;  // applications given an operation by the expiry
  for (const auto& v : *due) {
    const std::string name(to_string(v.setting));
    if (v.setting == Setting::kMaintenance) {
      // A maintenance whose time box ends is ended as the operator's own
      // command of the value it returns to would end it: members not yet
      // taken in are left, those in Maintenance finish, and its operation
      // is Superseded, naming the expiry's.
      auto app = operated.find(v.app);
      if (app == operated.end()) {
        auto record = store_.get_application(v.app);
        if (!record) {
          return std::unexpected(record.error());
        }
        if (!*record) {
          return fail(ErrorCode::kInternal, "operational value of '" + v.app + "', which does not exist");
        }
        app = operated.emplace(v.app, **record).first;
      }
      auto members = current_members(v.app);
      if (!members) {
        return std::unexpected(members.error());
      }
      const std::string back_to = v.previous_value.value_or("off");
      mark_for_maintenance(v.app, v.path, back_to, false, *members, expiry, now, batch);
      OperationRecord op = next_operation(app->second, "operational-state",
                                          {{"path", v.path}, {"maintenance", back_to}, {"expired", v.value}}, expiry);
      op.message = "maintenance " + v.value + " on " + full_path(v.app, v.path) + " expired; back to " + back_to;
      op.message += supersede_maintenance(store_, v.app, v.path, back_to, op, now, batch);
      if (back_to != "off") {
        op.status = "Running";
      }
      batch.mutations.push_back(PutOperation{op});
    }
    if (v.previous_value) {
      batch.mutations.push_back(PutOperationalValue{
          {v.app, v.path, v.setting, *v.previous_value, std::nullopt, std::nullopt, "expiry", now}});
    } else {
      batch.mutations.push_back(DeleteOperationalValue{v.app, v.path, v.setting});
    }
    const auto lasted = std::chrono::duration_cast<std::chrono::milliseconds>(*v.expires_at - v.set_at);
    const std::string back = v.previous_value ? *v.previous_value + " (explicit)" : "the inherited value";
    batch.mutations.push_back(AppendEvent{make_event(
        now, v.app, full_path(v.app, v.path), "", "OperationalStateExpired", v.value, optional_json(v.previous_value),
        name + " " + v.value + " on " + full_path(v.app, v.path) + " expired after " + format_duration(lasted) +
            "; back to " + back)});
  }
  for (auto& [name, app] : operated) {
    batch.mutations.push_back(PutApplication{std::move(app)});
  }
  batch.mutations.push_back(
      AppendAudit{{0, now, "tranche", "expire operational values", "", std::to_string(due->size()) + " expired"}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  return static_cast<int>(due->size());
}

Result<json> ApplicationService::operational_state(const std::string& app_name,
                                                   const std::optional<std::string>& path) const {
  auto view = load_view(app_name);
  if (!view) {
    return std::unexpected(view.error());
  }
  auto nodes = node_refs(*view->current.spec, view->members);
  if (path) {
    if (std::none_of(nodes.begin(), nodes.end(), [&](const NodeRef& n) { return n.path == *path; })) {
      return fail(ErrorCode::kNotFound, "'" + *path + "' is not a node of application " + app_name, "path");
    }
    std::erase_if(nodes, [&](const NodeRef& n) { return !is_at_or_below(n.path, *path); });
  }
  json out = json::array();
  for (const auto& node : resolve_all(view->values, nodes)) {
    out.push_back(to_json(node));
  }
  return json{{"application", app_name}, {"nodes", out}};
}

}  // namespace tranche
