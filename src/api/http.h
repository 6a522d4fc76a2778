#pragma once
// Transport-neutral request and response types shared by the router and the
// Beast server, so handlers are testable without sockets.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tranche::api {

struct Request {
  std::string method;  // "GET"
  std::string path;    // "/api/v1/applications/shop", no query
  std::map<std::string, std::string> query;
  std::string authorization;  // the Authorization header, verbatim
  std::string content_type;
  bool accepts_gzip = false;  // Accept-Encoding admits gzip (common/gzip.h)
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Further header fields (the console's caching and content policy).
  std::vector<std::pair<std::string, std::string>> headers;
  // Set: the body is this file, streamed by the server (an artifact), and
  // `body` is unused.
  std::string file_path;
};

// A request for a Server-Sent Events stream of the event log.
struct EventStreamRequest {
  uint64_t since = 0;
  std::optional<std::string> app;
};

// How an answer that comes later is given: once, from any thread.
using Reply = std::function<void(Response)>;
// Starts the work whose answer comes later; it calls the reply when done.
using Deferred = std::function<void(Reply)>;

// What a route answers: a response now, or later (`deferred` set: nothing
// waits meanwhile, e.g. a member's logs asked of its agent).
struct Answer {
  Answer(Response r) : response(std::move(r)) {}  // NOLINT: a response is an answer
  explicit Answer(Deferred d) : deferred(std::move(d)) {}
  Response response;
  Deferred deferred;
};

struct RouteResult {
  Response response;
  std::optional<EventStreamRequest> stream;  // set: answer with SSE instead
  Deferred deferred;                         // set: the response comes later, through it
  std::string route;                         // template, for metrics: "/api/v1/applications/{app}"
};

// Splits "a=1&b=x%20y" into decoded pairs.
std::map<std::string, std::string> parse_query(std::string_view query);
std::string url_decode(std::string_view s);

}  // namespace tranche::api
