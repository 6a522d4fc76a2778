#pragma once
// `tranche migration begin|perform|complete|cancel APP` (and --all for the
// platform): updates.md, "Migration mode".

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace CLI {
class App;
}

namespace tranche::cli {

struct ClientOptions;

// Registers `migration` on `app`; each verb stores its exit status in
// `exit_code` when it runs.
void add_migration_verbs(CLI::App& app, ClientOptions& options, int& exit_code);

// How `get apps` and `describe` show an application's lock (the API's
// "migration" field): "-", or "locked by alice at T" and what is running.
std::string migration_cell(const nlohmann::json& lock);

}  // namespace tranche::cli
