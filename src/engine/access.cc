#include "engine/access.h"

#include "common/names.h"
#include "common/secrets.h"

namespace tranche {

namespace {
constexpr std::string_view kPrefix = "tt_";
constexpr size_t kIdBytes = 8;
constexpr size_t kSecretBytes = 32;  // 256 bits

int rank(Role r) {
  switch (r) {
    case Role::kViewer:
      return 0;
    case Role::kOperator:
      return 1;
    case Role::kAdmin:
      return 2;
  }
  return 0;
}
}  // namespace

bool Principal::has_role(Role needed) const { return rank(role) >= rank(needed); }

bool Principal::can_see(std::string_view app_name) const { return !app || *app == app_name; }

Status Principal::may_create_token(Role wanted, const std::optional<std::string>& wanted_app) const {
  if (!has_role(wanted)) {
    return fail(ErrorCode::kForbidden,
                "token '" + name + "' has role " + std::string(to_string(role)) +
                    "; it cannot create a token of role " + std::string(to_string(wanted)),
                "role");
  }
  if (app && wanted_app && *wanted_app != *app) {
    return fail(ErrorCode::kNotFound, "application '" + *wanted_app + "' not found", "app");
  }
  if (app && !wanted_app) {
    return fail(ErrorCode::kForbidden,
                "token '" + name + "' is scoped to application '" + *app +
                    "'; a token it creates must be scoped to it too (\"app\": \"" + *app + "\")",
                "app");
  }
  return {};
}

Result<Principal> AccessControl::authenticate(std::string_view bearer_token) const {
  auto unauthenticated = [] { return fail(ErrorCode::kUnauthenticated, "missing or invalid bearer token"); };
  if (!bearer_token.starts_with(kPrefix)) {
    return unauthenticated();
  }
  const std::string_view rest = bearer_token.substr(kPrefix.size());
  const size_t sep = rest.find('_');
  if (sep == std::string_view::npos) {
    return unauthenticated();
  }
  const std::string id(rest.substr(0, sep));
  std::optional<TokenRecord> known;
  {
    std::lock_guard lock(known_mu_);
    if (auto it = known_.find(id); it != known_.end()) {
      known = it->second;
    }
  }
  if (!known) {
    auto record = store_.get_token(id);
    if (!record) {
      return std::unexpected(record.error());
    }
    if (!*record) {
      return unauthenticated();
    }
    known = **record;
    std::lock_guard lock(known_mu_);
    known_.emplace(id, **record);
  }
  const std::string presented_hash = sha256_hex(rest.substr(sep + 1));
  if (!constant_time_equals(presented_hash, known->secret_hash)) {
    return unauthenticated();
  }
  return Principal{known->id, known->name, known->role, known->app};
}

Result<IssuedToken> AccessControl::create_token(const Principal& issuer, Role role, std::optional<std::string> app,
                                                std::string name, const Caller& caller) {
  if (auto allowed = issuer.may_create_token(role, app); !allowed) {
    return std::unexpected(allowed.error());
  }
  return create_token(role, std::move(app), std::move(name), caller);
}

Result<IssuedToken> AccessControl::create_token(Role role, std::optional<std::string> app, std::string name,
                                                const Caller& caller) {
  if (app) {
    if (auto ok = check_name(*app, "app"); !ok) {
      return std::unexpected(ok.error());
    }
  }
  const std::string id = random_hex(kIdBytes);
  const std::string secret = random_hex(kSecretBytes);
  if (name.empty()) {
    name = std::string(to_string(role)) + "-" + id;
  }
  TokenRecord record{id, name, sha256_hex(secret), role, std::move(app), clock_.now()};
  WriteBatch batch;
  batch.mutations.push_back(PutToken{record});
  batch.mutations.push_back(AppendAudit{AuditRecord{0, clock_.now(), caller.actor, caller.action, "token " + id,
                                                    "created " + std::string(to_string(role)) + " token " + name}});
  if (auto done = store_.commit(batch); !done) {
    return std::unexpected(done.error());
  }
  return IssuedToken{std::move(record), std::string(kPrefix) + id + "_" + secret};
}

}  // namespace tranche
