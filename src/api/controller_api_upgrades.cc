// Routes of the artifact store and of agent upgrades (interfaces.md):
// `POST /artifacts/{name}/{version}` (streamed body), `GET
// /artifacts[/{name}[/{version}]]`, `DELETE /artifacts/{name}/{version}`,
// `GET /artifacts/sha256/{digest}` (the file, to an agent's host token or an
// operator), `POST /agents/upgrade`, `GET /agents/upgrade` and `POST
// /agents/upgrade/{pause|resume|abort}`.

#include <nlohmann/json.hpp>

#include "api/controller_api.h"
#include "model/manifest.h"
#include "protocol/messages.h"

namespace tranche::api {

namespace {

using nlohmann::json;

Response json_answer(int status, const json& body) {
  return Response{status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

Response error_answer(const Error& e) {
  json err = {{"code", to_string(e.code)}, {"message", e.message}};
  if (!e.field.empty()) {
    err["field"] = e.field;
  }
  return json_answer(http_status(e.code), json{{"error", err}});
}

// "/api/v1/artifacts/NAME/VERSION" -> {NAME, VERSION}.
std::optional<std::pair<std::string, std::string>> upload_target(const std::string& path) {
  constexpr std::string_view kPrefix = "/api/v1/artifacts/";
  if (!path.starts_with(kPrefix)) {
    return std::nullopt;
  }
  const std::string rest = path.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size() ||
      rest.find('/', slash + 1) != std::string::npos) {
    return std::nullopt;
  }
  // Percent-encoded by clients ("0.2.0+g1a2b3c" comes as "0.2.0%2Bg1a2b3c").
  return std::pair{url_decode(rest.substr(0, slash)), url_decode(rest.substr(slash + 1))};
}

Result<json> items(Result<std::vector<ArtifactRecord>> records) {
  if (!records) {
    return std::unexpected(records.error());
  }
  json out = json::array();
  for (const auto& r : *records) {
    out.push_back(artifact_json(r));
  }
  return json{{"items", out}};
}

Result<Response> answer(Result<json> body, int status = 200) {
  if (!body) {
    return std::unexpected(body.error());
  }
  return json_answer(status, *body);
}

Result<int64_t> integer_field(const json& body, const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  if (!body.contains(key)) {
    return fallback;
  }
  const json& v = body[key];
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max) {
    return fail(ErrorCode::kInvalid, key + " must be a whole number from " + std::to_string(min) + " to " +
                                         std::to_string(max),
                key);
  }
  return v.get<int64_t>();
}

}  // namespace

bool ControllerApi::is_artifact_upload(const Request& head) const {
  return artifacts_ != nullptr && head.method == "POST" && upload_target(head.path).has_value();
}

Result<Principal> ControllerApi::authorize_upload(const Request& head) {
  constexpr std::string_view kBearer = "Bearer ";
  if (!head.authorization.starts_with(kBearer)) {
    return fail(ErrorCode::kUnauthenticated, "missing bearer token (Authorization: Bearer TOKEN)");
  }
  auto principal = access_.authenticate(std::string_view(head.authorization).substr(kBearer.size()));
  if (!principal) {
    return principal;
  }
  Error refused{ErrorCode::kForbidden, "", ""};
  if (!principal->has_role(Role::kOperator)) {
    refused.message = "token '" + principal->name + "' has role " + std::string(to_string(principal->role)) +
                      "; this needs operator";
  } else if (principal->app) {
    refused.message = "token '" + principal->name + "' is scoped to application '" + *principal->app +
                      "'; artifacts are the controller's, and need a token scoped to no application";
  } else {
    return principal;
  }
  audit_refusal(head, principal->name, refused);
  return std::unexpected(refused);
}

ControllerApi::UploadStart ControllerApi::begin_artifact_upload(const Request& head,
                                                               std::optional<uint64_t> content_length) {
  auto principal = authorize_upload(head);
  if (!principal) {
    return UploadStart{nullptr, error_answer(principal.error())};
  }
  const auto [name, version] = *upload_target(head.path);
  std::optional<std::string> sha256;
  if (auto it = head.query.find("sha256"); it != head.query.end()) {
    sha256 = it->second;
  }
  auto upload = artifacts_->begin_upload(name, version, sha256, content_length,
                                         Caller{principal->name, "POST " + head.path});
  if (!upload) {
    audit_refusal(head, principal->name, upload.error());
    return UploadStart{nullptr, error_answer(upload.error())};
  }
  return UploadStart{std::move(*upload), {}};
}

Response ControllerApi::finish_artifact_upload(const Request& head, std::unique_ptr<ArtifactUpload> upload,
                                               const Status& streamed) {
  auto pushed = streamed ? upload->finish() : Result<ArtifactPushed>(std::unexpected(streamed.error()));
  if (!pushed) {
    audit_refusal(head, "artifact upload", pushed.error());
    return error_answer(pushed.error());
  }
  json body = artifact_json(pushed->record);
  body["created"] = pushed->created;
  body["message"] = pushed->created ? "artifact " + pushed->record.name + " " + pushed->record.version + " stored"
                                    : "artifact " + pushed->record.name + " " + pushed->record.version +
                                          " already has this content; nothing changed";
  return json_answer(pushed->created ? 201 : 200, body);
}

void ControllerApi::serve_upgrades(ArtifactStore& artifacts) {
  artifacts_ = &artifacts;
  const std::string v1 = "/api/v1";
  // Before /artifacts/{name}/{version}, which it would match too ("sha256"
  // is no artifact's name).
  add(
      "GET", v1 + "/artifacts/sha256/{digest}", Role::kOperator,
      [this](const Params& p) -> Result<Response> {
        auto file = artifacts_->file(p.path.at("digest"));
        if (!file) {
          return std::unexpected(file.error());
        }
        Response r{200, "application/octet-stream", "", {{"X-Tranche-Sha256", file->sha256}}};
        r.file_path = file->path.string();
        return r;
      },
      Scope::kHostsToo);
  add("GET", v1 + "/artifacts", Role::kViewer, [this](const Params&) { return answer(items(artifacts_->list({}))); });
  add("GET", v1 + "/artifacts/{name}", Role::kViewer,
      [this](const Params& p) { return answer(items(artifacts_->list(url_decode(p.path.at("name"))))); });
  add("GET", v1 + "/artifacts/{name}/{version}", Role::kViewer, [this](const Params& p) -> Result<Response> {
    auto record = artifacts_->get(url_decode(p.path.at("name")), url_decode(p.path.at("version")));
    if (!record) {
      return std::unexpected(record.error());
    }
    return json_answer(200, artifact_json(*record));
  });
  add(
      "DELETE", v1 + "/artifacts/{name}/{version}", Role::kOperator,
      [this](const Params& p) -> Result<Response> {
        const std::string name = url_decode(p.path.at("name"));
        const std::string version = url_decode(p.path.at("version"));
        if (auto removed = artifacts_->remove(name, version, Caller{p.principal.name, "DELETE " + p.request.path});
            !removed) {
          return std::unexpected(removed.error());
        }
        return json_answer(200, json{{"name", name},
                                     {"version", version},
                                     {"message", "artifact " + name + " " + version + " deleted"}});
      },
      Scope::kUnscoped);
  // The server streams these bodies to disk (is_artifact_upload); a request
  // handed here whole (tests, a small body) takes the same steps.
  add(
      "POST", v1 + "/artifacts/{name}/{version}", Role::kOperator,
      [this](const Params& p) -> Result<Response> {
        UploadStart start = begin_artifact_upload(p.request, p.request.body.size());
        if (!start.upload) {
          return start.refusal;
        }
        Status written = start.upload->write(p.request.body);
        return finish_artifact_upload(p.request, std::move(start.upload), written);
      },
      Scope::kUnscoped);

  add(
      "POST", v1 + "/agents/upgrade", Role::kAdmin,
      [this](const Params& p) -> Result<Response> {
        auto parsed = parse_json_text(p.request.body.empty() ? "{}" : p.request.body);
        if (!parsed || !parsed->is_object()) {
          return fail(ErrorCode::kInvalid,
                      "body must be a JSON object: {version, artifact, maxUnavailable?, hosts?, fallbackSeconds?}");
        }
        const json& body = *parsed;
        for (const auto& [key, _] : body.items()) {
          if (key != "version" && key != "artifact" && key != "maxUnavailable" && key != "hosts" &&
              key != "fallbackSeconds") {
            return fail(ErrorCode::kInvalid, "unknown field '" + key + "'", key);
          }
        }
        Fleet::AgentUpgradeRequest request;
        if (!body.contains("version") || !body["version"].is_string()) {
          return fail(ErrorCode::kInvalid, "version is required: the version the agents report once upgraded",
                      "version");
        }
        request.version = body["version"].get<std::string>();
        if (auto valid = ArtifactStore::check_version(request.version); !valid) {
          return std::unexpected(valid.error());
        }
        const json artifact = body.value("artifact", json());
        Result<ArtifactRecord> record = fail(ErrorCode::kInvalid,
                                             "artifact is required: its sha256, or {\"name\", \"version\"} of an "
                                             "artifact pushed before",
                                             "artifact");
        if (artifact.is_string()) {
          auto digest = ArtifactStore::check_digest(artifact.get<std::string>(), "artifact");
          if (!digest) {
            return std::unexpected(digest.error());
          }
          auto file = artifacts_->file(*digest);
          if (!file) {
            return fail(file.error().code, file.error().message, "artifact");
          }
          auto named = store_.artifacts_with_digest(*digest);
          if (!named || named->empty()) {
            return fail(ErrorCode::kNotFound, "no artifact has sha256 " + *digest, "artifact");
          }
          record = named->front();
        } else if (artifact.is_object() && artifact.contains("name") && artifact["name"].is_string() &&
                   artifact.contains("version") && artifact["version"].is_string()) {
          record = artifacts_->get(artifact["name"].get<std::string>(), artifact["version"].get<std::string>());
          if (!record) {
            return fail(record.error().code, record.error().message, "artifact");
          }
        }
        if (!record) {
          return std::unexpected(record.error());
        }
        request.artifact = *record;
        auto max_unavailable = integer_field(body, "maxUnavailable", 1, 1, 100000);
        auto fallback = integer_field(body, "fallbackSeconds", 60, protocol::kFallbackSecondsMin,
                                      protocol::kFallbackSecondsMax);
        for (const auto* checked : {&max_unavailable, &fallback}) {
          if (!*checked) {
            return std::unexpected(checked->error());
          }
        }
        request.max_unavailable = *max_unavailable;
        request.fallback_seconds = *fallback;
        if (body.contains("hosts")) {
          if (!body["hosts"].is_string()) {
            return fail(ErrorCode::kInvalid, "hosts is a label selector, key=value[,key=value...]", "hosts");
          }
          request.selector = body["hosts"].get<std::string>();
        }
        return answer(fleet_.start_agent_upgrade(request, Caller{p.principal.name, "POST " + p.request.path}), 201);
      },
      Scope::kUnscoped);
  add("GET", v1 + "/agents/upgrade", Role::kViewer, [this](const Params&) { return answer(fleet_.agent_upgrade_json()); });
  for (const char* action : {"pause", "resume", "abort"}) {
    add(
        "POST", v1 + "/agents/upgrade/" + action, Role::kAdmin,
        [this, action](const Params& p) {
          return answer(fleet_.control_agent_upgrade(action, Caller{p.principal.name, "POST " + p.request.path}));
        },
        Scope::kUnscoped);
  }
}

}  // namespace tranche::api
