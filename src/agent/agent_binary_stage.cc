#include "agent/agent_binary_stage.h"

#include <algorithm>

#include "common/atomic_file.h"
#include "common/secrets.h"

namespace tranche::agent {

namespace fs = std::filesystem;

Status check_version_name(const std::string& version) {
  const bool safe = !version.empty() && version != "." && version != ".." && version.size() <= 128 &&
                    std::all_of(version.begin(), version.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                             c == '.' || c == '_' || c == '+' || c == '-';
                    });
  if (!safe) {
    return fail(ErrorCode::kInvalid,
                "version '" + version + "' cannot name a directory: use letters, digits and . _ + - (at most 128)",
                "spec.version");
  }
  return {};
}

Result<fs::path> stage_agent_binary(const fs::path& state_dir, const std::string& version, std::string_view bytes,
                                    const std::string& sha256, int64_t size) {
  if (auto ok = check_version_name(version); !ok) {
    return std::unexpected(ok.error());
  }
  if (static_cast<int64_t>(bytes.size()) != size) {
    return fail(ErrorCode::kInvalid,
                "the artifact has " + std::to_string(bytes.size()) + " bytes, expected " + std::to_string(size),
                "spec.size");
  }
  if (const std::string digest = sha256_hex(bytes); digest != sha256) {
    return fail(ErrorCode::kInvalid, "the artifact's sha256 is " + digest + ", expected " + sha256, "spec.sha256");
  }
  const fs::path dir = state_dir / "versions" / version;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, "cannot create " + dir.string() + ": " + ec.message());
  }
  const fs::path binary = dir / "tranche";
  // Replaced by rename: a process running the file that was there keeps it.
  if (auto written = write_file_atomically(binary, bytes, 0755); !written) {
    return std::unexpected(written.error());
  }
  return binary;
}

}  // namespace tranche::agent
