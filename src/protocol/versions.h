#pragma once
// Which agents a controller talks to (updates.md, "Upgrading Tranche
// itself"; docs/upgrading.md): the protocol versions, their negotiation and
// the skew policy between builds, defined here only.
//
// - Protocol. An agent's hello says the range it speaks: `oldestProtocol`
//   (absent: the same as `protocol`) to `protocol`. The controller answers
//   the highest version both speak in `welcome.protocol`, or refuses.
// - Builds. An agent may be up to kMaxMinorsBehind minor versions older than
//   its controller, never newer. Versions are compared by major and minor:
//   patch, pre-release and build metadata ("+g1234abc") are ignored. An
//   agent that does not say its version is judged by protocol only.

#include <string>
#include <string_view>

#include "common/error.h"

namespace tranche::protocol {

// Version 3 adds batch frames (frames.h: several messages in one frame);
// 2 adds the agent's self-upgrade (the upgradeAgent command and the hello's
// upgrade report); 1 is the first. Neither side sends the other what the
// version agreed between them does not have.
inline constexpr int kVersion = 3;
inline constexpr int kOldestVersion = 1;
// The first version whose peers send batch frames.
inline constexpr int kBatchVersion = 3;

// How many minor versions an agent's build may be behind its controller's.
inline constexpr int kMaxMinorsBehind = 2;

// A range of protocol versions, both ends included.
struct ProtocolRange {
  int oldest = kOldestVersion;
  int newest = kVersion;

  bool contains(int version) const { return version >= oldest && version <= newest; }
  bool operator==(const ProtocolRange&) const = default;
};

// What this build speaks.
inline constexpr ProtocolRange kSpoken{kOldestVersion, kVersion};

// The highest version in both `agent`'s range and `controller`'s; the error
// (field "hello.protocol") names both ranges and which side is behind.
Result<int> negotiate(ProtocolRange agent, ProtocolRange controller = kSpoken);

// MAJOR.MINOR.PATCH of a build version ("0.1.0+g1a2b3c-dirty", "1.2.0-rc.1").
struct BuildVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;

  bool operator==(const BuildVersion&) const = default;
};
// The error names `field`.
Result<BuildVersion> parse_build_version(std::string_view text, const std::string& field);

// Whether a controller of build `controller` talks to an agent of build
// `agent` (empty: the agent did not say; judged by protocol only). The error
// (field "hello.agentVersion") says which is newer and by how much, and what
// to upgrade.
Status check_skew(std::string_view agent, std::string_view controller);

}  // namespace tranche::protocol
