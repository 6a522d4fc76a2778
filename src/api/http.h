#pragma once
// Transport-neutral request and response types shared by the router and the
// Beast server, so handlers are testable without sockets.

#include <map>
#include <optional>
#include <string>

namespace tranche::api {

struct Request {
  std::string method;  // "GET"
  std::string path;    // "/api/v1/applications/shop", no query
  std::map<std::string, std::string> query;
  std::string authorization;  // the Authorization header, verbatim
  std::string content_type;
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// A request for a Server-Sent Events stream of the event log.
struct EventStreamRequest {
  uint64_t since = 0;
  std::optional<std::string> app;
};

struct RouteResult {
  Response response;
  std::optional<EventStreamRequest> stream;  // set: answer with SSE instead
  std::string route;                         // template, for metrics: "/api/v1/applications/{app}"
};

// Splits "a=1&b=x%20y" into decoded pairs.
std::map<std::string, std::string> parse_query(std::string_view query);
std::string url_decode(std::string_view s);

}  // namespace tranche::api
