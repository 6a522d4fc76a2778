#pragma once
// The web console (interfaces.md: GET /ui/): static files embedded in the
// binary at build time (src/api/console/, README there), served without
// authentication: they hold no data. The page then asks the REST API for
// everything with the token the user gives it, so RBAC applies as to any
// other client.

#include <optional>
#include <string_view>

#include "api/http.h"

namespace tranche::api {

// The answer to GET `path` when it is the console's (/ui, /ui/ and the
// files below it: 404 for a name it does not have); nullopt for any other
// path.
std::optional<Response> console_response(std::string_view path);

}  // namespace tranche::api
