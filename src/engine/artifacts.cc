#include "engine/artifacts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/names.h"
#include "common/time_format.h"
#include "engine/events.h"

namespace tranche {

namespace {

namespace fs = std::filesystem;

std::string errno_text() { return std::strerror(errno); }

Status fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable, "cannot open " + dir.string() + ": " + errno_text());
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) {
    return fail(ErrorCode::kUnavailable, "cannot fsync " + dir.string() + ": " + errno_text());
  }
  return {};
}

bool is_hex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
}

}  // namespace

std::string artifact_download_path(const std::string& sha256) { return "/api/v1/artifacts/sha256/" + sha256; }

nlohmann::json artifact_json(const ArtifactRecord& r) {
  return nlohmann::json{{"name", r.name},
                        {"version", r.version},
                        {"sha256", r.sha256},
                        {"size", r.size},
                        {"uploadedBy", r.uploaded_by},
                        {"uploadedAt", format_rfc3339(r.uploaded_at)},
                        {"path", artifact_download_path(r.sha256)}};
}

// ---- ArtifactUpload -------------------------------------------------------------

ArtifactUpload::ArtifactUpload(ArtifactStore& owner, ArtifactRecord record, std::optional<std::string> expected_sha256,
                               std::filesystem::path temp, int fd)
    : owner_(owner),
      record_(std::move(record)),
      expected_sha256_(std::move(expected_sha256)),
      temp_(std::move(temp)),
      fd_(fd) {}

ArtifactUpload::~ArtifactUpload() { discard(); }

void ArtifactUpload::discard() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
    temp_.clear();
  }
}

Status ArtifactUpload::write(std::string_view data) {
  if (fd_ < 0) {
    return fail(ErrorCode::kInternal, "the upload of " + record_.name + " " + record_.version + " is over");
  }
  if (record_.size + static_cast<int64_t>(data.size()) > owner_.max_bytes()) {
    discard();
    return fail(ErrorCode::kTooLarge,
                "artifact exceeds the limit of " + std::to_string(owner_.max_bytes()) + " bytes (artifactMaxBytes)");
  }
  hasher_.update(data);
  record_.size += static_cast<int64_t>(data.size());
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      auto error = fail(ErrorCode::kUnavailable, "cannot write " + temp_.string() + ": " + errno_text());
      discard();
      return error;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<ArtifactPushed> ArtifactUpload::finish() {
  if (fd_ < 0) {
    return fail(ErrorCode::kInternal, "the upload of " + record_.name + " " + record_.version + " is over");
  }
  record_.sha256 = hasher_.finish_hex();
  if (expected_sha256_ && *expected_sha256_ != record_.sha256) {
    discard();
    return fail(ErrorCode::kInvalid,
                "the upload's sha256 is " + record_.sha256 + ", not " + *expected_sha256_ + " as announced; nothing kept",
                "sha256");
  }
  const bool synced = ::fsync(fd_) == 0;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed) {
    auto error = fail(ErrorCode::kUnavailable, "cannot write " + temp_.string() + ": " + errno_text());
    discard();
    return error;
  }
  auto kept = owner_.keep(*this);
  discard();  // the temp file, if keep() did not move it
  return kept;
}

// ---- ArtifactStore --------------------------------------------------------------

ArtifactStore::ArtifactStore(Store& store, const Clock& clock, std::filesystem::path dir, int64_t max_bytes)
    : store_(store), clock_(clock), dir_(std::move(dir)), max_bytes_(max_bytes) {}

Status ArtifactStore::open() {
  std::lock_guard lock(mu_);
  std::error_code ec;
  for (const char* sub : {"sha256", "tmp"}) {
    fs::create_directories(dir_ / sub, ec);
    if (ec) {
      return fail(ErrorCode::kUnavailable, "cannot create " + (dir_ / sub).string() + ": " + ec.message());
    }
  }
  for (const auto& entry : fs::directory_iterator(dir_ / "tmp", ec)) {
    fs::remove(entry.path(), ec);
  }
  auto named = store_.list_artifacts(std::nullopt);
  if (!named) {
    return std::unexpected(named.error());
  }
  std::set<std::string> digests;
  for (const auto& a : *named) {
    digests.insert(a.sha256);
  }
  for (const auto& entry : fs::directory_iterator(dir_ / "sha256", ec)) {
    if (!digests.contains(entry.path().filename().string())) {
      spdlog::info("artifacts: removing {}, which no artifact names (an upload interrupted before its name)",
                   entry.path().string());
      fs::remove(entry.path(), ec);
    }
  }
  return {};
}

Status ArtifactStore::check_name(const std::string& name) {
  if (auto valid = tranche::check_name(name, "name"); !valid) {
    return valid;
  }
  if (name == "sha256") {
    return fail(ErrorCode::kInvalid, "'sha256' is reserved (GET /api/v1/artifacts/sha256/DIGEST downloads a file)",
                "name");
  }
  return {};
}

Status ArtifactStore::check_version(const std::string& version) {
  const bool valid = !version.empty() && version.size() <= 128 && std::isalnum(static_cast<unsigned char>(version[0])) &&
                     version.find_first_not_of("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._+-") ==
                         std::string::npos;
  if (!valid) {
    return fail(ErrorCode::kInvalid,
                "a version is 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit, like "
                "'0.2.0'; got '" + version + "'",
                "version");
  }
  return {};
}

Result<std::string> ArtifactStore::check_digest(const std::string& sha256, const std::string& field) {
  if (sha256.size() != 64 || !is_hex(sha256)) {
    return fail(ErrorCode::kInvalid, "a sha256 is 64 hex digits; got '" + sha256 + "'", field);
  }
  std::string lower = sha256;
  for (char& c : lower) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return lower;
}

Result<std::unique_ptr<ArtifactUpload>> ArtifactStore::begin_upload(const std::string& name, const std::string& version,
                                                                    const std::optional<std::string>& sha256,
                                                                    std::optional<uint64_t> content_length,
                                                                    const Caller& caller) {
  if (auto valid = check_name(name); !valid) {
    return std::unexpected(valid.error());
  }
  if (auto valid = check_version(version); !valid) {
    return std::unexpected(valid.error());
  }
  std::optional<std::string> expected;
  if (sha256) {
    auto digest = check_digest(*sha256);
    if (!digest) {
      return std::unexpected(digest.error());
    }
    expected = *digest;
  }
  if (content_length && *content_length > static_cast<uint64_t>(max_bytes_)) {
    return fail(ErrorCode::kTooLarge, "artifact of " + std::to_string(*content_length) + " bytes exceeds the limit of " +
                                          std::to_string(max_bytes_) + " bytes (artifactMaxBytes)");
  }
  auto existing = store_.get_artifact(name, version);
  if (!existing) {
    return std::unexpected(existing.error());
  }
  if (*existing && expected && (*existing)->sha256 != *expected) {
    return fail(ErrorCode::kConflict, "artifact " + name + " " + version + " is already sha256 " +
                                          (*existing)->sha256 + "; a version names one content for good");
  }
  const fs::path temp = dir_ / "tmp" / (random_hex(8) + ".part");
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable, "cannot create " + temp.string() + ": " + errno_text());
  }
  ArtifactRecord record{name, version, "", 0, caller.actor, clock_.now()};
  return std::unique_ptr<ArtifactUpload>(new ArtifactUpload(*this, std::move(record), std::move(expected), temp, fd));
}

Result<ArtifactPushed> ArtifactStore::keep(ArtifactUpload& upload) {
  std::lock_guard lock(mu_);
  ArtifactRecord& record = upload.record_;
  auto existing = store_.get_artifact(record.name, record.version);
  if (!existing) {
    return std::unexpected(existing.error());
  }
  if (*existing) {
    if ((*existing)->sha256 != record.sha256) {
      return fail(ErrorCode::kConflict, "artifact " + record.name + " " + record.version + " is already sha256 " +
                                            (*existing)->sha256 + ", not " + record.sha256 +
                                            "; a version names one content for good");
    }
    return ArtifactPushed{**existing, false};
  }
  // The file is in place (and its directory entry durable) before a name
  // can point to it.
  const fs::path target = blob_path(record.sha256);
  if (::rename(upload.temp_.c_str(), target.c_str()) != 0) {
    return fail(ErrorCode::kUnavailable,
                "cannot move " + upload.temp_.string() + " to " + target.string() + ": " + errno_text());
  }
  upload.temp_.clear();
  if (auto synced = fsync_dir(target.parent_path()); !synced) {
    return std::unexpected(synced.error());
  }
  record.uploaded_at = clock_.now();
  WriteBatch batch;
  batch.mutations.push_back(PutArtifact{record});
  batch.mutations.push_back(AppendEvent{make_event(
      record.uploaded_at, "", "artifact/" + record.name, "", "ArtifactPushed", nullptr,
      nlohmann::json{{"version", record.version}, {"sha256", record.sha256}},
      "artifact " + record.name + " " + record.version + " pushed by " + record.uploaded_by + " (" +
          std::to_string(record.size) + " bytes, sha256 " + record.sha256 + ")")});
  batch.mutations.push_back(AppendAudit{{0, record.uploaded_at, record.uploaded_by,
                                         "POST /api/v1/artifacts/" + record.name + "/" + record.version,
                                         "artifact " + record.name, "201 sha256 " + record.sha256}});
  if (auto done = store_.commit(batch); !done) {
    auto others = store_.artifacts_with_digest(record.sha256);
    if (others && others->empty()) {
      ::unlink(target.c_str());
    }
    return std::unexpected(done.error());
  }
  return ArtifactPushed{record, true};
}

Result<ArtifactRecord> ArtifactStore::get(const std::string& name, const std::string& version) {
  auto found = store_.get_artifact(name, version);
  if (!found) {
    return std::unexpected(found.error());
  }
  if (!*found) {
    return fail(ErrorCode::kNotFound, "artifact " + name + " " + version + " not found");
  }
  return **found;
}

Result<std::vector<ArtifactRecord>> ArtifactStore::list(const std::optional<std::string>& name) {
  return store_.list_artifacts(name);
}

Result<ArtifactFile> ArtifactStore::file(const std::string& sha256) {
  auto digest = check_digest(sha256, "digest");
  if (!digest) {
    return std::unexpected(digest.error());
  }
  auto named = store_.artifacts_with_digest(*digest);
  if (!named) {
    return std::unexpected(named.error());
  }
  if (named->empty()) {
    return fail(ErrorCode::kNotFound, "no artifact has sha256 " + *digest);
  }
  const fs::path path = blob_path(*digest);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, "artifact file " + path.string() + " cannot be read: " + ec.message());
  }
  return ArtifactFile{path, static_cast<int64_t>(size), *digest};
}

Status ArtifactStore::remove(const std::string& name, const std::string& version, const Caller& caller) {
  std::lock_guard lock(mu_);
  auto found = store_.get_artifact(name, version);
  if (!found) {
    return std::unexpected(found.error());
  }
  if (!*found) {
    return fail(ErrorCode::kNotFound, "artifact " + name + " " + version + " not found");
  }
  const ArtifactRecord record = **found;
  auto upgrade = store_.latest_agent_upgrade();
  if (!upgrade) {
    return std::unexpected(upgrade.error());
  }
  if (*upgrade && !(*upgrade)->finished_at && (*upgrade)->artifact_sha256 == record.sha256) {
    return fail(ErrorCode::kConflict, "agent upgrade " + std::to_string((*upgrade)->id) + " (" + (*upgrade)->state +
                                          ") uses artifact " + name + " " + version +
                                          "; abort it or let it complete first");
  }
  const TimePoint now = clock_.now();
  WriteBatch batch;
  batch.mutations.push_back(DeleteArtifact{name, version});
  batch.mutations.push_back(AppendEvent{make_event(now, "", "artifact/" + name, "", "ArtifactDeleted",
                                                   nlohmann::json{{"version", version}, {"sha256", record.sha256}},
                                                   nullptr, "artifact " + name + " " + version + " deleted by " +
                                                                caller.actor)});
  batch.mutations.push_back(AppendAudit{{0, now, caller.actor, caller.action, "artifact " + name, "200"}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  auto others = store_.artifacts_with_digest(record.sha256);
  if (others && others->empty()) {
    ::unlink(blob_path(record.sha256).c_str());
  }
  return {};
}

}  // namespace tranche
