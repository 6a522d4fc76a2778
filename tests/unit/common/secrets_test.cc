#include "common/secrets.h"

#include <gtest/gtest.h>

#include <string>

namespace tranche {
namespace {

TEST(Sha256, PiecesHashAsTheWhole) {
  const std::string data(100'000, 'x');
  Sha256 hasher;
  for (size_t i = 0; i < data.size(); i += 4096) {
    hasher.update(std::string_view(data).substr(i, 4096));
  }
  EXPECT_EQ(hasher.finish_hex(), sha256_hex(data));
}

TEST(Sha256, KnownDigestAndStartsOverAfterFinish) {
  Sha256 hasher;
  hasher.update("abc");
  EXPECT_EQ(hasher.finish_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hasher.finish_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");  // empty
}

}  // namespace
}  // namespace tranche
