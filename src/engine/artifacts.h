#pragma once
// The controller's content-addressed artifact store (interfaces.md,
// "artifacts"; the agent binary of an agent upgrade is one). A file lives
// under DIR/sha256/<hex>; the store's `artifacts` table names it (name,
// version) for good. An upload is written to a temp file as it arrives,
// hashed on the way, and only once it is complete and checked is it
// fsynced, renamed under its digest and named: nothing holds a file in
// memory, and a crash at any instant leaves either no artifact or a whole
// one (open() sweeps what an interrupted upload left).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "common/secrets.h"
#include "engine/access.h"
#include "store/store.h"

namespace tranche {

class ArtifactStore;

// What a finished upload named: `created` is false when the name already
// had this very content (an idempotent re-push).
struct ArtifactPushed {
  ArtifactRecord record;
  bool created = false;
};

// One upload in progress. Destroyed unfinished, it leaves nothing behind.
class ArtifactUpload {
 public:
  ~ArtifactUpload();
  ArtifactUpload(const ArtifactUpload&) = delete;
  ArtifactUpload& operator=(const ArtifactUpload&) = delete;

  // The next piece of the body: hashed and written. kTooLarge beyond the
  // store's limit (the upload is then void).
  Status write(std::string_view data);
  // Checks the digest against the one announced (kInvalid, field
  // "sha256", nothing kept), fsyncs, moves the file under its digest and
  // names it: kConflict when the name already has other content.
  Result<ArtifactPushed> finish();

 private:
  friend class ArtifactStore;
  ArtifactUpload(ArtifactStore& owner, ArtifactRecord record, std::optional<std::string> expected_sha256,
                 std::filesystem::path temp, int fd);
  void discard();

  ArtifactStore& owner_;
  ArtifactRecord record_;  // sha256 and size filled in as it arrives
  std::optional<std::string> expected_sha256_;
  std::filesystem::path temp_;
  int fd_ = -1;
  Sha256 hasher_;
};

// An artifact's file, to be sent.
struct ArtifactFile {
  std::filesystem::path path;
  int64_t size = 0;
  std::string sha256;
};

class ArtifactStore {
 public:
  // Files in `dir` (the data dir's "artifacts"); uploads beyond `max_bytes`
  // are refused.
  ArtifactStore(Store& store, const Clock& clock, std::filesystem::path dir, int64_t max_bytes);

  // Creates the folders; removes temp files of interrupted uploads and
  // files that no name refers to (a crash between the rename and the name).
  Status open();

  // Validates the name, the version and the announced digest and length
  // (fields "name", "version", "sha256"; kTooLarge for a length beyond the
  // limit); refuses at once (kConflict) a name that already has another
  // announced content. Then the body goes to write().
  Result<std::unique_ptr<ArtifactUpload>> begin_upload(const std::string& name, const std::string& version,
                                                       const std::optional<std::string>& sha256,
                                                       std::optional<uint64_t> content_length, const Caller& caller);

  Result<ArtifactRecord> get(const std::string& name, const std::string& version);
  Result<std::vector<ArtifactRecord>> list(const std::optional<std::string>& name);
  // The file of a digest that some name refers to (kNotFound otherwise).
  Result<ArtifactFile> file(const std::string& sha256);
  // Forgets the name; the file goes with its last name. Refused (kConflict)
  // while an agent upgrade that is not finished uses the content.
  Status remove(const std::string& name, const std::string& version, const Caller& caller);

  int64_t max_bytes() const { return max_bytes_; }

  // "sha256" names the download route: no artifact may take it.
  static Status check_name(const std::string& name);
  // 1 to 128 of [0-9A-Za-z._+-], starting with a letter or digit.
  static Status check_version(const std::string& version);
  // 64 hex digits; returns them in lower case.
  static Result<std::string> check_digest(const std::string& sha256, const std::string& field = "sha256");

 private:
  friend class ArtifactUpload;
  Result<ArtifactPushed> keep(ArtifactUpload& upload);
  std::filesystem::path blob_path(const std::string& sha256) const { return dir_ / "sha256" / sha256; }

  Store& store_;
  const Clock& clock_;
  std::filesystem::path dir_;
  int64_t max_bytes_;
  std::mutex mu_;  // the rename, the name and the sweep of a file, one at a time
};

// {name, version, sha256, size, uploadedBy, uploadedAt, path}: `path` is
// where it is downloaded from (GET, with a host's or an operator's token).
nlohmann::json artifact_json(const ArtifactRecord& record);
std::string artifact_download_path(const std::string& sha256);

}  // namespace tranche
