#include "api/console.h"

#include <string>

#include "api/console_files.h"

namespace tranche::api {

namespace {

std::string content_type_of(std::string_view name) {
  if (name.ends_with(".html")) {
    return "text/html; charset=utf-8";
  }
  if (name.ends_with(".js")) {
    return "text/javascript; charset=utf-8";
  }
  if (name.ends_with(".css")) {
    return "text/css; charset=utf-8";
  }
  if (name.ends_with(".svg")) {
    return "image/svg+xml";
  }
  return "application/octet-stream";
}

// The page runs only its own script and style and talks only to its own
// origin: injected markup (an event message, a member's log line) could not
// load or send anything elsewhere even if the page let it in. no-cache: a
// new controller binary serves its own files at once (they are small).
Response with_policy(Response response) {
  response.headers = {
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"Cache-Control", "no-cache"},
  };
  return response;
}

}  // namespace

std::optional<Response> console_response(std::string_view path) {
  if (path != "/ui" && !path.starts_with("/ui/")) {
    return std::nullopt;
  }
  std::string_view name = path.size() <= 4 ? std::string_view("index.html") : path.substr(4);
  for (const ConsoleFile& file : console_files()) {
    if (file.name == name) {
      return with_policy(Response{200, content_type_of(name), std::string(file.body), {}});
    }
  }
  return with_policy(Response{404, "text/plain; charset=utf-8", "no such console file: " + std::string(path) + "\n", {}});
}

}  // namespace tranche::api
