// tranche: one binary for the controller, the agent (later) and the client
// commands. Exit status: 0 success, 1 refused or failed, 2 usage error.

#include <iostream>

#include <CLI/CLI.hpp>

#include "api/controller.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"tranche: roll software updates through live applications, a tranche at a time"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (-o, --server, --token) may follow the command
  int exit_code = 0;

  tranche::api::ControllerOptions controller;
  auto* ctl = app.add_subcommand("controller", "run the controller");
  ctl->add_flag("--dev", controller.dev, "embedded default: SQLite in --data-dir, tokens written there");
  auto* listen = ctl->add_option("--listen", controller.listen, "ADDR:PORT to serve the API on (port 0: any)");
  auto* data_dir = ctl->add_option("--data-dir", controller.data_dir, "store, tokens and state");
  ctl->add_option("--config", controller.config_file, "YAML settings; flags win")->check(CLI::ExistingFile);
  ctl->callback([&] {
    std::vector<std::string> given;
    if (listen->count() > 0) given.push_back("listen");
    if (data_dir->count() > 0) given.push_back("data-dir");
    exit_code = tranche::api::run_controller(controller, given);
  });

  tranche::cli::ClientOptions client;
  tranche::cli::add_client_commands(app, client, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);  // --help
    }
    std::cerr << "error: " << e.what() << " (see tranche --help)\n";
    return 2;
  }
  return exit_code;
}
