#pragma once
// A small synchronous HTTP/1.1 client for the controller's API, over plain
// TCP (http://) or TLS (https://, the server's certificate checked against a
// pinned CA and the host dialled). Every request has a deadline.

#include <chrono>
#include <functional>
#include <string>

#include "common/error.h"

namespace tranche::cli {

// interfaces.md: every request times out, by default after 30 s.
inline constexpr std::chrono::milliseconds kDefaultRequestTimeout{30'000};

struct Reply {
  int status = 0;
  std::string body;
};

struct TransportOptions {
  std::string ca_file;  // https:// servers are checked against this CA alone; empty: the system's CAs
  std::chrono::milliseconds timeout = kDefaultRequestTimeout;  // the whole request, from resolving to the answer
};

class ApiClient {
 public:
  // `server`: "http://HOST:PORT" or "https://HOST:PORT". An empty token sends no Authorization.
  ApiClient(std::string server, std::string token, TransportOptions transport = {})
      : server_(std::move(server)), token_(std::move(token)), transport_(std::move(transport)) {}

  // Any HTTP status is a Reply; only transport failures (and the deadline) are errors.
  Result<Reply> send(const std::string& method, const std::string& target, const std::string& body = {},
                     const std::string& content_type = "application/json") const;

  // Sends the file at `path` as the body, read from disk as it goes (an
  // artifact of tens of MB), application/octet-stream.
  Result<Reply> send_file(const std::string& method, const std::string& target, const std::string& path) const;

  // GET `target` as a Server-Sent Events stream; calls `on_data` with the
  // data of every event until the server closes or on_data returns false.
  // The answer's headers must come within the timeout; after that the
  // stream is given up only when nothing, not even the server's keepalive,
  // arrives for the longer of the timeout and kStreamSilence.
  Status stream(const std::string& target, const std::function<bool(const std::string& data)>& on_data) const;

  const std::string& server() const { return server_; }

  // Three of the server's keepalives (every 15 s) missed.
  static constexpr std::chrono::milliseconds kStreamSilence{45'000};

 private:
  std::string server_;
  std::string token_;
  TransportOptions transport_;
};

}  // namespace tranche::cli
