#include "cli/completion.h"

#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche::cli {
namespace {

using ::testing::HasSubstr;

CommandWords small_tree() {
  CLI::App app{"test", "tranche"};
  std::string server;
  app.add_option("--server", server);
  auto* rollout = app.add_subcommand("rollout", "");
  auto* status = rollout->add_subcommand("status", "");
  std::string name;
  bool watch = false;
  status->add_option("APP", name);
  status->add_flag("-w,--watch", watch);
  app.add_subcommand("scale", "");
  return command_words(app);
}

TEST(CompletionTest, CommandWordsHoldSubcommandsAndFlagsNotPositionals) {
  const CommandWords root = small_tree();
  EXPECT_EQ(root.name, "tranche");
  EXPECT_THAT(root.flags, ::testing::Contains("--server"));
  ASSERT_EQ(root.subcommands.size(), 2u);
  const CommandWords& status = root.subcommands[0].subcommands.at(0);
  EXPECT_EQ(status.name, "status");
  EXPECT_THAT(status.flags, ::testing::IsSupersetOf({"--watch", "-w"}));
  EXPECT_THAT(status.flags, ::testing::Not(::testing::Contains("APP")));
}

TEST(CompletionTest, BashScriptOffersTheWordsOfEachCommandPath) {
  const std::string script = bash_completion(small_tree());
  EXPECT_THAT(script, HasSubstr("tranche/rollout|tranche/rollout/status|tranche/scale)"));
  EXPECT_THAT(script, HasSubstr("tranche/rollout) words=\"status"));
  EXPECT_THAT(script, HasSubstr("complete -F _tranche_complete tranche\n"));
}

TEST(CompletionTest, ZshScriptUsesBashCompletion) {
  const std::string script = zsh_completion(small_tree());
  EXPECT_TRUE(script.starts_with("#compdef tranche\nautoload -U +X bashcompinit && bashcompinit\n")) << script;
  EXPECT_THAT(script, HasSubstr(bash_completion(small_tree())));
}

}  // namespace
}  // namespace tranche::cli
