#include "common/names.h"

#include <gtest/gtest.h>

namespace tranche {
namespace {

TEST(Names, AcceptsDnsLabels) {
  for (const char* good : {"a", "web", "db-1", "0abc", std::string(63, 'a').c_str()}) {
    EXPECT_TRUE(is_valid_name(good)) << good;
  }
}

TEST(Names, RejectsEverythingElse) {
  const std::string too_long(64, 'a');
  for (const std::string bad : {std::string(), std::string("Web"), std::string("-a"), std::string("a-"),
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
