#include "protocol/versions.h"

#include <algorithm>
#include <charconv>

namespace tranche::protocol {

namespace {

std::string describe(ProtocolRange range) {
  return range.oldest == range.newest
             ? "version " + std::to_string(range.newest)
             : "versions " + std::to_string(range.oldest) + " to " + std::to_string(range.newest);
}

// Reads "N." of a version's core, or with `last` its final "N", followed
// by nothing, a pre-release ("-rc.1") or build metadata ("+g1a2b3c").
bool read_part(std::string_view& rest, int& out, bool last) {
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out);
  if (ec != std::errc() || end == rest.data() || out < 0) {
    return false;
  }
  rest.remove_prefix(static_cast<size_t>(end - rest.data()));
  if (last) {
    return rest.empty() || rest.front() == '-' || rest.front() == '+';
  }
  if (!rest.starts_with('.')) {
    return false;
  }
  rest.remove_prefix(1);
  return true;
}

}  // namespace

Result<int> negotiate(ProtocolRange agent, ProtocolRange controller) {
  const int highest = std::min(agent.newest, controller.newest);
  if (agent.oldest <= agent.newest && highest >= std::max(agent.oldest, controller.oldest)) {
    return highest;
  }
  const std::string advice = agent.newest < controller.oldest ? "the agent is too old: upgrade it on its host"
                                                              : "the agent is newer than this controller: upgrade "
                                                                "the controller first";
  return fail(ErrorCode::kInvalid,
              "agent protocol " + describe(agent) + " is not supported: this controller speaks " +
                  describe(controller) + "; " + advice,
              "hello.protocol");
}

Result<BuildVersion> parse_build_version(std::string_view text, const std::string& field) {
  BuildVersion v;
  std::string_view rest = text;
  if (!read_part(rest, v.major, false) || !read_part(rest, v.minor, false) || !read_part(rest, v.patch, true)) {
    return fail(ErrorCode::kInvalid,
                "'" + std::string(text) + "' is not a version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]", field);
  }
  return v;
}

Status check_skew(std::string_view agent, std::string_view controller) {
  if (agent.empty()) {
    return {};
  }
  auto theirs = parse_build_version(agent, "hello.agentVersion");
  if (!theirs) {
    return std::unexpected(theirs.error());
  }
  auto ours = parse_build_version(controller, "controller version");
  if (!ours) {
    return std::unexpected(ours.error());
  }
  const std::string who = "agent " + std::string(agent) + ", controller " + std::string(controller) + ": ";
  if (theirs->major > ours->major || (theirs->major == ours->major && theirs->minor > ours->minor)) {
    return fail(ErrorCode::kInvalid,
                who + "the agent is newer than its controller, which is never supported; upgrade the controller first",
                "hello.agentVersion");
  }
  if (theirs->major < ours->major) {
    return fail(ErrorCode::kInvalid,
                who + "the agent is of an older major version; agents may be at most " +
                    std::to_string(kMaxMinorsBehind) + " minor versions older: upgrade it on its host",
                "hello.agentVersion");
  }
  if (const int behind = ours->minor - theirs->minor; behind > kMaxMinorsBehind) {
    return fail(ErrorCode::kInvalid,
                who + "the agent is " + std::to_string(behind) + " minor versions older; agents may be at most " +
                    std::to_string(kMaxMinorsBehind) + " older: upgrade it on its host",
                "hello.agentVersion");
  }
  return {};
}

}  // namespace tranche::protocol
