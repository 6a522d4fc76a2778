#pragma once
// Random secrets and their hashes (OpenSSL), for API, join and host tokens.

#include <string>
#include <string_view>

namespace tranche {

// `bytes` random bytes from the OS CSPRNG, hex encoded.
std::string random_hex(size_t bytes);
// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);
// Compares without leaking where the first difference is.
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace tranche
