#pragma once
// Expected failures are values: every fallible call returns Result<T> or
// Status. An Error carries what an operator needs: a code that maps onto an
// HTTP status, a human message, and (for bad input) the offending field path.

#include <expected>
#include <string>
#include <string_view>

namespace tranche {

enum class ErrorCode {
  kInvalid,          // 400: malformed request
  kUnauthenticated,  // 401
  kForbidden,        // 403
  kNotFound,         // 404
  kConflict,         // 409: locked, stale, precondition failed
  kTooLarge,         // 413
  kUnprocessable,    // 422: well-formed but semantically invalid manifest
  kUnavailable,      // 503: store not writable, shutting down
  kInternal,         // 500: a bug
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string field;  // path of the offending field, e.g. "clusters[0].members.min"

  // "clusters[0].name: must match ..." when a field is known.
  std::string describe() const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message, std::string field = {}) {
  return std::unexpected(Error{code, std::move(message), std::move(field)});
}

std::string_view to_string(ErrorCode code);
int http_status(ErrorCode code);
ErrorCode error_code_from_http_status(int status);

}  // namespace tranche
