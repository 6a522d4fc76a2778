// Commands out: what each member's state calls for, built from its
// cluster's spec, and sent once its change is durable (fleet.h, "Group
// commit"); during a dispatch each agent's commands are collected and handed
// to its connection at once.

#include "engine/fleet/fleet.h"

#include "common/time_format.h"

namespace tranche {

protocol::StartSpec Fleet::start_spec(const MemberEntry& m, const ClusterSpec& c) const {
  protocol::StartSpec spec{m.record.app,       m.record.cluster, m.record.revision,  c.artifact.version,
                           c.artifact.command, c.artifact.env,   c.artifact.workdir, c.ports};
  const auto checked = [&](decltype(protocol::HealthCheckSpec::probe) probe) {
    return protocol::HealthCheckSpec{std::move(probe), c.health.interval_seconds, c.health.timeout_seconds,
                                     c.health.unhealthy_threshold};
  };
  switch (c.health.kind) {
    case HealthCheck::Kind::kHttp:
      spec.health = checked(protocol::HttpEndpoint{c.health.port, c.health.path});
      break;
    case HealthCheck::Kind::kTcp:
      spec.health = checked(protocol::TcpProbe{c.health.port});
      break;
    case HealthCheck::Kind::kExec:
      spec.health = checked(protocol::ExecProbe{c.health.exec});
      break;
    case HealthCheck::Kind::kNone:
      break;
  }
  if (c.stats) {
    spec.stats = protocol::StatsSpec{{c.stats->port, c.stats->path}};
  }
  spec.drain_hook = c.hooks.drain;
  return spec;
}

void Fleet::send(HostEntry& h, const protocol::Command& command) {
  if (h.link) {
    send(h, protocol::to_json(command).dump());
  }
}

void Fleet::send(HostEntry& h, std::string text) {
  if (!h.link) {
    return;
  }
  if (!collecting_) {
    h.link->send(std::move(text));
    return;
  }
  Outgoing& out = outbox_[h.link.get()];
  if (!out.link) {
    out.link = h.link;
  }
  out.messages.push_back(std::move(text));
  // The connections write what is collected so far while the rest is built.
  if (++collected_ >= kCollectedPerHandOff) {
    send_collected();
    collecting_ = true;
  }
}

void Fleet::send_collected() {
  collecting_ = false;
  collected_ = 0;
  spec_texts_.clear();
  for (auto& [raw, out] : outbox_) {
    out.link->send_all(std::move(out.messages));
  }
  outbox_.clear();
}

// start_spec() reads only the member's application, cluster and revision.
template <class MakeSpec>
const protocol::SpecText& Fleet::spec_text(char kind, const MemberEntry& m, const MakeSpec& make) {
  std::string key = m.record.app;
  key += '\n';
  key += m.record.cluster;
  key += '\n';
  key += std::to_string(m.record.revision);
  key += kind;
  auto it = spec_texts_.find(key);
  if (it == spec_texts_.end()) {
    it = spec_texts_.emplace(std::move(key), protocol::spec_text(make())).first;
  }
  return it->second;
}

// The command that the member's current state calls for, once per link.
void Fleet::send_outstanding(MemberEntry& m) {
  if (m.command_sent) {
    return;
  }
  auto host = hosts_.find(m.record.host);
  if (host == hosts_.end() || !host->second.link) {
    return;
  }
  // A hook of the member's cluster; none when its revision cannot be read.
  const auto hook = [&](const std::vector<std::string> Hooks::*which) {
    const ClusterSpec* spec = cluster_spec(m);
    return spec ? spec->hooks.*which : std::vector<std::string>{};
  };
  const int64_t grace = options_.stop_grace.count();
  if (m.state == MemberState::kStarting && m.record.pid) {
    // Started already: its start's result is in, or the agent started it
    // itself (an in-place update, a maintenance restart, a host back with it
    // running). A start would only bring back the first start's result.
  } else if (m.state == MemberState::kStarting) {
    const ClusterSpec* spec = cluster_spec(m);
    if (!spec) {
      return;
    }
    const auto& text = spec_text('s', m, [&] { return start_spec(m, *spec); });
    send(host->second, protocol::command_text("start:" + m.record.id, m.record.id, text));
  } else if ((m.state == MemberState::kMaintenance || m.state == MemberState::kUpdating ||
              m.state == MemberState::kStopping) &&
             !out_of_traffic(m)) {
    return;  // its load balancer still sends it requests: drained first
  } else if (m.state == MemberState::kMaintenance) {
    const auto& text =
        spec_text('m', m, [&] { return protocol::MaintenanceSpec{grace, hook(&Hooks::maintenance)}; });
    send(host->second, protocol::command_text(maintenance_command_id(m), m.record.id, text));
  } else if (m.state == MemberState::kUpdating) {
    const ClusterSpec* spec = cluster_spec(m);
    if (!spec) {
      return;
    }
    const auto& text =
        spec_text('u', m, [&] { return protocol::UpdateSpec{start_spec(m, *spec), spec->hooks.update, grace}; });
    send(host->second, protocol::command_text(update_command_id(m), m.record.id, text));
  } else if (m.state == MemberState::kStopping) {
    const auto& text = spec_text('x', m, [&] { return protocol::StopSpec{grace, hook(&Hooks::drain)}; });
    send(host->second, protocol::command_text("stop:" + m.record.id, m.record.id, text));
  } else {
    return;
  }
  m.command_sent = true;
}

// Unique per maintenance of a member: the time it entered Maintenance.
std::string Fleet::maintenance_command_id(const MemberEntry& m) {
  return "maintenance:" + m.record.id + ":" + std::to_string(to_unix_millis(m.record.updated_at));
}

}  // namespace tranche
