#include "engine/command_outcomes.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "engine/events.h"
#include "engine/operational_state.h"
#include "engine/reconcile/interactions.h"

namespace tranche {

namespace {

using nlohmann::json;

Command maintenance_command(const std::string& value) {
  return value == "restart"   ? Command::kMaintenanceRestart
         : value == "replace" ? Command::kMaintenanceReplace
                              : Command::kMaintenanceOff;
}

// The Running maintenance operations of `app` with their requests.
std::vector<std::pair<OperationRecord, json>> running_maintenance(Store& store, const std::string& app) {
  std::vector<std::pair<OperationRecord, json>> out;
  auto running = store.list_operations(app, "Running");
  if (!running) {
    // The command still goes through; only its record of an earlier one is missing.
    spdlog::warn("{}: running operations not read: {}", app, running.error().describe());
    return out;
  }
  for (OperationRecord& op : *running) {
    json request = json::parse(op.request_json, nullptr, false);
    if (op.kind == "operational-state" && request.is_object() && request.contains("maintenance")) {
      out.emplace_back(std::move(op), std::move(request));
    }
  }
  return out;
}

void end_operation(OperationRecord op, const std::string& status, const std::string& message, TimePoint now,
                   std::vector<Mutation>& out) {
  op.status = status;
  op.message = message;
  op.updated_at = now;
  out.push_back(PutOperation{std::move(op)});
}

void end_operation(OperationRecord op, const std::string& status, const std::string& message, TimePoint now,
                   WriteBatch& batch) {
  end_operation(std::move(op), status, message, now, batch.mutations);
}

}  // namespace

std::string supersede_maintenance(Store& store, const std::string& app, const std::string& path,
                                  const std::string& value, const OperationRecord& by, TimePoint now,
                                  WriteBatch& batch) {
  std::string said;
  for (auto& [op, request] : running_maintenance(store, app)) {
    const std::string node = request.value("path", "");
    if (node != path && !is_below(node, path)) {
      continue;  // a node above: only part of it is superseded, and it goes on
    }
    const std::string earlier = request.value("maintenance", "");
    const std::string where = full_path(app, node);
    const Interaction& row = interaction(maintenance_command(earlier), maintenance_command(value));
    const std::string message = "maintenance " + earlier + " of " + where + " superseded by " + by.id +
                                " (maintenance " + value + " on " + full_path(app, path) +
                                "): " + std::string(row.outcome);
    batch.mutations.push_back(AppendEvent{make_event(now, app, where, "", "CommandSuperseded", op.id, by.id, message)});
    said += "; supersedes " + op.id + " (maintenance " + earlier + " of " + where + ")";
    end_operation(std::move(op), "Superseded", message, now, batch);
  }
  return said;
}

std::string end_apply_operations(Store& store, const std::string& app, const std::string& status,
                                 const std::string& message, const OperationRecord* by, TimePoint now,
                                 std::vector<Mutation>& out) {
  auto running = store.list_operations(app, "Running");
  if (!running) {
    spdlog::warn("{}: running operations not read: {}", app, running.error().describe());
    return "";
  }
  std::string said;
  for (OperationRecord& op : *running) {
    if (op.kind != "apply") {
      continue;
    }
    if (by) {
      out.push_back(AppendEvent{make_event(now, app, app, "", "CommandSuperseded", op.id, by->id, message)});
      said += "; supersedes " + op.id;
    }
    end_operation(std::move(op), status, message, now, out);
  }
  return said;
}

void cancel_maintenance_operations(Store& store, const std::string& app, const OperationRecord& by,
                                   const std::string& why, TimePoint now, WriteBatch& batch) {
  for (auto& [op, request] : running_maintenance(store, app)) {
    const std::string where = full_path(app, request.value("path", ""));
    const std::string message =
        "maintenance " + request.value("maintenance", "") + " of " + where + " cancelled by " + by.id + ": " + why;
    batch.mutations.push_back(AppendEvent{make_event(now, app, where, "", "CommandSuperseded", op.id, by.id, message)});
    end_operation(std::move(op), "Cancelled", message, now, batch);
  }
}

void finish_maintenance_operations(Store& store, const std::string& app, const OperationalValueRecord& value,
                                   const std::string& status, const std::string& message, TimePoint now,
                                   WriteBatch& batch) {
  for (auto& [op, request] : running_maintenance(store, app)) {
    if (request.value("path", "") == value.path && request.value("maintenance", "") == value.value) {
      end_operation(std::move(op), status, message, now, batch);
    }
  }
}

size_t finish_member_maintenance_operations(
    Store& store, const std::string& app, const std::vector<OperationalValueRecord>& values,
    const std::set<std::string>& nodes,
    const std::function<MemberMaintenanceOutcome(const std::string& path, const std::string& value)>& outcome,
    TimePoint now, WriteBatch& batch) {
  size_t running = 0;
  for (auto& [op, request] : running_maintenance(store, app)) {
    const std::string path = request.value("path", "");
    const std::string value = request.value("maintenance", "");
    const bool marked = std::any_of(values.begin(), values.end(), [&](const OperationalValueRecord& v) {
      return v.setting == Setting::kMaintenance && v.path == path && v.value != "off";
    });
    if (nodes.contains(path) || marked) {
      ++running;
      continue;
    }
    const MemberMaintenanceOutcome ended = outcome(path, value);
    batch.mutations.push_back(AppendEvent{make_event(now, app, full_path(app, path), "", "OperationalStateChanged",
                                                     value, nullptr, ended.message)});
    end_operation(std::move(op), ended.status, ended.message, now, batch);
  }
  return running;
}

}  // namespace tranche
