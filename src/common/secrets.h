#pragma once
// Random secrets and their hashes (OpenSSL), for API, join and host tokens.

#include <memory>
#include <string>
#include <string_view>

namespace tranche {

// `bytes` random bytes from the OS CSPRNG, hex encoded.
std::string random_hex(size_t bytes);
// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);
// SHA-256 of data given piece by piece (a file streamed to disk or from
// the network), without holding it whole.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(std::string_view data);
  // Lower-case hex; the hasher starts over afterwards.
  std::string finish_hex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};
// Compares without leaking where the first difference is.
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace tranche
