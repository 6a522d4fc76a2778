#pragma once
// HTTP content coding (RFC 9110 §8.4): gzip for the large JSON answers that
// are kept between events (view_cache.h), compressed once per rendering
// rather than once per request. An application's view at 1,000 clusters is
// ~1 MB of JSON that compresses about tenfold.

#include <string>
#include <string_view>

namespace tranche::api {

// Whether an Accept-Encoding field value admits gzip: `gzip` (or its alias
// `x-gzip`) or `*`, with no `q=0`. An explicit `gzip;q=0` wins over `*`.
bool accepts_gzip(std::string_view accept_encoding);

// The gzip member (RFC 1952) of `data`, at zlib's fastest level: the
// answers are JSON, where speed costs little in size.
std::string gzip(std::string_view data);

}  // namespace tranche::api
