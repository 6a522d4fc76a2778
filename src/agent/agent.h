#pragma once
// `tranche agent`: connects to the controller, runs the members it is told
// to run, reports their state and health, and keeps running them (and its
// journal) across its own restarts and lost connections.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace tranche::agent {

struct AgentOptions {
  std::string server;       // http://HOST:PORT, or https://HOST:PORT (the WebSocket over TLS)
  std::string server_file;  // or: a file holding it, re-read on every reconnect (--dev)
  std::string ca_file;      // the CA an https:// controller's certificate must chain to; empty: the system's CAs
  std::string join_token;
  std::string join_token_file;
  std::map<std::string, std::string> labels;
  int64_t slots = 64;
  std::filesystem::path state_dir = "./tranche-agent";
  // Tests only (--protocol, hidden): the one protocol version this agent
  // says it speaks, to play an older or unknown agent; 0: this build's range.
  int protocol = 0;
};

// Runs until SIGTERM/SIGINT (members keep running); returns the exit status.
int run_agent(const AgentOptions& options);

}  // namespace tranche::agent
