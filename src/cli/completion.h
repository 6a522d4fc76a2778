#pragma once
// Shell completion for `tranche completion bash|zsh`, generated from the
// command tree the binary itself parses, so that it names every verb and
// flag of this build and no other.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tranche::cli {

// One command and what may follow it: its subcommands and its flags
// ("--watch", "-f").
struct CommandWords {
  std::string name;
  std::vector<std::string> flags;
  std::vector<CommandWords> subcommands;
};

CommandWords command_words(const CLI::App& app);

// A bash script defining and registering the completion function of `root`.
std::string bash_completion(const CommandWords& root);
// The same for zsh, through its bash-completion emulation (bashcompinit).
std::string zsh_completion(const CommandWords& root);

}  // namespace tranche::cli
