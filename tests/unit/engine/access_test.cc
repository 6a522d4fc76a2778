#include "engine/access.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>

namespace tranche {
namespace {

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = std::move(open_sqlite_store({":memory:"}).value()); }
  ManualClock clock_;
  std::unique_ptr<Store> store_;
};

TEST_F(AccessTest, IssuedTokenAuthenticatesAndIsStoredHashed) {
  AccessControl access(*store_, clock_);
  auto issued = access.create_token(Role::kOperator, std::string("shop"), "deployer", {"admin", "test"});
  ASSERT_TRUE(issued.has_value());
  EXPECT_GE(issued->secret_token.size(), 3 + 16 + 1 + 64u) << "at least 128 random bits";
  const auto stored = store_->get_token(issued->record.id).value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(issued->secret_token.find(stored->secret_hash), std::string::npos) << "only the hash is stored";

  auto principal = access.authenticate(issued->secret_token);
  ASSERT_TRUE(principal.has_value());
  EXPECT_EQ(principal->name, "deployer");
  EXPECT_EQ(principal->role, Role::kOperator);
  EXPECT_TRUE(principal->can_see("shop"));
  EXPECT_FALSE(principal->can_see("other"));
  EXPECT_TRUE(principal->has_role(Role::kViewer));
  EXPECT_TRUE(principal->has_role(Role::kOperator));
  EXPECT_FALSE(principal->has_role(Role::kAdmin));
  EXPECT_EQ(store_->list_audit(10).value().back().actor, "admin");
}

// A token seen once is checked from memory (token records never change):
// deleted behind the store's back, it still authenticates, and a token
// never seen is looked up; a wrong secret is refused either way.
TEST(AccessCache, AKnownTokenIsCheckedWithoutTheStore) {
  const std::string path = ::testing::TempDir() + "access-cache-" + std::to_string(::getpid()) + ".db";
  std::remove(path.c_str());
  auto store = open_sqlite_store({path}).value();
  ManualClock clock;
  AccessControl access(*store, clock);
  const auto seen = access.create_token(Role::kViewer, std::nullopt, "seen", {"t", "t"}).value();
  const auto unseen = access.create_token(Role::kViewer, std::nullopt, "unseen", {"t", "t"}).value();
  ASSERT_TRUE(access.authenticate(seen.secret_token).has_value());

  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "DELETE FROM tokens", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);

  EXPECT_TRUE(access.authenticate(seen.secret_token).has_value()) << "from memory";
  EXPECT_FALSE(access.authenticate(unseen.secret_token).has_value()) << "looked up: no longer in the store";
  std::string wrong = seen.secret_token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(access.authenticate(wrong).error().code, ErrorCode::kUnauthenticated);
  store.reset();
  std::remove(path.c_str());
}

TEST_F(AccessTest, WrongOrMalformedTokensAreRefused) {
  AccessControl access(*store_, clock_);
  auto issued = access.create_token(Role::kAdmin, std::nullopt, "", {"t", "t"});
  ASSERT_TRUE(issued.has_value());
  std::string tampered = issued->secret_token;
  tampered.back() = tampered.back() == 'a' ? 'b' : 'a';
  for (const std::string& bad :
       {tampered, std::string(""), std::string("tt_"), std::string("garbage"), std::string("tt_unknown_secret")}) {
    auto p = access.authenticate(bad);
    ASSERT_FALSE(p.has_value()) << bad;
    EXPECT_EQ(p.error().code, ErrorCode::kUnauthenticated);
  }
}

TEST_F(AccessTest, ATokenNeverCreatesOneAboveItsRoleOrOutsideItsScope) {
  const Principal admin{"a", "root", Role::kAdmin, std::nullopt};
  const Principal shop_admin{"b", "shop-admin", Role::kAdmin, std::string("shop")};
  const Principal operator_{"c", "deployer", Role::kOperator, std::nullopt};
  const std::optional<std::string> none;
  const std::optional<std::string> shop("shop");
  const std::optional<std::string> other("other");

  EXPECT_TRUE(admin.may_create_token(Role::kAdmin, none).has_value());
  EXPECT_TRUE(admin.may_create_token(Role::kViewer, other).has_value());

  EXPECT_TRUE(shop_admin.may_create_token(Role::kAdmin, shop).has_value());
  EXPECT_TRUE(shop_admin.may_create_token(Role::kViewer, shop).has_value());
  for (Role role : {Role::kAdmin, Role::kOperator, Role::kViewer}) {
    auto unscoped = shop_admin.may_create_token(role, none);
    ASSERT_FALSE(unscoped.has_value());
    EXPECT_EQ(unscoped.error().code, ErrorCode::kForbidden);
    auto elsewhere = shop_admin.may_create_token(role, other);
    ASSERT_FALSE(elsewhere.has_value());
    EXPECT_EQ(elsewhere.error().code, ErrorCode::kNotFound) << "another application is hidden";
  }

  auto above = operator_.may_create_token(Role::kAdmin, none);
  ASSERT_FALSE(above.has_value());
  EXPECT_EQ(above.error().code, ErrorCode::kForbidden);
  EXPECT_TRUE(operator_.may_create_token(Role::kOperator, shop).has_value());
}

TEST_F(AccessTest, CreateTokenForAnIssuerChecksItsRoleAndScope) {
  AccessControl access(*store_, clock_);
  const Principal shop_admin{"b", "shop-admin", Role::kAdmin, std::string("shop")};
  auto refused = access.create_token(shop_admin, Role::kAdmin, std::nullopt, "", {"shop-admin", "test"});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kForbidden);
  EXPECT_FALSE(store_->has_admin_token().value()) << "no unscoped admin token was stored";
  auto issued = access.create_token(shop_admin, Role::kOperator, std::string("shop"), "", {"shop-admin", "test"});
  ASSERT_TRUE(issued.has_value());
  EXPECT_EQ(issued->record.app, "shop");
}

TEST_F(AccessTest, ScopeMustBeAName) {
  AccessControl access(*store_, clock_);
  EXPECT_FALSE(access.create_token(Role::kViewer, std::string("Bad App"), "", {"t", "t"}).has_value());
}

}  // namespace
}  // namespace tranche
