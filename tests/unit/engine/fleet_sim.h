#pragma once
// A small fleet for scenario tests: the real Fleet and ApplicationService on
// an in-memory store and a manual clock, with simulated agents that answer
// every command the way tranche-agent does (start, stop and update succeed;
// a maintenance hook may be held "running" until the test releases it) and
// report their members in heartbeats: healthy, unless the member's artifact
// version is one the test called broken. Agents and the controller can be
// killed and come back (the controller from the store, agents with a hello
// that lists what they run), so a test can interleave commands with faults.

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/application_service.h"
#include "engine/fleet/fleet.h"
#include "fake_agent_link.h"

namespace tranche {

class FleetSim {
 public:
  explicit FleetSim(int hosts = 2) {
    store_ = std::move(open_sqlite_store({":memory:"}).value());
    apps_ = std::make_unique<ApplicationService>(*store_, clock_);
    start_controller();
    for (int i = 0; i < hosts; ++i) {
      Agent agent;
      JoinedHost joined = join_host(*fleet_, "h" + std::to_string(i));
      agent.id = joined.id;
      agent.token = joined.token;
      agent.link = joined.link;
      agents_.push_back(std::move(agent));
    }
  }

  Store& store() { return *store_; }
  ApplicationService& apps() { return *apps_; }
  Fleet& fleet() { return *fleet_; }
  ManualClock& clock() { return clock_; }
  const std::string& host(size_t i) const { return agents_.at(i).id; }

  Result<ApplyOutcome> apply(const std::string& yaml) {
    return apps_->apply(yaml, ManifestFormat::kYaml, false, {"t", "t"});
  }
  // PUT /operational-state; the answer (operation id, changes, message).
  Result<nlohmann::json> set(const nlohmann::json& body, const std::string& app = "shop") {
    auto change = parse_operational_change(body);
    if (!change) {
      return std::unexpected(change.error());
    }
    return apps_->set_operational_state(app, *change, {"t", "t"});
  }

  // Members of this artifact version never pass their health check.
  void break_version(const std::string& version) { broken_.insert(version); }
  // The member's process exits (the agent reports it Exited from now on).
  void crash(const std::string& member) { crashed_.insert(member); }
  // Every member reports this load (the autoscaler's input).
  void set_load(double load) { load_ = load; }
  // The maintenance hooks of members started from now on keep running until
  // released (or all, at release_all()).
  void hold_maintenance(bool hold) { hold_maintenance_ = hold; }
  // Ends the held hook of `member`: the agent restarts it and reports.
  void release(const std::string& member) {
    for (Agent& agent : agents_) {
      if (auto it = agent.held.find(member); it != agent.held.end()) {
        const std::string id = it->second;
        agent.held.erase(it);
        if (agent.link) {
          deliver(*fleet_, agent.id, result_message(id, true, {{"pid", ++pid_}}));
        }
      }
    }
  }
  void release_all() {
    std::vector<std::string> members;
    for (const Agent& agent : agents_) {
      for (const auto& [member, id] : agent.held) {
        members.push_back(member);
      }
    }
    for (const auto& member : members) {
      release(member);
    }
  }
  std::vector<std::string> held() const {
    std::vector<std::string> out;
    for (const Agent& agent : agents_) {
      for (const auto& [member, id] : agent.held) {
        out.push_back(member);
      }
    }
    return out;
  }

  // One round: agents answer what they were sent and report, the clock moves
  // on, the controller runs a pass, and agents answer its commands.
  void step(std::chrono::milliseconds dt = std::chrono::seconds(1)) {
    answer();
    report();
    clock_.advance(dt);
    fleet_->tick();
    answer();  // what the pass sent, as an agent would at once
  }
  void run(int steps) {
    for (int i = 0; i < steps; ++i) {
      step();
    }
  }

  // The controller stops at once and a new one starts from the store; the
  // agents reconnect to it.
  void kill_controller() {
    start_controller();
    for (Agent& agent : agents_) {
      if (agent.link) {
        connect(agent);
      }
    }
  }
  // The agent's process dies and comes back: commands sent meanwhile are
  // lost; its members (and held hooks, which its journal finishes) survive.
  void kill_agent(size_t i) {
    Agent& agent = agents_.at(i);
    if (agent.link) {
      fleet_->disconnect(agent.id, agent.link.get());
    }
    connect(agent);
  }

  // The members as the store has them, by id.
  std::map<std::string, MemberRecord> members() {
    std::map<std::string, MemberRecord> out;
    auto all = store_->list_members({}).value();
    for (auto& m : all) {
      out[m.id] = m;
    }
    return out;
  }
  int count(const std::string& state, const std::string& version = "") {
    int n = 0;
    for (const auto& [id, m] : members()) {
      n += m.state == state && (version.empty() || m.version == version) ? 1 : 0;
    }
    return n;
  }
  std::vector<EventRecord> events(const std::string& type = "") {
    auto all = store_->list_events({0, std::nullopt, 100000}).value();
    std::erase_if(all, [&](const EventRecord& e) { return !type.empty() && e.type != type; });
    return all;
  }
  // Maintenance values of members (paths with a member number).
  std::map<std::string, std::string> markers(const std::string& app = "shop") {
    std::map<std::string, std::string> out;
    const auto ids = members();
    const auto values = store_->list_operational_values(app).value();
    for (const auto& v : values) {
      if (v.setting == Setting::kMaintenance && ids.contains(app + "/" + v.path)) {
        out[v.path] = v.value;
      }
    }
    return out;
  }
  std::optional<OperationalValueRecord> value(const std::string& path, Setting setting,
                                              const std::string& app = "shop") {
    const auto values = store_->list_operational_values(app).value();
    for (const auto& v : values) {
      if (v.path == path && v.setting == setting) {
        return v;
      }
    }
    return std::nullopt;
  }
  nlohmann::json operation(const std::string& id) { return apps_->get_operation(id).value(); }
  // Stop commands that reached a member whose maintenance hook was running.
  int stopped_in_maintenance() const { return stopped_in_maintenance_; }

 private:
  struct Agent {
    std::string id;
    std::string token;
    std::shared_ptr<FakeLink> link;
    size_t read = 0;                                  // messages of `link` answered
    std::set<std::string> running;                    // member ids
    std::map<std::string, std::string> held;          // member -> maintenance command id
  };

  void start_controller() {
    fleet_ = std::make_unique<Fleet>(*store_, clock_, FleetOptions{std::chrono::seconds(1), std::chrono::seconds(3),
                                                                   std::chrono::seconds(10), "jt_secret"});
    EXPECT_TRUE(fleet_->load().has_value());
  }

  void connect(Agent& agent) {
    agent.link = std::make_shared<FakeLink>();
    agent.read = 0;
    protocol::Hello hello;
    hello.host_id = agent.id;
    hello.host_token = agent.token;
    hello.hostname = "again";
    for (const auto& member : agent.running) {
      hello.members.push_back({member, 0, agent.held.contains(member) ? "Maintenance" : "Running", 1});
    }
    EXPECT_TRUE(fleet_->connect(hello, agent.link).has_value());
  }

  void answer() {
    for (Agent& agent : agents_) {
      if (!agent.link) {
        continue;
      }
      while (agent.read < agent.link->sent.size()) {
        const nlohmann::json message = agent.link->sent[agent.read++];
        if (message.value("type", "") != "command") {
          continue;
        }
        const std::string kind = message.value("command", "");
        const std::string id = message.value("id", "");
        const std::string member = message.value("member", "");
        if (kind == "start" || kind == "update") {
          agent.running.insert(member);
          crashed_.erase(member);
          deliver(*fleet_, agent.id, result_message(id, true, {{"pid", ++pid_}}));
        } else if (kind == "stop") {
          stopped_in_maintenance_ += agent.held.contains(member) ? 1 : 0;
          agent.running.erase(member);
          agent.held.erase(member);
          deliver(*fleet_, agent.id, result_message(id, true));
        } else if (kind == "maintenance") {
          // A resent command for a hook already running (the agent journals
          // it by id) answers only when that hook ends.
          if (hold_maintenance_ || agent.held.contains(member)) {
            agent.held[member] = id;
          } else {
            deliver(*fleet_, agent.id, result_message(id, true, {{"pid", ++pid_}}));
          }
        }
      }
    }
  }

  void report() {
    const auto all = members();
    for (Agent& agent : agents_) {
      if (!agent.link) {
        continue;
      }
      std::vector<protocol::MemberReport> reports;
      for (const auto& member : agent.running) {
        auto it = all.find(member);
        const bool crashed = crashed_.contains(member);
        const bool healthy = it != all.end() && !broken_.contains(it->second.version) &&
                             !agent.held.contains(member) && !crashed;
        const std::string state = crashed ? "Exited" : agent.held.contains(member) ? "Maintenance" : "Running";
        reports.push_back({member, state, healthy, protocol::MemberStats{load_, std::nullopt}, 100, {}});
      }
      deliver(*fleet_, agent.id, protocol::to_json(protocol::Heartbeat{++heartbeat_seq_, std::move(reports)}));
    }
  }

  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ApplicationService> apps_;
  std::unique_ptr<Fleet> fleet_;
  std::vector<Agent> agents_;
  std::set<std::string> broken_;
  std::set<std::string> crashed_;
  double load_ = 0.5;
  bool hold_maintenance_ = false;
  int64_t pid_ = 1000;
  int stopped_in_maintenance_ = 0;
  uint64_t heartbeat_seq_ = 0;
};

}  // namespace tranche
