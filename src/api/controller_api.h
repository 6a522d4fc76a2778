#pragma once
// The REST API of interfaces.md as a table of routes over the engine. Each
// route names the role it needs; a token scoped to one application gets 404
// for every other application, as if it did not exist, and 403 on host-wide
// operations (those need an unscoped admin token).

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "api/http.h"
#include "api/metrics.h"
#include "api/view_cache.h"
#include "engine/access.h"
#include "engine/artifacts.h"
#include "engine/application_service.h"
#include "engine/fleet/fleet.h"
#include "store/store.h"

namespace tranche::api {

nlohmann::json event_json(const EventRecord& e);

class ControllerApi {
 public:
  ControllerApi(ApplicationService& apps, AccessControl& access, Fleet& fleet, Store& store, Metrics& metrics);
  ~ControllerApi();
  ControllerApi(const ControllerApi&) = delete;
  ControllerApi& operator=(const ControllerApi&) = delete;

  // Routes, authenticates, runs the handler, records failures of mutating
  // calls in the audit log. Never throws.
  RouteResult handle(const Request& request);

  // How long GET /applications/{app} and GET /members may answer what they
  // rendered when no event was committed since (view_cache.h).
  static constexpr std::chrono::milliseconds kViewLifetime{1000};

  // What a draining or not-yet-ready controller answers on /readyz.
  void set_ready(bool ready) { ready_ = ready; }

  // Artifacts and agent upgrades (controller_api_upgrades.cc): registers
  // their routes, served from `artifacts`.
  void serve_upgrades(ArtifactStore& artifacts);
  // POST /api/v1/artifacts/{name}/{version}, whose body the server streams
  // to disk rather than reading it whole (the body limit does not apply;
  // the artifact store's does): whether `head` is one, then its upload
  // (authenticated and validated on the head alone) or the refusal, then
  // the answer once the body was written (`streamed`: how that went).
  bool is_artifact_upload(const Request& head) const;
  struct UploadStart {
    std::unique_ptr<ArtifactUpload> upload;
    Response refusal;  // when there is no upload
  };
  UploadStart begin_artifact_upload(const Request& head, std::optional<uint64_t> content_length);
  Response finish_artifact_upload(const Request& head, std::unique_ptr<ArtifactUpload> upload, const Status& streamed);

 private:
  struct Params {
    std::map<std::string, std::string> path;  // {app}, {n}, {id}
    const Request& request;
    const Principal& principal;
  };
  using Handler = std::function<Result<Answer>(const Params&)>;
  // Who may call a route besides having its role: any token, or only one
  // scoped to no application (host-wide operations).
  // kHostsToo: unscoped, or a host's token (an agent downloading its binary).
  enum class Scope { kAny, kUnscoped, kHostsToo };
  struct Route {
    std::string method;
    std::string pattern;  // "/api/v1/applications/{app}"
    Role role;
    Handler handler;
    Scope scope = Scope::kAny;
  };

  void add(std::string method, std::string pattern, Role role, Handler handler, Scope scope = Scope::kAny);
  void audit_refusal(const Request& request, const std::string& actor, const Error& error);
  // GET /applications/{app}: the tree, the fleet's counts and load; and
  // GET /members. Each answer is kept in views_ (view_cache.h: given again
  // while no event was committed since, for at most kViewLifetime), so a
  // view is rendered a few times a second at most, however often it is
  // asked for; a large one is given gzip-compressed to callers that accept it.
  Result<Response> application_view(const Params& p);
  Result<Response> members_view(const Params& p);
  ViewCache views_{kViewLifetime};
  std::atomic<uint64_t> last_seq_{0};  // the newest committed event, kept by a store watch
  uint64_t watch_id_ = 0;

  ApplicationService& apps_;
  AccessControl& access_;
  Fleet& fleet_;
  Store& store_;
  Metrics& metrics_;
  std::vector<Route> routes_;
  std::atomic<bool> ready_{true};
  ArtifactStore* artifacts_ = nullptr;
  // The caller of an upload's head, or its refusal (controller_api_upgrades.cc).
  Result<Principal> authorize_upload(const Request& head);
};

}  // namespace tranche::api
