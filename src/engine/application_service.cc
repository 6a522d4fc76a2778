#include "engine/application_service.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/names.h"
#include "common/secrets.h"
#include "common/time_format.h"
#include "engine/command_outcomes.h"
#include "engine/events.h"
#include "engine/migration.h"
#include "engine/operational_state.h"

namespace tranche {

namespace {

using nlohmann::json;

}  // namespace

Result<std::vector<MemberRecord>> ApplicationService::current_members(const std::string& app) const {
  auto members = store_.list_members(MemberQuery{app, std::nullopt, std::nullopt});
  if (members) {
    std::erase_if(*members, [](const MemberRecord& m) { return m.state == "Terminated"; });
  }
  return members;
}

Result<ApplicationService::Current> ApplicationService::load(const std::string& app) const {
  auto record = store_.get_application(app);
  if (!record) {
    return std::unexpected(record.error());
  }
  if (!*record) {
    return fail(ErrorCode::kNotFound, "application '" + app + "' not found");
  }
  auto spec = specs_->get(app, (*record)->current_revision);
  if (!spec) {
    Error e = spec.error();
    if (e.code == ErrorCode::kNotFound) {
      e = Error{ErrorCode::kInternal, "application '" + app + "' has lost its current revision"};
    }
    return std::unexpected(std::move(e));
  }
  return Current{**record, std::move(*spec)};
}

OperationRecord ApplicationService::next_operation(ApplicationRecord& record, std::string kind, json request,
                                                   const Caller& caller) const {
  record.operation_seq += 1;
  record.updated_at = clock_.now();
  OperationRecord op;
  op.id = "op-" + random_hex(8);
  op.app = record.name;
  op.seq = record.operation_seq;
  op.kind = std::move(kind);
  op.request_json = request.dump();
  op.status = "Succeeded";
  op.actor = caller.actor;
  op.created_at = op.updated_at = clock_.now();
  return op;
}

Result<ApplyOutcome> ApplicationService::apply(std::string_view manifest, ManifestFormat format, bool dry_run,
                                               const Caller& caller, const std::optional<std::string>& scope) {
  auto parsed = parse_manifest(manifest, format);
  if (!parsed) {
    return std::unexpected(parsed.error());
  }
  ApplicationSpec& spec = *parsed;
  if (scope && spec.name != *scope) {
    return fail(ErrorCode::kNotFound, "application '" + spec.name + "' not found");
  }
  std::lock_guard lock(commands_);
  // A dry run changes nothing: a locked application still answers it.
  if (!dry_run) {
    if (auto unlocked = refuse_if_locked(store_, spec.name); !unlocked) {
      return std::unexpected(unlocked.error());
    }
  }
  return apply_spec(spec, dry_run, caller, {});
}

Result<ApplyOutcome> ApplicationService::apply_spec(const ApplicationSpec& spec, bool dry_run, const Caller& caller,
                                                    const AmendApply& amend) {
  const TimePoint now = clock_.now();

  auto existing = store_.get_application(spec.name);
  if (!existing) {
    return std::unexpected(existing.error());
  }
  std::optional<Current> current;
  if (*existing) {
    auto loaded = load(spec.name);
    if (!loaded) {
      return std::unexpected(loaded.error());
    }
    current = std::move(*loaded);
  }

  ApplyOutcome outcome;
  outcome.app = spec.name;
  outcome.dry_run = dry_run;
  outcome.created = !current;
  outcome.summary = diff_summary(current ? current->spec.get() : nullptr, spec);
  outcome.changed = outcome.created || !outcome.summary.empty();
  outcome.revision = current ? current->app.current_revision + (outcome.changed ? 1 : 0) : 1;
  const bool redeploy = current && !current->app.deployed;

  if (!outcome.changed && !redeploy) {
    outcome.message = spec.name + " unchanged (revision " + std::to_string(outcome.revision) + ")";
    return outcome;
  }
  if (dry_run) {
    outcome.message = outcome.changed
                          ? "dry run: would " + std::string(outcome.created ? "create " : "store revision ") +
                                (outcome.created ? spec.name + " revision 1" : std::to_string(outcome.revision)) +
                                ": " + outcome.summary
                          : "dry run: would redeploy " + spec.name;
    return outcome;
  }

  ApplicationRecord app = current ? current->app : ApplicationRecord{spec.name, 0, true, 0, 0, now, now};
  WriteBatch batch;
  batch.preconditions.push_back({spec.name, app.version});
  const json request = {{"revision", outcome.revision}, {"summary", outcome.summary}};
  OperationRecord op = next_operation(app, "apply", request, caller);
  app.current_revision = outcome.revision;
  app.deployed = true;

  if (outcome.changed) {
    batch.mutations.push_back(
        PutRevision{{spec.name, outcome.revision, to_json(spec).dump(), caller.actor, outcome.summary, now}});
    batch.mutations.push_back(AppendEvent{make_event(
        now, spec.name, spec.name, "", "RevisionCreated", current ? json(current->app.current_revision) : json(nullptr),
        outcome.revision, "revision " + std::to_string(outcome.revision) + ": " + outcome.summary)});
    outcome.message = spec.name + (outcome.created ? " created" : " changed") + " (revision " +
                      std::to_string(outcome.revision) + "): " + outcome.summary;
  } else {
    outcome.message = spec.name + " redeployed (revision " + std::to_string(outcome.revision) + ")";
  }
  if (redeploy) {
    batch.mutations.push_back(AppendEvent{
        make_event(now, spec.name, spec.name, "", "ApplicationDeployed", false, true, spec.name + " deployed again")});
  }

  // Operational values: drop those of removed nodes, seed new nodes with the
  // manifest's initial values (an operator's later choice is never overwritten).
  auto values = store_.list_operational_values(spec.name);
  if (!values) {
    return std::unexpected(values.error());
  }
  std::set<std::string> old_paths;
  if (current) {
    for (const auto& n : flatten(*current->spec)) {
      old_paths.insert(n.path);
    }
  }
  const auto nodes = flatten(spec);
  for (const auto& v : *values) {
    // A value belongs to a node of the new tree, or to a member of one of its clusters.
    const bool kept = std::any_of(nodes.begin(), nodes.end(), [&](const NodeView& n) {
      return v.path == n.path || (n.cluster && is_below(v.path, n.path));
    });
    if (!kept) {
      batch.mutations.push_back(DeleteOperationalValue{spec.name, v.path, v.setting});
    }
  }
  for (const auto& node : nodes) {
    if (old_paths.contains(node.path) || node.operational == nullptr) {
      continue;
    }
    for (auto [setting, value] : {std::pair{Setting::kAutoscaling, &node.operational->autoscaling},
                                  std::pair{Setting::kAutohealing, &node.operational->autohealing}}) {
      if (value->empty() || find_value(*values, node.path, setting)) {
        continue;
      }
      batch.mutations.push_back(
          PutOperationalValue{{spec.name, node.path, setting, *value, std::nullopt, std::nullopt, caller.actor, now}});
      batch.mutations.push_back(AppendEvent{
          make_event(now, spec.name, full_path(spec.name, node.path), "", "OperationalStateChanged", nullptr, *value,
                     std::string(to_string(setting)) + " " + *value + " from the manifest on " +
                         full_path(spec.name, node.path))});
    }
  }

  // Keep the newest revisionHistoryLimit revisions, and every revision that
  // members still run or that a rollout may roll back to.
  std::string supersedes;  // what the apply's own record says of the apply it supersedes
  if (current) {
    auto members = current_members(spec.name);
    auto revisions = store_.list_revisions(spec.name);
    if (!members || !revisions) {
      return std::unexpected(!members ? members.error() : revisions.error());
    }
    if (outcome.changed) {
      // interactions.h: a new apply supersedes the rollout under way, and the apply that started it.
      const std::string message = "superseded by " + op.id + " (revision " + std::to_string(outcome.revision) +
                                  "): its rollout stops where it is";
      supersedes = end_apply_operations(store_, spec.name, "Superseded", message, &op, now, batch.mutations);
      auto rollout = start_rollout(*current, spec, outcome.revision, *members, caller, now, batch);
      if (!rollout) {
        return std::unexpected(rollout.error());
      }
      outcome.rollout = *rollout;
    }
    std::set<int64_t> in_use = {app.current_revision, current->app.current_revision};
    for (const auto& m : *members) {
      in_use.insert(m.revision);
    }
    const size_t keep = static_cast<size_t>(std::max(spec.revision_history_limit - (outcome.changed ? 1 : 0), 1));
    for (size_t i = keep; i < revisions->size(); ++i) {
      if (!in_use.contains((*revisions)[i].number)) {
        batch.mutations.push_back(DeleteRevision{spec.name, (*revisions)[i].number});
      }
    }
  }
  if (outcome.rollout) {
    outcome.message += "; rollout " + std::to_string(*outcome.rollout) + " started";
    op.status = "Running";  // until the rollout ends (command_outcomes.h)
  }
  outcome.message += supersedes;

  if (amend) {
    amend(outcome, batch);
  }
  op.message = outcome.message;
  outcome.operation_id = op.id;
  batch.mutations.push_back(PutApplication{app});
  batch.mutations.push_back(PutOperation{op});
  batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, spec.name, outcome.message}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  return outcome;
}

Result<json> ApplicationService::undeploy(const std::string& app_name, const Caller& caller) {
  std::lock_guard lock(commands_);
  if (auto unlocked = refuse_if_locked(store_, app_name); !unlocked) {
    return std::unexpected(unlocked.error());
  }
  auto current = load(app_name);
  if (!current) {
    return std::unexpected(current.error());
  }
  ApplicationRecord app = current->app;
  if (!app.deployed) {
    return json{{"application", app_name}, {"deployed", false}, {"message", app_name + " is already undeployed"}};
  }
  const TimePoint now = clock_.now();
  WriteBatch batch;
  batch.preconditions.push_back({app_name, app.version});
  OperationRecord op = next_operation(app, "delete", json::object(), caller);
  app.deployed = false;
  const std::string message = app_name + " undeployed; its history and settings are kept";
  op.message = message;
  // interactions.h: delete cancels a maintenance under way.
  cancel_maintenance_operations(store_, app_name, op, "the application was undeployed", now, batch);
  batch.mutations.push_back(PutApplication{app});
  batch.mutations.push_back(PutOperation{op});
  batch.mutations.push_back(
      AppendEvent{make_event(now, app_name, app_name, "", "ApplicationUndeployed", true, false, message)});
  batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, app_name, message}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  return json{{"application", app_name}, {"deployed", false}, {"operation", op.id}, {"message", message}};
}

Result<json> ApplicationService::list_applications(const std::optional<std::string>& visible) const {
  auto apps = store_.list_applications();
  if (!apps) {
    return std::unexpected(apps.error());
  }
  json items = json::array();
  for (const auto& record : *apps) {
    if (visible && record.name != *visible) {
      continue;
    }
    auto current = load(record.name);
    if (!current) {
      return std::unexpected(current.error());
    }
    auto members = current_members(record.name);
    if (!members) {
      return std::unexpected(members.error());
    }
    int clusters = 0;
    int desired = 0;
    for (const auto& n : flatten(*current->spec)) {
      if (n.cluster) {
        ++clusters;
        desired += n.cluster->members.desired;
      }
    }
    const auto active =
        std::count_if(members->begin(), members->end(), [](const MemberRecord& m) { return m.state == "Active"; });
    auto migration = migration_view(record.name);
    if (!migration) {
      return std::unexpected(migration.error());
    }
    items.push_back({{"name", record.name},
                     {"description", current->spec->description},
                     {"revision", record.current_revision},
                     {"deployed", record.deployed},
                     {"clusters", clusters},
                     {"desired", desired},
                     {"active", active},
                     {"migration", *migration},
                     {"updatedAt", format_rfc3339(record.updated_at)}});
  }
  return json{{"items", items}};
}

Result<ApplicationService::View> ApplicationService::load_view(const std::string& app) const {
  auto current = load(app);
  if (!current) {
    return std::unexpected(current.error());
  }
  auto members = current_members(app);
  if (!members) {
    return std::unexpected(members.error());
  }
  auto values = store_.list_operational_values(app);
  if (!values) {
    return std::unexpected(values.error());
  }
  return View{std::move(*current), std::move(*members), std::move(*values)};
}

Result<json> ApplicationService::list_revisions(const std::string& app_name) const {
  auto current = load(app_name);
  if (!current) {
    return std::unexpected(current.error());
  }
  auto revisions = store_.list_revisions(app_name);
  if (!revisions) {
    return std::unexpected(revisions.error());
  }
  json items = json::array();
  for (const auto& r : *revisions) {
    items.push_back({{"revision", r.number},
                     {"createdAt", format_rfc3339(r.created_at)},
                     {"author", r.author},
                     {"summary", r.summary},
                     {"current", r.number == current->app.current_revision}});
  }
  return json{{"application", app_name}, {"items", items}};
}

Result<json> ApplicationService::get_revision(const std::string& app_name, int64_t number) const {
  auto revision = store_.get_revision(app_name, number);
  if (!revision) {
    return std::unexpected(revision.error());
  }
  if (!*revision) {
    return fail(ErrorCode::kNotFound, "application '" + app_name + "' has no revision " + std::to_string(number));
  }
  const auto& r = **revision;
  return json{{"application", app_name}, {"revision", r.number}, {"createdAt", format_rfc3339(r.created_at)},
              {"author", r.author},      {"summary", r.summary}, {"manifest", json::parse(r.manifest_json)}};
}

Result<json> ApplicationService::get_operation(const std::string& id) const {
  auto op = store_.get_operation(id);
  if (!op) {
    return std::unexpected(op.error());
  }
  if (!*op) {
    return fail(ErrorCode::kNotFound, "operation '" + id + "' not found");
  }
  const auto& o = **op;
  return json{{"id", o.id},
              {"application", o.app},
              {"seq", o.seq},
              {"kind", o.kind},
              {"request", json::parse(o.request_json)},
              {"status", o.status},
              {"message", o.message},
              {"actor", o.actor},
              {"createdAt", format_rfc3339(o.created_at)},
              {"updatedAt", format_rfc3339(o.updated_at)}};
}

}  // namespace tranche
