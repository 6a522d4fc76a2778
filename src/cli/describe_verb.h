#pragma once
// `tranche describe PATH`: one node of an application (explicit and
// effective settings, what its members do, recent events) or one member.

namespace CLI {
class App;
}

namespace tranche::cli {

struct ClientOptions;

// Registers `describe` on `app`; it stores its exit status in `exit_code`.
void add_describe_verb(CLI::App& app, ClientOptions& options, int& exit_code);

}  // namespace tranche::cli
