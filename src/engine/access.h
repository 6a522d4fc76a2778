#pragma once
// API tokens: issuing, authenticating, and what each role may do
// (quality.md, "Security"). A token reads "tt_<id>_<secret>": the id finds
// the record, the secret is compared by hash in constant time.

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/error.h"
#include "store/store.h"

namespace tranche {

// Who is calling and what they asked, for audit records.
struct Caller {
  std::string actor;   // token name
  std::string action;  // "PUT /api/v1/applications/shop/operational-state"
};

struct Principal {
  std::string token_id;
  std::string name;
  Role role = Role::kViewer;
  std::optional<std::string> app;  // scope

  // viewer < operator < admin.
  bool has_role(Role needed) const;
  // A scoped token sees only its application; everything else is hidden.
  bool can_see(std::string_view app_name) const;
  // Whether this token may create a token of `role` scoped to `app`: never
  // above its own role (kForbidden), never outside its own scope (a scoped
  // token creates tokens of its application only: another application is
  // kNotFound, as if it did not exist; none, i.e. unscoped, is kForbidden).
  Status may_create_token(Role role, const std::optional<std::string>& app) const;
};

struct IssuedToken {
  TokenRecord record;
  std::string secret_token;  // shown once, never stored
};

class AccessControl {
 public:
  AccessControl(Store& store, const Clock& clock) : store_(store), clock_(clock) {}

  // A token seen once is kept in memory: token records are never changed
  // nor deleted, so every later request is checked without the store,
  // whose one connection may be busy with a commit's fsync (every API
  // request is authenticated). Only tokens that exist are kept, so what
  // the cache holds is bounded by what an admin created. (Revoking tokens,
  // when it comes, must drop them here too.)
  Result<Principal> authenticate(std::string_view bearer_token) const;
  // A token asked for by `issuer`, within its role and scope
  // (Principal::may_create_token).
  Result<IssuedToken> create_token(const Principal& issuer, Role role, std::optional<std::string> app, std::string name,
                                   const Caller& caller);
  // A token on the controller's own authority (the bootstrap admin token).
  Result<IssuedToken> create_token(Role role, std::optional<std::string> app, std::string name, const Caller& caller);

 private:
  Store& store_;
  const Clock& clock_;
  mutable std::mutex known_mu_;
  mutable std::unordered_map<std::string, TokenRecord> known_;  // by id
};

}  // namespace tranche
