#pragma once
// Registers the client subcommands on the `tranche` command line.

#include <string>

namespace CLI {
class App;
class Validator;
}

namespace tranche::cli {

struct ClientOptions {
  std::string server;  // empty: TRANCHE_SERVER, the data dir's controller.url, or http://127.0.0.1:7468
  std::string token;   // empty: TRANCHE_TOKEN or the file TRANCHE_TOKEN_FILE
  std::string ca;      // empty: TRANCHE_CA or the data dir's ca.crt (--dev --tls), else the system's CAs
  std::string timeout;  // empty: 30s
  std::string output = "table";
};

// Each command stores its exit status (0, 1) in `exit_code` when it runs.
void add_client_commands(CLI::App& app, ClientOptions& options, int& exit_code);

// A flag's check: a whole number from 1 (an int64_t); a refusal says
// `expected` and then ", got 'TEXT'".
CLI::Validator whole_number_from_1(std::string expected);

}  // namespace tranche::cli
