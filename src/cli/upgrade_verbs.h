#pragma once
// `tranche artifact push|list|describe|delete` (the controller's artifact
// store) and `tranche agent upgrade` with its status|pause|resume|abort
// (an agent binary rolled across the hosts; docs/upgrading.md).

namespace CLI {
class App;
}

namespace tranche::cli {

struct ClientOptions;

// Each stores its exit status in `exit_code` when it runs.
void add_artifact_commands(CLI::App& app, ClientOptions& options, int& exit_code);
// Under `agent` (the command that runs an agent), whose callback must not
// run the agent when `upgrade` was given.
void add_agent_upgrade_commands(CLI::App& agent, ClientOptions& options, int& exit_code);

}  // namespace tranche::cli
