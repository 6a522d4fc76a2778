#pragma once
// The verbs operators reach for besides the resource commands of
// commands.cc: `scale`, `restart`, `ui` and `completion`.

namespace CLI {
class App;
}

namespace tranche::cli {

struct ClientOptions;

// Registers them on `app` (the root: `completion` describes its whole
// tree). Each stores its exit status in `exit_code` when it runs.
void add_operator_verbs(CLI::App& app, ClientOptions& options, int& exit_code);

}  // namespace tranche::cli
