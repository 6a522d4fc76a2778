#pragma once
// Part of the fleet (fleet.h): its side of an agent's connection.

#include <string>
#include <utility>
#include <vector>

namespace tranche {

// How the fleet talks to one connected agent; the API layer implements it
// over a WebSocket (api/connection_parts.h). Never blocks.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void send(std::string message) = 0;
  // Several messages, in order: one hand-off to the connection for all of
  // them (a pass that sends an agent 100 commands wakes its thread once).
  virtual void send_all(std::vector<std::string> messages) {
    for (auto& m : messages) {
      send(std::move(m));
    }
  }
  virtual void close(std::string reason) = 0;
  // The protocol version agreed with the agent, said once its welcome is
  // sent: what follows the welcome may go in batch frames from version 3 on
  // (protocol/frames.h).
  virtual void agree(int protocol) { (void)protocol; }
  // The address the agent connects from, where the members of its host
  // listen for a load balancer; empty when unknown.
  virtual std::string peer_address() const { return {}; }
  // Whether bytes from the agent wait unread in the connection's receive
  // queue: it spoke, and the controller has not read it yet. Any thread.
  virtual bool has_unread_input() const { return false; }
};

}  // namespace tranche
