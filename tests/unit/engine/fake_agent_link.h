#pragma once
// An agent connection for fleet tests: records what the fleet sends, in
// order, and says it connects from loopback (where a load balancer finds the
// members of its host). deliver() hands the fleet what an agent sends, the
// way the API's WebSocket edge does; join_host() joins a host as a new agent.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/fleet/fleet.h"
#include "protocol/frames.h"

namespace tranche {

class FakeLink final : public AgentLink {
 public:
  void send(std::string message) override {
    sent.push_back(nlohmann::json::parse(message));
    if (on_send) {
      on_send(sent.back());
    }
  }
  void send_all(std::vector<std::string> messages) override {
    batches.push_back(messages.size());
    AgentLink::send_all(std::move(messages));
  }
  void close(std::string reason) override { closed = reason; }
  void agree(int protocol) override {
    EXPECT_FALSE(of_type("welcome").empty()) << "agreed before the welcome was sent";
    agreed = protocol;
  }
  std::string peer_address() const override { return "127.0.0.1"; }
  bool has_unread_input() const override { return unread; }

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
  std::function<void(const nlohmann::json&)> on_send;  // called with each message as it is sent
  std::vector<size_t> batches;  // the size of each send_all, in order
  std::string closed;
  int agreed = 0;  // the protocol version agree() was told
  bool unread = false;  // what has_unread_input() says
};

// What the API's WebSocket edge does with an agent's frame: decode it once,
// then hand the fleet the typed message or the reason it was rejected.
// A host joined to `fleet` with the tests' join token ("jt_secret"): its
// id, its host token from `welcome`, and its connection.
struct JoinedHost {
  std::string id;
  std::string token;
  std::shared_ptr<FakeLink> link;
};

inline JoinedHost join_host(Fleet& fleet, const std::string& hostname, int64_t slots = 64) {
  auto link = std::make_shared<FakeLink>();
  protocol::Hello hello;
  hello.join_token = "jt_secret";
  hello.hostname = hostname;
  hello.slots = slots;
  auto id = fleet.connect(hello, link);
  EXPECT_TRUE(id.has_value()) << id.error().describe();
  return JoinedHost{id.value_or(""), link->of_type("welcome").at(0)["hostToken"], link};
}

inline void deliver(Fleet& fleet, const std::string& host_id, const nlohmann::json& message) {
  for (auto& decoded : protocol::decode_agent_frame(message.dump())) {
    if (decoded) {
      fleet.receive(host_id, std::move(*decoded));
    } else {
      fleet.reject(host_id, decoded.error());
    }
  }
}

// A result as an agent sends it; `data` as on the wire: {"pid", "ports"},
// {"stdout", "stderr"} or null.
inline nlohmann::json result_message(const std::string& id, bool ok, nlohmann::json data = nullptr) {
  return {{"type", "result"}, {"id", id}, {"ok", ok}, {"message", ""}, {"data", std::move(data)}};
}

}  // namespace tranche
