#pragma once
// What every client command starts from: where the controller is, which
// token and CA to use (flags, then the environment, then the data dir of a
// local controller), and how answers and refusals are printed.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/error.h"

namespace tranche::cli {

class Session {
 public:
  explicit Session(const ClientOptions& options);

  OutputFormat format() const { return format_; }
  const ApiClient& client() const { return *client_; }

  // The JSON answer of a 2xx reply; anything else becomes an Error that names
  // the field the server complained about.
  Result<nlohmann::json> call(const std::string& method, const std::string& target, const std::string& body = {},
                              const std::string& content_type = "application/json") const;

  // POSTs the file at `file` as the body, streamed from disk (an artifact).
  Result<nlohmann::json> upload(const std::string& target, const std::string& file) const;

  // Prints a document for -o json|yaml; false when the table form is wanted.
  bool print_structured(const nlohmann::json& doc) const;

 private:
  Result<nlohmann::json> answer(Result<Reply> reply, const std::string& target) const;

  OutputFormat format_;
  std::unique_ptr<ApiClient> client_;
};

// Prints "error: ..." on stderr; returns the exit status of a refusal (1).
int report(const Error& e);

// "shop/backend/db" -> {"shop", "backend/db"}.
std::pair<std::string, std::string> split_app(const std::string& path);

// Percent-encodes all but unreserved characters and '/' (member ids keep
// their slashes in a path).
std::string url_encode(std::string_view s);

// The answer of an apply (also of undo, update and scale): its message, and
// how to follow the rollout it started.
int print_apply_answer(const Session& s, const nlohmann::json& answer, const std::string& app);

}  // namespace tranche::cli
