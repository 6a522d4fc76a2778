// What a simulated host does with what the controller sends: acks every
// command at once and answers start, stop, logs, in-place update and
// maintenance as the real agent does, without processes or hooks (the
// update and maintenance take exactly --update-time and --maintenance-time
// on its shard's DueWork), replays results until they are
// acknowledged, and records when maintenance commands arrived.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include "simulated_host.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <variant>

#include <nlohmann/json.hpp>

#include "protocol/frames.h"
#include "simulator_options.h"

namespace tranche::sim {

void SimHost::on_frame(const std::string& text) {
  if (killed_) {
    return;  // --kill-mode silent: the connection is open, nobody listens
  }
  for (const std::string_view message : frame_messages(text)) {
    if (auto command = shard_.commands.read(message)) {
      on_command(*command);
    } else if (auto ack = read_ack(message)) {
      on_ack(std::string(*ack));
    } else {
      for (const auto& read : protocol::parse_frame(message).messages) {
        if (read) {
          on_message(read->first, read->second);
        }
      }
    }
  }
}

// The controller has a result: no need to replay it.
void SimHost::on_ack(const std::string& id) {
  if (unacked_results_.erase(id) > 0) {
    shard_.counters.results_acked.fetch_add(1, std::memory_order_relaxed);
  }
}

void SimHost::on_message(const std::string& type, const nlohmann::json& body) {
  if (type == "command") {
    if (auto command = protocol::parse_command(body)) {
      on_command(*command);
    } else if (auto header = protocol::parse_command_header(body)) {
      // As the real agent: a command it cannot read is answered, not dropped.
      shard_.counters.unknown_commands.fetch_add(1, std::memory_order_relaxed);
      send(protocol::to_json(protocol::Ack{header->id}).dump());
      complete(header->id, false, "malformed " + header->type + " command: " + command.error().describe(), {});
    }
  } else if (type == "ack") {
    if (auto ack = protocol::parse_ack(body)) {
      on_ack(ack->id);
    }
  } else if (type == "error") {
    auto error = protocol::parse_error_message(body);
    std::fprintf(stderr, "simulator: %s: controller: %s\n", hostname_.c_str(),
                 (error ? error->message : error.error().describe()).c_str());
  }
}

// Sends a command's result and keeps it until the controller acknowledges
// it; returns the text sent.
std::string SimHost::complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data) {
  std::string text = protocol::to_json(protocol::CommandResult{id, ok, std::nullopt, message, std::move(data)}).dump();
  unacked_results_[id] = text;
  shard_.counters.results_sent.fetch_add(1, std::memory_order_relaxed);
  send(text);
  return text;
}

// The real agent says "healthy" when the first probe of a declared check
// passes; a simulated probe passes at once. Without a check the controller
// learns it from the next heartbeat, as with the real agent.
void SimHost::send_healthy(const std::string& member) {
  shard_.counters.healthy_events.fetch_add(1, std::memory_order_relaxed);
  send(protocol::to_json(protocol::AgentEvent{"healthy", member, std::nullopt, "health check passing"}).dump());
}

// A fake port for each port name the spec declares.
std::map<std::string, int> SimHost::fake_ports(const std::vector<std::string>& names) {
  std::map<std::string, int> ports;
  for (const auto& name : names) {
    ports[name] = 20000 + (shard_.next_port++ % 40000);
  }
  return ports;
}

void SimHost::on_command(const protocol::Command& command) {
  Counters& c = shard_.counters;
  c.commands.fetch_add(1, std::memory_order_relaxed);
  const std::string type = command.type();
  if (type == "maintenance") {
    // Arrival before anything is sent back: when the agent has the command.
    const int64_t now = wall_ms();
    if (arrivals_.count.fetch_add(1, std::memory_order_relaxed) == 0) {
      arrivals_.first_ms.store(now, std::memory_order_relaxed);
    }
    arrivals_.last_ms.store(now, std::memory_order_relaxed);
  }
  send(protocol::to_json(protocol::Ack{command.id}).dump());
  if (auto it = unacked_results_.find(command.id); it != unacked_results_.end()) {
    if (c.redeliveries.fetch_add(1, std::memory_order_relaxed) < 5) {
      std::fprintf(stderr, "simulator: %s: command %s delivered again before its result was acknowledged\n",
                   hostname_.c_str(), command.id.c_str());
    }
    send(it->second);  // the outcome again, as the real agent does
    return;
  }
  if (const auto* spec = std::get_if<protocol::StartSpec>(&command.spec)) {
    c.starts.fetch_add(1, std::memory_order_relaxed);
    auto it = members_.find(command.member);
    if (it != members_.end()) {
      // Already ours (a resend after a reconnect): the same answer again.
      if (it->second.state == "Running") {
        complete(command.id, true, "already running", protocol::ProcessStarted{it->second.pid, it->second.ports});
      }
      return;
    }
    SimMember m;
    m.revision = spec->revision;
    m.pid = shard_.next_pid++;
    m.ports = fake_ports(spec->ports);
    m.has_health = spec->health.has_value();
    m.state = shard_.options.start_delay.count() > 0 ? "Starting" : "Running";
    const bool delayed = m.state == "Starting";
    const bool has_health = m.has_health;
    const protocol::ProcessStarted data{m.pid, m.ports};
    members_[command.member] = std::move(m);
    c.members.fetch_add(1, std::memory_order_relaxed);
    if (delayed) {
      shard_.due.after(shard_.options.start_delay,
                       [this, id = command.id, member = command.member](auto) { finish_start(id, member); });
    } else {
      complete(command.id, true, "started", data);
      if (has_health) {
        send_healthy(command.member);
      }
    }
  } else if (type == "update") {
    on_update(command);
  } else if (type == "maintenance") {
    on_maintenance(command);
  } else if (type == "stop") {
    c.stops.fetch_add(1, std::memory_order_relaxed);
    const bool had = members_.erase(command.member) > 0;
    if (had) {
      c.members.fetch_sub(1, std::memory_order_relaxed);
    }
    complete(command.id, true, had ? "stopped" : "not running", {});
  } else if (type == "logs") {
    c.logs.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, true, "no output", protocol::LogOutput{});
  }
}

void SimHost::finish_start(const std::string& command_id, const std::string& member) {
  auto it = members_.find(member);
  if (it == members_.end() || it->second.state != "Starting") {
    return;  // stopped meanwhile
  }
  it->second.state = "Running";
  complete(command_id, true, "started", protocol::ProcessStarted{it->second.pid, it->second.ports});
  if (it->second.has_health) {
    send_healthy(member);
  }
}

// updates.md, "method: in-place", as the real agent answers it: refused
// unless the member runs here and is Running; otherwise Updating (in
// heartbeats: not healthy) for exactly --update-time, then Running on the
// spec's revision with a fresh pid. Idempotent by command id: an update in
// progress is not started again, a finished one gets the same result again.
void SimHost::on_update(const protocol::Command& command) {
  Counters& c = shard_.counters;
  auto it = members_.find(command.member);
  if (it != members_.end() && it->second.update_id == command.id) {
    c.update_duplicates.fetch_add(1, std::memory_order_relaxed);
    return;  // its result follows when the update ends
  }
  if (it != members_.end() && it->second.done_update_id == command.id) {
    c.update_duplicates.fetch_add(1, std::memory_order_relaxed);
    send(it->second.done_update_result);
    return;
  }
  if (it == members_.end() || it->second.state != "Running") {
    c.updates_refused.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, false,
             it == members_.end() ? "member is not running here"
                                  : "member is " + it->second.state + ", not Running: update refused",
             {});
    return;
  }
  c.updates.fetch_add(1, std::memory_order_relaxed);
  it->second.state = "Updating";
  it->second.update_id = command.id;
  shard_.due.after(
      shard_.options.update_time,
      [this, id = command.id, member = command.member, spec = std::get<protocol::UpdateSpec>(command.spec).target,
       arrived_ms = shard_.options.update_trace.empty() ? 0 : wall_ms()](Clock::time_point due) {
        finish_update(id, member, spec, arrived_ms, due);
      });
}

void SimHost::finish_update(const std::string& command_id, const std::string& member, const protocol::StartSpec& spec,
                            int64_t arrived_ms, Clock::time_point due) {
  auto it = members_.find(member);
  if (it == members_.end() || it->second.update_id != command_id) {
    return;  // stopped meanwhile: the stop answered for it
  }
  Counters& c = shard_.counters;
  const int64_t lag = std::chrono::duration_cast<milliseconds>(Clock::now() - due).count();
  c.update_lag_ms[static_cast<size_t>(std::clamp<int64_t>(lag, 0, kLagBuckets - 1))] += 1;
  if (lag > c.max_update_lag_ms.load(std::memory_order_relaxed)) {
    c.max_update_lag_ms.store(lag, std::memory_order_relaxed);
  }
  SimMember& m = it->second;
  m.revision = spec.revision;
  m.pid = shard_.next_pid++;
  m.ports = fake_ports(spec.ports);
  m.has_health = spec.health.has_value();
  m.state = "Running";
  m.update_id.clear();
  const std::string message = "updated to revision " + std::to_string(m.revision) + " (version " + spec.version + ")";
  m.done_update_id = command_id;
  m.done_update_result = complete(command_id, true, message, protocol::ProcessStarted{m.pid, m.ports});
  c.updates_done.fetch_add(1, std::memory_order_relaxed);
  if (m.has_health) {
    send_healthy(member);
  }
  if (!shard_.options.update_trace.empty()) {
    shard_.update_trace.emplace_back(arrived_ms, wall_ms());
  }
}

// model.md, "maintenance restart", as the real agent answers it (without a
// hook or a journal): refused unless the member runs here and is Running;
// otherwise Maintenance (in heartbeats: not healthy) for exactly
// --maintenance-time, then Running with a fresh pid, the result with pid and
// ports, and a `resumed` event. A known id is not started again.
void SimHost::on_maintenance(const protocol::Command& command) {
  Counters& c = shard_.counters;
  auto it = members_.find(command.member);
  if (it != members_.end() && it->second.maintenance_id == command.id) {
    c.maintenance_duplicates.fetch_add(1, std::memory_order_relaxed);
    return;  // in progress, or done and its result is in unacked_results_ until acked
  }
  if (it == members_.end() || it->second.state != "Running") {
    c.maintenances_refused.fetch_add(1, std::memory_order_relaxed);
    complete(command.id, false, "member is not running here", {});
    return;
  }
  c.maintenances.fetch_add(1, std::memory_order_relaxed);
  it->second.state = "Maintenance";
  it->second.maintenance_id = command.id;
  shard_.due.after(shard_.options.maintenance_time,
                   [this, id = command.id, member = command.member](auto) { finish_maintenance(id, member); });
}

void SimHost::finish_maintenance(const std::string& command_id, const std::string& member) {
  auto it = members_.find(member);
  if (it == members_.end() || it->second.maintenance_id != command_id || it->second.state != "Maintenance") {
    return;  // stopped meanwhile
  }
  SimMember& m = it->second;
  m.pid = shard_.next_pid++;
  m.state = "Running";
  complete(command_id, true, "no maintenance hook", protocol::ProcessStarted{m.pid, m.ports});
  send(protocol::to_json(protocol::AgentEvent{"resumed", member, std::nullopt, "no maintenance hook"}).dump());
  shard_.counters.maintenances_done.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace tranche::sim
