#pragma once
// HTTP content coding (RFC 9110 §8.4), gzip only: the controller compresses
// its large JSON answers (api/view_cache.h), the CLI asks for them so and
// inflates them. An application's view at 1,000 clusters is ~1 MB of JSON
// and ~20 KB compressed.

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tranche {

// Whether an Accept-Encoding field value admits gzip: `gzip` (or its alias
// `x-gzip`) or `*`, with no `q=0`. An explicit `gzip;q=0` wins over `*`.
bool accepts_gzip(std::string_view accept_encoding);

// The gzip member (RFC 1952) of `data`, at zlib's fastest level: the
// answers are JSON, where speed costs little in size.
std::string gzip(std::string_view data);

// The data of one gzip member; an error (kInvalid) when `data` is not one
// whole member or inflates to more than `max_size` bytes.
Result<std::string> gunzip(std::string_view data, size_t max_size);

}  // namespace tranche
