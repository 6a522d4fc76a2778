#include "common/names.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

TEST(Names, AcceptsDnsLabels) {
  const std::string longest(63, 'a');
  for (const std::string& good :
       {std::string("a"), std::string("web"), std::string("db-1"), std::string("0abc"), longest}) {
    EXPECT_TRUE(is_valid_name(good)) << good;
  }
}

TEST(Names, RejectsEverythingElse) {
  const std::string too_long(64, 'a');
  for (const std::string& bad : {std::string(), std::string("Web"), std::string("-a"), std::string("a-"),
                                 std::string("a_b"), std::string("a.b"), too_long}) {
    EXPECT_FALSE(is_valid_name(bad)) << bad;
  }
  auto status = check_name("Bad", "clusters[0].name");
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().field, "clusters[0].name");
  EXPECT_EQ(status.error().code, ErrorCode::kUnprocessable);
}

TEST(Names, SplitsPaths) {
  EXPECT_EQ(split_path("backend/db"), (std::vector<std::string>{"backend", "db"}));
  EXPECT_EQ(split_path("/a//b/"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(split_path("").empty());
}

}  // namespace
}  // namespace tranche
