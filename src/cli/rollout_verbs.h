#pragma once
// `tranche rollout history|status|pause|resume|abort|promote|undo APP` and
// `tranche update PATH --version V`: the commands that start a rollout,
// follow it and steer it.

namespace CLI {
class App;
}

namespace tranche::cli {

struct ClientOptions;

// Registers `rollout` and `update` on `app`; each verb stores its exit status
// in `exit_code` when it runs.
void add_rollout_verbs(CLI::App& app, ClientOptions& options, int& exit_code);

}  // namespace tranche::cli
