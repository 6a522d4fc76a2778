#pragma once
// GET of an artifact from the controller (the upgradeAgent command's path),
// with the host token, over the same transport as the agent's WebSocket:
// plain for http://, TLS checked against the agent's CA for https://.

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <chrono>
#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "common/error.h"

namespace tranche::agent {

struct ArtifactRequest {
  std::string server;   // http://HOST:PORT or https://HOST:PORT
  std::string ca_file;  // for https://; empty: the system's CAs
  std::string path;     // e.g. /artifacts/sha256/<hex>
  std::string token;    // sent as "Authorization: Bearer"
  int64_t max_bytes = 0;  // a longer body is an error, not a truncation
  std::chrono::seconds timeout{300};
};

// The body of a 200 answer; any other status is an error naming it and the
// first line of the body. `request` by value: the coroutine outlives the caller's.
boost::asio::awaitable<Result<std::string>> download_artifact(boost::asio::io_context& io, ArtifactRequest request);

}  // namespace tranche::agent
