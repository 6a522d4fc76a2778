#include "api/controller_api.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "api/console.h"
#include "common/build_version.h"
#include "common/gzip.h"
#include "common/names.h"
#include "common/time_format.h"
#include "model/manifest.h"

namespace tranche::api {

namespace {

using nlohmann::json;

// Error messages quote what the caller sent (a path, a key, a parser's "last
// read"), which need not be UTF-8: such bytes are written as U+FFFD, where
// dump() would throw out of handle() and end the controller.
Response json_response(int status, const json& body) {
  return Response{status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// A large answer that is not kept compressed (the views are: view_cache.h)
// is compressed for its caller alone, as Kubernetes' API server does above
// 128 KiB: its CPU is worth it for any caller not on the same machine (a
// page of 1,000 events, 10,000 hosts).
constexpr size_t kGzipEachAbove = 128 * 1024;

void gzip_if_large(Response& response, bool accepts_gzip) {
  const bool encoded = std::any_of(response.headers.begin(), response.headers.end(),
                                   [](const auto& field) { return field.first == "Content-Encoding"; });
  if (!accepts_gzip || encoded || !response.file_path.empty() || response.body.size() <= kGzipEachAbove) {
    return;
  }
  response.body = gzip(response.body);
  response.headers.emplace_back("Content-Encoding", "gzip");
  response.headers.emplace_back("Vary", "Accept-Encoding");
}

Response error_response(const Error& e) {
  json err = {{"code", to_string(e.code)}, {"message", e.message}};
  if (!e.field.empty()) {
    err["field"] = e.field;
  }
  return json_response(http_status(e.code), json{{"error", err}});
}

// A request body that must be a JSON object; an empty one is {}. A key
// given twice is refused, naming it: nlohmann would keep the last in silence.
Result<json> body_object(const std::string& body) {
  auto parsed = parse_json_text(body.empty() ? "{}" : body);
  if (!parsed) {
    return fail(ErrorCode::kInvalid, "body: " + parsed.error().message);
  }
  if (!parsed->is_object()) {
    return fail(ErrorCode::kInvalid, "body must be a JSON object");
  }
  return parsed;
}

// Splits "/a/b/c" into {"a","b","c"}.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') {
      ++i;
    }
    const size_t start = i;
    while (i < path.size() && path[i] != '/') {
      ++i;
    }
    if (i > start) {
      out.push_back(path.substr(start, i - start));
    }
  }
  return out;
}

// "{name}" matches one segment, "{name+}" one or more (member ids have slashes).
bool match(std::string_view pattern, std::string_view path, std::map<std::string, std::string>& params) {
  const auto p = segments(pattern);
  const auto s = segments(path);
  size_t si = 0;
  for (size_t pi = 0; pi < p.size(); ++pi) {
    if (p[pi].ends_with("+}")) {
      const size_t rest = p.size() - pi - 1;  // fixed segments after the greedy one
      if (s.size() < si + 1 + rest) {
        return false;
      }
      std::string joined;
      for (; si < s.size() - rest; ++si) {
        joined += (joined.empty() ? "" : "/") + std::string(s[si]);
      }
      params[std::string(p[pi].substr(1, p[pi].size() - 3))] = joined;
    } else if (si >= s.size()) {
      return false;
    } else if (p[pi].starts_with('{')) {
      params[std::string(p[pi].substr(1, p[pi].size() - 2))] = std::string(s[si++]);
    } else if (p[pi] != s[si++]) {
      return false;
    }
  }
  return si == s.size();
}

bool is_mutating(const std::string& method) { return method != "GET" && method != "HEAD"; }

std::optional<std::string> query_param(const Request& r, const std::string& key) {
  auto it = r.query.find(key);
  if (it == r.query.end() || it->second.empty()) {
    return std::nullopt;
  }
  return it->second;
}

Result<uint64_t> parse_uint(const std::string& text, const std::string& field) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return fail(ErrorCode::kInvalid, "expected a non-negative integer, got '" + text + "'", field);
  }
  return v;
}

// Revisions are kept as int64 and count from 1; a larger number cannot name
// one. (Cast, 18446744073709551615 was looked up, and reported, as -1.)
constexpr uint64_t kMaxRevision = std::numeric_limits<int64_t>::max();

Error revision_out_of_range(const std::string& text, const std::string& field) {
  return Error{ErrorCode::kInvalid,
               field + " " + text + " is out of range: revisions go from 1 to " + std::to_string(kMaxRevision), field};
}

Result<int64_t> parse_revision(const std::string& text, const std::string& field) {
  auto n = parse_uint(text, field);
  if (!n) {
    return std::unexpected(n.error());
  }
  if (*n > kMaxRevision) {
    return std::unexpected(revision_out_of_range(text, field));
  }
  return static_cast<int64_t>(*n);
}

bool truthy(const std::optional<std::string>& v) { return v && (*v == "1" || *v == "true" || *v == "yes"); }

ManifestFormat manifest_format(const Request& r) {
  const std::string& ct = r.content_type;
  if (ct.find("json") != std::string::npos) {
    return ManifestFormat::kJson;
  }
  if (ct.find("yaml") != std::string::npos) {
    return ManifestFormat::kYaml;
  }
  const auto first = r.body.find_first_not_of(" \t\r\n");
  return first != std::string::npos && r.body[first] == '{' ? ManifestFormat::kJson : ManifestFormat::kYaml;
}

// Wraps an engine call returning JSON into a response.
Result<Response> ok(Result<json> body, int status = 200) {
  if (!body) {
    return std::unexpected(body.error());
  }
  return json_response(status, *body);
}

}  // namespace

namespace {
json apply_json(const ApplyOutcome& o) {
  json body = {{"application", o.app}, {"revision", o.revision}, {"created", o.created}, {"changed", o.changed},
               {"dryRun", o.dry_run},  {"summary", o.summary},   {"message", o.message}};
  if (!o.operation_id.empty()) {
    body["operation"] = o.operation_id;
  }
  body["rollout"] = o.rollout ? json(*o.rollout) : json(nullptr);
  return body;
}
}  // namespace

json event_json(const EventRecord& e) {
  json j = {{"seq", e.seq},        {"time", format_rfc3339(e.time)}, {"app", e.app}, {"path", e.path}, {"type", e.type},
            {"message", e.message}};
  if (!e.member.empty()) {
    j["member"] = e.member;
  }
  j["from"] = json::parse(e.from_json, nullptr, false);
  j["to"] = json::parse(e.to_json, nullptr, false);
  return j;
}

ControllerApi::ControllerApi(ApplicationService& apps, AccessControl& access, Fleet& fleet, Store& store,
                             Metrics& metrics)
    : apps_(apps), access_(access), fleet_(fleet), store_(store), metrics_(metrics) {
  watch_id_ = store_.watch([this](uint64_t seq) { last_seq_.store(seq); });
  last_seq_.store(store_.last_event_seq().value_or(0));
  const std::string v1 = "/api/v1";

  add("GET", v1 + "/hosts", Role::kViewer, [this](const Params& p) { return ok(fleet_.hosts_json(p.principal.app)); });
  for (const char* action : {"drain", "undrain"}) {
    add(
        "POST", v1 + "/hosts/{id}/" + action, Role::kAdmin,
        [this, action](const Params& p) {
          return ok(fleet_.set_host_draining(p.path.at("id"), std::string(action) == "drain",
                                             Caller{p.principal.name, "POST " + p.request.path}));
        },
        Scope::kUnscoped);
  }
  add("GET", v1 + "/members", Role::kViewer, [this](const Params& p) { return members_view(p); });
  add("GET", v1 + "/members/{id+}/logs", Role::kViewer, [this](const Params& p) -> Result<Answer> {
    return Answer([this, id = p.path.at("id"), app = p.principal.app, hook = query_param(p.request, "hook")](
                      Reply reply) {
      fleet_.logs(id, app, hook, std::chrono::seconds(5), [reply = std::move(reply)](Result<json> body) {
        reply(body ? json_response(200, *body) : error_response(body.error()));
      });
    });
  });
  add("GET", v1 + "/members/{id+}", Role::kViewer,
      [this](const Params& p) { return ok(fleet_.member_json(p.path.at("id"), p.principal.app)); });

  add("POST", v1 + "/applications", Role::kOperator, [this](const Params& p) -> Result<Response> {
    const bool dry_run = truthy(query_param(p.request, "dryRun"));
    auto outcome = apps_.apply(p.request.body, manifest_format(p.request), dry_run,
                               Caller{p.principal.name, "POST /api/v1/applications"}, p.principal.app);
    if (!outcome) {
      return std::unexpected(outcome.error());
    }
    const auto& o = *outcome;
    return json_response(o.created && !o.dry_run ? 201 : 200, apply_json(o));
  });
  add("GET", v1 + "/applications", Role::kViewer,
      [this](const Params& p) { return ok(apps_.list_applications(p.principal.app)); });
  add("GET", v1 + "/applications/{app}", Role::kViewer, [this](const Params& p) { return application_view(p); });
  add("DELETE", v1 + "/applications/{app}", Role::kOperator, [this](const Params& p) {
    return ok(apps_.undeploy(p.path.at("app"), Caller{p.principal.name, "DELETE " + p.request.path}));
  });
  add("GET", v1 + "/applications/{app}/revisions", Role::kViewer,
      [this](const Params& p) { return ok(apps_.list_revisions(p.path.at("app"))); });
  add("GET", v1 + "/applications/{app}/revisions/{n}", Role::kViewer, [this](const Params& p) -> Result<Response> {
    auto n = parse_revision(p.path.at("n"), "revision");
    if (!n) {
      return std::unexpected(n.error());
    }
    return ok(apps_.get_revision(p.path.at("app"), *n));
  });
  add("PUT", v1 + "/applications/{app}/operational-state", Role::kOperator,
      [this](const Params& p) -> Result<Response> {
        auto body = body_object(p.request.body);
        if (!body) {
          return std::unexpected(body.error());
        }
        auto change = parse_operational_change(*body);
        if (!change) {
          return std::unexpected(change.error());
        }
        return ok(
            apps_.set_operational_state(p.path.at("app"), *change, Caller{p.principal.name, "PUT " + p.request.path}));
      });
  add("GET", v1 + "/applications/{app}/operational-state", Role::kViewer, [this](const Params& p) {
    return ok(apps_.operational_state(p.path.at("app"), query_param(p.request, "path")));
  });
  add("GET", v1 + "/applications/{app}/rollout", Role::kViewer, [this](const Params& p) {
    const std::string& app = p.path.at("app");
    return ok(apps_.rollout_view(app, [&](const std::vector<std::string>& clusters, int64_t revision) {
      std::map<std::string, ApplicationService::RolloutCounts> out;
      for (const auto& [path, c] : fleet_.cluster_counts(app, clusters)) {
        const auto live = c.live_by_revision.find(revision);
        out[path] = {live == c.live_by_revision.end() ? 0 : live->second,
                     c.by_state[static_cast<size_t>(MemberState::kActive)]};
      }
      return out;
    }));
  });
  for (const char* action : {"pause", "resume", "abort", "promote"}) {
    add("POST", v1 + "/applications/{app}/rollout/" + action, Role::kOperator, [this, action](const Params& p) {
      return ok(apps_.rollout_control(p.path.at("app"), action, Caller{p.principal.name, "POST " + p.request.path}));
    });
  }
  add("POST", v1 + "/applications/{app}/rollout/undo", Role::kOperator, [this](const Params& p) -> Result<Response> {
    auto parsed = body_object(p.request.body);
    if (!parsed) {
      return std::unexpected(parsed.error());
    }
    const json& body = *parsed;
    std::optional<int64_t> to;
    for (const auto& [key, value] : body.items()) {
      if (key != "toRevision") {
        return fail(ErrorCode::kInvalid, "unknown field '" + key + "'", key);
      }
      if (value.is_number_unsigned() && value.get<uint64_t>() > kMaxRevision) {
        return std::unexpected(revision_out_of_range(value.dump(), "toRevision"));
      }
      if (!value.is_number_integer() || value.get<int64_t>() < 1) {
        return fail(ErrorCode::kInvalid, "toRevision must be a revision number (1, 2, ...)", "toRevision");
      }
      to = value.get<int64_t>();
    }
    auto outcome = apps_.undo(p.path.at("app"), to, Caller{p.principal.name, "POST " + p.request.path});
    if (!outcome) {
      return std::unexpected(outcome.error());
    }
    return json_response(200, apply_json(*outcome));
  });
  // Migration mode: an application's lock, and the platform's (--all).
  for (const char* action : {"begin", "complete", "cancel"}) {
    add("POST", v1 + "/applications/{app}/migration/" + action, Role::kOperator, [this, action](const Params& p) {
      const Caller caller{p.principal.name, "POST " + p.request.path};
      const std::string app = p.path.at("app");
      return ok(std::string(action) == "begin" ? apps_.migration_begin(app, caller)
                                               : apps_.migration_end(app, std::string(action) == "complete", caller));
    });
    add(
        "POST", v1 + "/migration/" + action, Role::kAdmin,
        [this, action](const Params& p) {
          const Caller caller{p.principal.name, "POST " + p.request.path};
          return ok(std::string(action) == "begin"
                        ? apps_.migration_begin(std::nullopt, caller)
                        : apps_.migration_end(std::nullopt, std::string(action) == "complete", caller));
        },
        Scope::kUnscoped);
  }
  add("POST", v1 + "/applications/{app}/migration/perform", Role::kOperator,
      [this](const Params& p) -> Result<Response> {
        auto body = body_object(p.request.body);
        if (!body) {
          return std::unexpected(body.error());
        }
        std::optional<int64_t> to;
        std::optional<std::string> member;
        for (const auto& [key, value] : body->items()) {
          if (key == "member" && value.is_string() && !value.get<std::string>().empty()) {
            member = value.get<std::string>();
          } else if (key == "member") {
            return fail(ErrorCode::kInvalid, "member must be a member id like web/3", key);
          } else if (key != "toRevision") {
            return fail(ErrorCode::kInvalid, "unknown field '" + key + "'", key);
          } else if (value.is_number_unsigned() && value.get<uint64_t>() > kMaxRevision) {
            return std::unexpected(revision_out_of_range(value.dump(), key));
          } else if (!value.is_number_integer() || value.get<int64_t>() < 1) {
            return fail(ErrorCode::kInvalid, "toRevision must be a revision number (1, 2, ...)", key);
          } else {
            to = value.get<int64_t>();
          }
        }
        if (!to) {
          return fail(ErrorCode::kInvalid, "toRevision is required: the revision to move to", "toRevision");
        }
        return ok(apps_.migration_perform(p.path.at("app"), member, *to,
                                          Caller{p.principal.name, "POST " + p.request.path}));
      });
  add("GET", v1 + "/migration", Role::kViewer,
      [this](const Params& p) { return ok(apps_.migration_locks(p.principal.app)); });
  add("GET", v1 + "/events", Role::kViewer, [this](const Params& p) -> Result<Response> {
    uint64_t since = 0;
    if (auto s = query_param(p.request, "since")) {
      auto v = parse_uint(*s, "since");
      if (!v) {
        return std::unexpected(v.error());
      }
      since = *v;
    }
    size_t limit = 1000;
    if (auto l = query_param(p.request, "limit")) {
      auto v = parse_uint(*l, "limit");
      if (!v) {
        return std::unexpected(v.error());
      }
      limit = static_cast<size_t>(std::clamp<uint64_t>(*v, 1, 10000));
    }
    auto app = p.principal.app ? p.principal.app : query_param(p.request, "app");
    auto events = store_.list_events(EventQuery{since, app, limit});
    if (!events) {
      return std::unexpected(events.error());
    }
    json items = json::array();
    for (const auto& e : *events) {
      items.push_back(event_json(e));
    }
    return json_response(200, json{{"items", items}, {"last", events->empty() ? since : events->back().seq}});
  });
  add("POST", v1 + "/tokens", Role::kAdmin, [this](const Params& p) -> Result<Response> {
    auto parsed = body_object(p.request.body);
    if (!parsed) {
      return std::unexpected(parsed.error());
    }
    const json& body = *parsed;
    for (const auto& [key, _] : body.items()) {
      if (key != "role" && key != "app" && key != "name") {
        return fail(ErrorCode::kInvalid, "unknown field '" + key + "'", key);
      }
    }
    if (!body.contains("role") || !body["role"].is_string()) {
      return fail(ErrorCode::kInvalid, "role is required: admin, operator or viewer", "role");
    }
    auto role = role_from_string(body["role"].get<std::string>());
    if (!role) {
      return fail(ErrorCode::kInvalid, "role must be admin, operator or viewer", "role");
    }
    std::optional<std::string> app;
    if (body.contains("app")) {
      if (!body["app"].is_string()) {
        return fail(ErrorCode::kInvalid, "expected a string", "app");
      }
      app = body["app"].get<std::string>();
    }
    std::string name;
    if (body.contains("name")) {
      if (!body["name"].is_string() || !is_valid_name(body["name"].get<std::string>())) {
        return fail(ErrorCode::kInvalid, "a token name is a lower-case name like 'ci-deployer'", "name");
      }
      name = body["name"].get<std::string>();
    }
    auto issued = access_.create_token(p.principal, *role, app, name, Caller{p.principal.name, "POST /api/v1/tokens"});
    if (!issued) {
      return std::unexpected(issued.error());
    }
    json out = {{"id", issued->record.id},
                {"name", issued->record.name},
                {"role", to_string(issued->record.role)},
                {"token", issued->secret_token}};
    out["app"] = app ? json(*app) : json(nullptr);
    return json_response(201, out);
  });
  // Who the caller's token is, so that a client (the console) offers only
  // what the token may do; and the newest event's seq, where a client that
  // shows recent events and then follows the stream starts.
  add("GET", v1 + "/whoami", Role::kViewer, [this](const Params& p) -> Result<Response> {
    auto last = store_.last_event_seq();
    if (!last) {
      return std::unexpected(last.error());
    }
    json out = {{"name", p.principal.name}, {"role", to_string(p.principal.role)}, {"lastEventSeq", *last}};
    out["app"] = p.principal.app ? json(*p.principal.app) : json(nullptr);
    return json_response(200, out);
  });
  add("GET", v1 + "/operations/{id}", Role::kViewer, [this](const Params& p) -> Result<Response> {
    auto op = apps_.get_operation(p.path.at("id"));
    if (!op) {
      return std::unexpected(op.error());
    }
    if (!p.principal.can_see((*op)["application"].get<std::string>())) {
      return fail(ErrorCode::kNotFound, "operation '" + p.path.at("id") + "' not found");
    }
    return json_response(200, *op);
  });
}

void ControllerApi::add(std::string method, std::string pattern, Role role, Handler handler, Scope scope) {
  routes_.push_back(Route{std::move(method), std::move(pattern), role, std::move(handler), scope});
}

void ControllerApi::audit_refusal(const Request& request, const std::string& actor, const Error& error) {
  // The request line is the caller's to make as long as it likes: a row
  // keeps its first kAuditedPathBytes.
  constexpr size_t kAuditedPathBytes = 256;
  std::string path = request.path.substr(0, kAuditedPathBytes);
  if (request.path.size() > kAuditedPathBytes) {
    path += "... (" + std::to_string(request.path.size()) + " bytes)";
  }
  WriteBatch batch;
  batch.mutations.push_back(AppendAudit{{0, std::chrono::system_clock::now(), actor, request.method + " " + path, "",
                                         std::to_string(http_status(error.code)) + " " + error.describe()}});
  // An audit write that fails must not mask the answer the caller is owed;
  // the failure is visible in the store commit-failure metric.
  (void)store_.commit(batch);
}

ControllerApi::~ControllerApi() { store_.unwatch(watch_id_); }

RouteResult ControllerApi::handle(const Request& request) {
  RouteResult result;
  const std::string& path = request.path;

  // Unauthenticated endpoints.
  if (request.method == "GET" && path == "/healthz") {
    result.route = path;
    result.response = Response{200, "text/plain", "ok\n"};
    return result;
  }
  if (request.method == "GET" && path == "/readyz") {
    result.route = path;
    // Ready only while the store answers what every reconcile pass reads
    // (a damaged table fails there, not on the meta row of the seq).
    const bool ready = ready_ && store_.last_event_seq().has_value() && store_.list_applications().has_value();
    result.response = Response{ready ? 200 : 503, "text/plain", ready ? "ready\n" : "not ready\n"};
    return result;
  }
  // The console's files hold no data: the page asks for a token and sends
  // it with every API request it makes.
  if (request.method == "GET") {
    if (auto page = console_response(path)) {
      result.route = "/ui";
      result.response = std::move(*page);
      return result;
    }
  }
  if (request.method == "GET" && path == "/metrics") {
    result.route = path;
    result.response = Response{200, "text/plain; version=0.0.4", metrics_.render()};
    return result;
  }

  const Route* route = nullptr;
  std::map<std::string, std::string> params;
  bool path_known = false;
  for (const auto& r : routes_) {
    std::map<std::string, std::string> candidate;
    if (match(r.pattern, path, candidate)) {
      path_known = true;
      if (r.method == request.method) {
        route = &r;
        params = std::move(candidate);
        break;
      }
    }
  }
  const bool version_route = request.method == "GET" && (path == "/version" || path == "/api/v1/version");
  result.route = route ? route->pattern : version_route ? "/version" : "unmatched";

  // Refusals of callers without a valid token are not written: anyone could
  // fill the disk with them (one fsynced row each). /metrics counts them
  // (tranche_http_requests_total by status).
  auto fail_with = [&](const Error& e, const std::string& actor) {
    if (is_mutating(request.method) && e.code != ErrorCode::kUnauthenticated) {
      audit_refusal(request, actor, e);
    }
    result.response = error_response(e);
    return result;
  };

  constexpr std::string_view kBearer = "Bearer ";
  if (!request.authorization.starts_with(kBearer)) {
    return fail_with(Error{ErrorCode::kUnauthenticated, "missing bearer token (Authorization: Bearer TOKEN)", ""},
                     "anonymous");
  }
  auto principal = access_.authenticate(std::string_view(request.authorization).substr(kBearer.size()));
  if (!principal && route && route->scope == Scope::kHostsToo) {
    // An agent's host token: it may download, and nothing else.
    if (auto host = fleet_.host_of_token(std::string_view(request.authorization).substr(kBearer.size()))) {
      principal = Principal{"", "host " + *host, route->role, std::nullopt};
    }
  }
  if (!principal) {
    return fail_with(principal.error(), "anonymous");
  }

  if (version_route) {
    result.response = json_response(
        200, json{{"version", build_version()}, {"protocol", protocol::kVersion}, {"schema", store_.schema_version()}});
    return result;
  }
  if (!route) {
    return fail_with(path_known ? Error{ErrorCode::kInvalid, request.method + " is not allowed on " + path, ""}
                                : Error{ErrorCode::kNotFound, "no such endpoint: " + path, ""},
                     principal->name);
  }
  if (auto it = params.find("app"); it != params.end() && !principal->can_see(it->second)) {
    return fail_with(Error{ErrorCode::kNotFound, "application '" + it->second + "' not found", ""}, principal->name);
  }
  if (!principal->has_role(route->role)) {
    return fail_with(Error{ErrorCode::kForbidden,
                           "token '" + principal->name + "' has role " + std::string(to_string(principal->role)) +
                               "; this needs " + std::string(to_string(route->role)),
                           ""},
                     principal->name);
  }
  if (route->scope != Scope::kAny && principal->app) {
    return fail_with(Error{ErrorCode::kForbidden,
                           "token '" + principal->name + "' is scoped to application '" + *principal->app +
                               "'; host-wide operations need a token scoped to no application",
                           ""},
                     principal->name);
  }

  if (route->pattern == "/api/v1/events" && truthy(query_param(request, "follow"))) {
    uint64_t since = 0;
    if (auto s = query_param(request, "since")) {
      auto v = parse_uint(*s, "since");
      if (!v) {
        return fail_with(v.error(), principal->name);
      }
      since = *v;
    }
    result.stream = EventStreamRequest{since, principal->app ? principal->app : query_param(request, "app")};
    return result;
  }

  Result<Answer> answer = [&]() -> Result<Answer> {
    try {
      return route->handler(Params{params, request, *principal});
    } catch (const std::exception& e) {
      return fail(ErrorCode::kInternal, std::string("internal error: ") + e.what());
    }
  }();
  if (!answer) {
    return fail_with(answer.error(), principal->name);
  }
  if (is_mutating(request.method)) {
    fleet_.request_pass();  // what the write changed is acted on now, not at the next tick
  }
  result.response = std::move(answer->response);
  gzip_if_large(result.response, request.accepts_gzip);
  if (answer->deferred) {
    result.deferred = [deferred = std::move(answer->deferred), accepts = request.accepts_gzip](Reply reply) {
      deferred([reply = std::move(reply), accepts](Response response) {
        gzip_if_large(response, accepts);
        reply(std::move(response));
      });
    };
  }
  return result;
}

}  // namespace tranche::api
