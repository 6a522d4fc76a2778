#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <sstream>

namespace tranche::e2e {

std::string ip_binary() {
  for (const char* candidate : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(candidate, X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

CliResult ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ip_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

namespace {

std::string describe(const std::vector<std::string>& args, const CliResult& r) {
  std::string text = "ip";
  for (const auto& a : args) {
    text += " " + a;
  }
  std::string err = r.err;
  while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) {
    err.pop_back();
  }
  return text + " exited " + std::to_string(r.exit_code) + ": " + err;
}

}  // namespace

std::unique_ptr<NetNamespace> NetNamespace::create(const std::string& name, std::string& error) {
  if (ip_binary().empty()) {
    error = "no `ip` tool (iproute2) found";
    return nullptr;
  }
  const std::vector<std::string> add = {"netns", "add", name};
  if (auto r = e2e::ip(add); r.exit_code != 0) {
    error = describe(add, r) + (::geteuid() != 0 ? " (not running as root)" : "");
    return nullptr;
  }
  std::unique_ptr<NetNamespace> ns(new NetNamespace(name));
  const std::vector<std::string> lo_up = {"link", "set", "lo", "up"};
  if (auto r = ns->ip(lo_up); r.exit_code != 0) {
    error = describe(lo_up, r);
    return nullptr;  // the destructor deletes it
  }
  return ns;
}

NetNamespace::~NetNamespace() {
  kill_all();
  e2e::ip({"netns", "del", name_});
}

std::vector<std::string> NetNamespace::exec(const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {ip_binary(), "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

CliResult NetNamespace::ip(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"-n", name_};
  argv.insert(argv.end(), args.begin(), args.end());
  return e2e::ip(argv);
}

std::vector<pid_t> NetNamespace::pids() const {
  std::vector<pid_t> out;
  const CliResult r = e2e::ip({"netns", "pids", name_});
  std::istringstream lines(r.out);
  for (long pid = 0; lines >> pid;) {
    if (pid > 1 && pid != ::getpid()) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  return out;
}

void NetNamespace::kill_all() const {
  // Killed processes drop out of the list (a zombie has no namespace left).
  wait_until(
      [&] {
        const auto left = pids();
        for (pid_t pid : left) {
          ::kill(pid, SIGKILL);
        }
        return left.empty();
      },
      10s);
}

std::optional<std::string> connect_veth(const VethEnd& a, const VethEnd& b) {
  // Created inside a's namespace with its peer placed straight into b's, so
  // the names never meet in the root namespace.
  const std::vector<std::string> add = {"link", "add",  a.ifname, "type",  "veth",
                                        "peer", "name", b.ifname, "netns", b.ns->name()};
  if (auto r = a.ns->ip(add); r.exit_code != 0) {
    return describe(add, r);
  }
  for (const VethEnd* end : {&a, &b}) {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"addr", "add", end->cidr, "dev", end->ifname},
                                                 std::vector<std::string>{"link", "set", end->ifname, "up"}}) {
      if (auto r = end->ns->ip(args); r.exit_code != 0) {
        return "in " + end->ns->name() + ": " + describe(args, r);
      }
    }
  }
  return std::nullopt;
}

std::unique_ptr<ThreadInNamespace> ThreadInNamespace::enter(const NetNamespace& ns, std::string& error) {
  const int previous = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (previous < 0) {
    error = std::string("cannot open this thread's network namespace: ") + std::strerror(errno);
    return nullptr;
  }
  const std::string path = "/var/run/netns/" + ns.name();
  const int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const bool entered = target >= 0 && ::setns(target, CLONE_NEWNET) == 0;
  const int saved_errno = errno;
  if (target >= 0) {
    ::close(target);
  }
  if (!entered) {
    ::close(previous);
    error = "cannot enter " + path + ": " + std::strerror(saved_errno);
    return nullptr;
  }
  return std::unique_ptr<ThreadInNamespace>(new ThreadInNamespace(previous));
}

ThreadInNamespace::~ThreadInNamespace() {
  ::setns(previous_, CLONE_NEWNET);
  ::close(previous_);
}

}  // namespace tranche::e2e
