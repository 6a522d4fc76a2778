#pragma once
// Network namespaces for end-to-end tests that cut links between hosts:
// `ip netns` namespaces the test creates (and deletes, with every process
// still inside), joined by veth pairs.

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"

namespace tranche::e2e {

// The `ip` tool (iproute2), or empty when the machine has none.
std::string ip_binary();

// `ip ARGS...` to completion.
CliResult ip(const std::vector<std::string>& args);

// One namespace the test owns. Destroying it SIGKILLs every process still
// inside (all of them started by the test) and deletes it, which removes its
// veth ends too.
class NetNamespace {
 public:
  // Creates the namespace with `lo` up; null, with the reason in `error`,
  // when this machine cannot (not root, no iproute2, no netns support).
  static std::unique_ptr<NetNamespace> create(const std::string& name, std::string& error);
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  const std::string& name() const { return name_; }

  // `argv` run inside the namespace: `ip netns exec NAME argv...`. ip execs
  // the command in place, so the child's pid is the command's own.
  std::vector<std::string> exec(const std::vector<std::string>& argv) const;

  // `ip -n NAME ARGS...` to completion.
  CliResult ip(const std::vector<std::string>& args) const;

  // The processes whose network namespace this is.
  std::vector<pid_t> pids() const;

  // SIGKILLs every process inside until none is left (or 10 s pass).
  void kill_all() const;

 private:
  explicit NetNamespace(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// Moves the calling thread into a namespace until destroyed (setns(2) acts
// on one thread): its sockets, those of threads it starts meanwhile and the
// processes it spawns live there. Lets a test reach a controller that
// listens inside a namespace without adding anything to the root one.
class ThreadInNamespace {
 public:
  // Null, with the reason in `error`, when the namespace cannot be entered.
  static std::unique_ptr<ThreadInNamespace> enter(const NetNamespace& ns, std::string& error);
  ~ThreadInNamespace();  // back to the namespace the thread came from
  ThreadInNamespace(const ThreadInNamespace&) = delete;
  ThreadInNamespace& operator=(const ThreadInNamespace&) = delete;

 private:
  explicit ThreadInNamespace(int previous) : previous_(previous) {}
  int previous_;  // a descriptor of the namespace to return to
};

// One end of a veth pair: the namespace it lives in, the interface name and
// its address with prefix length ("10.231.7.1/30").
struct VethEnd {
  const NetNamespace* ns = nullptr;
  std::string ifname;
  std::string cidr;
};

// Creates a veth pair between two namespaces, addresses both ends and brings
// them up. The error, or nullopt on success.
std::optional<std::string> connect_veth(const VethEnd& a, const VethEnd& b);

}  // namespace tranche::e2e
