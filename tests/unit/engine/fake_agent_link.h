#pragma once
// An agent connection for fleet tests: records what the fleet sends, in
// order, and says it connects from loopback (where a load balancer finds the
// members of its host).

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/fleet.h"

namespace tranche {

class FakeLink final : public AgentLink {
 public:
  void send(std::string message) override { sent.push_back(nlohmann::json::parse(message)); }
  void close(std::string reason) override { closed = reason; }
  std::string peer_address() const override { return "127.0.0.1"; }

  // The messages of `type`; for "command", only those of `command` if given.
  std::vector<nlohmann::json> of_type(const std::string& type, const std::string& command = "") const {
    std::vector<nlohmann::json> out;
    for (const auto& m : sent) {
      if (m["type"] == type && (command.empty() || m.value("command", "") == command)) {
        out.push_back(m);
      }
    }
    return out;
  }

  std::vector<nlohmann::json> commands(const std::string& command) const { return of_type("command", command); }

  std::vector<nlohmann::json> sent;
  std::string closed;
};

}  // namespace tranche
