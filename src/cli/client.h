#pragma once
// A small synchronous HTTP/1.1 client for the controller's API.

#include <functional>
#include <string>

#include "common/error.h"

namespace tranche::cli {

struct Reply {
  int status = 0;
  std::string body;
};

class ApiClient {
 public:
  // `server`: "http://HOST:PORT". An empty token sends no Authorization.
  ApiClient(std::string server, std::string token) : server_(std::move(server)), token_(std::move(token)) {}

  // Any HTTP status is a Reply; only transport failures are errors.
  Result<Reply> send(const std::string& method, const std::string& target, const std::string& body = {},
                     const std::string& content_type = "application/json") const;

  // GET `target` as a Server-Sent Events stream; calls `on_data` with the
  // data of every event until the server closes or on_data returns false.
  Status stream(const std::string& target, const std::function<bool(const std::string& data)>& on_data) const;

  const std::string& server() const { return server_; }

 private:
  std::string server_;
  std::string token_;
};

}  // namespace tranche::cli
