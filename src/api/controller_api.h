#pragma once
// The REST API of interfaces.md as a table of routes over the engine. Each
// route names the role it needs; a token scoped to one application gets 404
// for every other application, as if it did not exist, and 403 on host-wide
// operations (those need an unscoped admin token).

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "api/http.h"
#include "api/metrics.h"
#include "engine/access.h"
#include "engine/application_service.h"
#include "engine/fleet/fleet.h"
#include "store/store.h"

namespace tranche::api {

nlohmann::json event_json(const EventRecord& e);

class ControllerApi {
 public:
  ControllerApi(ApplicationService& apps, AccessControl& access, Fleet& fleet, Store& store, Metrics& metrics);

  // Routes, authenticates, runs the handler, records failures of mutating
  // calls in the audit log. Never throws.
  RouteResult handle(const Request& request);

  // What a draining or not-yet-ready controller answers on /readyz.
  void set_ready(bool ready) { ready_ = ready; }

 private:
  struct Params {
    std::map<std::string, std::string> path;  // {app}, {n}, {id}
    const Request& request;
    const Principal& principal;
  };
  using Handler = std::function<Result<Answer>(const Params&)>;
  // Who may call a route besides having its role: any token, or only one
  // scoped to no application (host-wide operations).
  enum class Scope { kAny, kUnscoped };
  struct Route {
    std::string method;
    std::string pattern;  // "/api/v1/applications/{app}"
    Role role;
    Handler handler;
    Scope scope = Scope::kAny;
  };

  void add(std::string method, std::string pattern, Role role, Handler handler, Scope scope = Scope::kAny);
  void audit_refusal(const Request& request, const std::string& actor, const Error& error);

  ApplicationService& apps_;
  AccessControl& access_;
  Fleet& fleet_;
  Store& store_;
  Metrics& metrics_;
  std::vector<Route> routes_;
  std::atomic<bool> ready_{true};
};

}  // namespace tranche::api
