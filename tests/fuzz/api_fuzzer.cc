// The REST API's request handling (api/controller_api.h) on arbitrary
// requests. Every input starts from the same store, so that every finding
// reproduces from its input alone: the application "shop" at revision 2 (so
// that the routes on an application reach past "not found") and three tokens.
// That store is made once and copied for each input, which is several times
// faster than applying its manifests again; it lives in /dev/shm, memory, so
// that the store's fsyncs cost nothing.
//
// Input: ROUTE TOKEN REST. ROUTE is a digit (any byte works, modulo the
// routes), TOKEN picks the caller ('s': an operator scoped to shop, 'v': a
// viewer, anything else: the admin), and REST is the body of a mutating
// route, or for ROUTE 6 a whole request: "METHOD TARGET\nBODY".
//
// Besides "no crash, leak or sanitizer report": no answer is a 5xx (bad input
// is the caller's fault, and handle() turns an exception into a 500), and
// every JSON answer is valid JSON, an error one with error.code.

#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/controller_api.h"

namespace tranche::api {
namespace {

constexpr std::string_view kRevision1 = R"(application: shop
groups:
  - name: backend
    clusters:
      - name: db
        members: {desired: 1}
        artifact: {version: "1", command: [db]}
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 1, desired: 2, max: 4}
    ports: [http]
    artifact: {version: "1", command: [web, --port, "${PORT_HTTP}"]}
    health: {http: {port: http, path: /healthz}}
)";

// kRevision1 with web at version 2: an update, so that undo has a target.
std::string revision2() {
  std::string text(kRevision1);
  const std::string from = "{version: \"1\", command: [web";
  text.replace(text.find(from), from.size(), "{version: \"2\", command: [web");
  return text;
}

[[noreturn]] void broken(const std::string& what, const Request& r, const Response& response) {
  std::fprintf(stderr, "API invariant broken: %s\n%s %s (%zu query parameters)\n%s\n-> %d %s\n", what.c_str(),
               r.method.c_str(), r.path.c_str(), r.query.size(), r.body.c_str(), response.status,
               response.body.c_str());
  std::abort();
}

struct Tokens {
  std::string admin;
  std::string scoped_operator;
  std::string viewer;
};

// The store every input starts from, and where each input's copy goes; the
// directory goes when the fuzzer exits (a crash leaves it behind).
class Template {
 public:
  Template() : dir_(make_dir()), store_(dir_ / "template.db"), copy_(dir_ / "input.db") {
    ManualClock clock;
    auto store = open_sqlite_store({store_.string()}).value();
    AccessControl access(*store, clock);
    ApplicationService apps(*store, clock);
    const Caller setup{"fuzz", "setup"};
    tokens_.admin = access.create_token(Role::kAdmin, std::nullopt, "", setup).value().secret_token;
    tokens_.scoped_operator = access.create_token(Role::kOperator, "shop", "shop-operator", setup).value().secret_token;
    tokens_.viewer = access.create_token(Role::kViewer, std::nullopt, "viewer", setup).value().secret_token;
    apps.apply(kRevision1, ManifestFormat::kYaml, false, setup, std::nullopt).value();
    apps.apply(revision2(), ManifestFormat::kYaml, false, setup, std::nullopt).value();
  }  // the store closes here, its WAL checkpointed into the file
  ~Template() { std::filesystem::remove_all(dir_); }
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  std::unique_ptr<Store> open_copy() const {
    std::filesystem::copy_file(store_, copy_, std::filesystem::copy_options::overwrite_existing);
    return open_sqlite_store({copy_.string()}).value();
  }
  const Tokens& tokens() const { return tokens_; }

 private:
  static std::filesystem::path make_dir() {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string dir = (base / "tranche-fuzz-api-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return dir;
  }

  std::filesystem::path dir_;
  std::filesystem::path store_;
  std::filesystem::path copy_;
  Tokens tokens_;
};

// One controller's request handling over a fresh copy of the template.
struct Controller {
  explicit Controller(const Template& t)
      : store(t.open_copy()),
        access(*store, clock),
        apps(*store, clock),
        fleet(*store, clock, FleetOptions{}),
        api(apps, access, fleet, *store, metrics) {}

  ManualClock clock;
  Metrics metrics;
  std::unique_ptr<Store> store;
  AccessControl access;
  ApplicationService apps;
  Fleet fleet;
  ControllerApi api;
};

// "METHOD TARGET\nBODY" into the request.
void read_raw_request(std::string_view text, Request& r) {
  const size_t line_end = std::min(text.find('\n'), text.size());
  const std::string_view line = text.substr(0, line_end);
  const size_t space = std::min(line.find(' '), line.size());
  r.method = std::string(line.substr(0, space));
  const std::string_view target = line.substr(std::min(space + 1, line.size()));
  const size_t q = std::min(target.find('?'), target.size());
  r.path = std::string(target.substr(0, q));
  if (q < target.size()) {
    r.query = parse_query(target.substr(q + 1));
  }
  r.body = std::string(text.substr(std::min(line_end + 1, text.size())));
}

Request read_request(std::string_view input, const Tokens& tokens) {
  Request r;
  const uint8_t route = input.empty() ? 0 : static_cast<uint8_t>(input[0] - '0') % 7;
  const char token = input.size() > 1 ? input[1] : 'a';
  const std::string_view rest = input.substr(std::min<size_t>(2, input.size()));
  r.authorization = "Bearer " + (token == 's' ? tokens.scoped_operator : token == 'v' ? tokens.viewer : tokens.admin);
  r.body = std::string(rest);
  // The mutating routes that read a body; route 6 is a raw request. Route 2
  // has no content type: the format is told from the body.
  struct BodyRoute {
    const char* method;
    const char* path;
    const char* content_type;
    bool dry_run;
  };
  static constexpr BodyRoute kRoutes[] = {
      {"POST", "/api/v1/applications", "application/json", false},
      {"POST", "/api/v1/applications", "application/yaml", false},
      {"POST", "/api/v1/applications", "", true},
      {"PUT", "/api/v1/applications/shop/operational-state", "application/json", false},
      {"POST", "/api/v1/applications/shop/rollout/undo", "application/json", false},
      {"POST", "/api/v1/tokens", "application/json", false},
  };
  if (route >= std::size(kRoutes)) {
    read_raw_request(rest, r);
    return r;
  }
  const BodyRoute& chosen = kRoutes[route];
  r.method = chosen.method;
  r.path = chosen.path;
  r.content_type = chosen.content_type;
  if (chosen.dry_run) {
    r.query["dryRun"] = "1";
  }
  return r;
}

void check(const Request& r, const Response& response) {
  if (response.status >= 500) {
    broken("a 5xx answer", r, response);
  }
  if (response.content_type != "application/json") {
    return;
  }
  const nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded()) {
    broken("an answer that is not JSON", r, response);
  }
  if (response.status >= 400 && !(body.contains("error") && body["error"].contains("code"))) {
    broken("an error answer without error.code", r, response);
  }
}

}  // namespace
}  // namespace tranche::api

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tranche::api;
  static const Template base;
  Controller controller(base);
  const Request request = read_request(std::string_view(reinterpret_cast<const char*>(data), size), base.tokens());
  RouteResult result = controller.api.handle(request);
  if (result.stream) {
    return 0;  // the server streams the events: no answer here
  }
  if (result.deferred) {
    // A member's logs, asked of its agent: with no agents the answer comes at
    // once or not before the next tick; either is fine here.
    std::optional<Response> later;
    result.deferred([&](Response response) { later = std::move(response); });
    if (later) {
      check(request, *later);
    }
    return 0;
  }
  check(request, result.response);
  return 0;
}
