// tranche: one binary for the controller, the agent (later) and the client
// commands. Exit status: 0 success, 1 refused or failed, 2 usage error.

#include <cstdint>
#include <iostream>
#include <limits>
#include <sstream>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "agent/self_upgrade.h"
#include "api/controller.h"
#include "cli/commands.h"
#include "cli/upgrade_verbs.h"
#include "common/time_format.h"

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
  auto* haproxy = ctl->add_option("--haproxy-socket", controller.haproxy_socket,
                                  "HAProxy runtime API (stats socket ... level admin): PATH or 127.0.0.1:PORT");
  auto* tls_cert = ctl->add_option("--tls-cert", controller.tls_certificate,
                                   "PEM certificate chain: serve the API and the agents' WebSocket over TLS");
  auto* tls_key = ctl->add_option("--tls-key", controller.tls_key, "PEM private key of --tls-cert");
  ctl->add_flag("--tls", controller.dev_tls,
                "with --dev: serve TLS with a private CA and certificate made in the data dir (ca.crt to trust)");
  ctl->add_flag("--no-lb-drain", controller.no_lb_drain,
                "control experiment: stop members without draining them from the load balancer first");
  auto* log_format = ctl->add_option("--log-format", controller.log_format,
                                     "text (the default) or json: one JSON object per log line");
  std::string heartbeat_interval;
  std::string heartbeat_timeout;
  ctl->add_option("--heartbeat-interval", heartbeat_interval, "how often agents report (default 2s)");
  ctl->add_option("--heartbeat-timeout", heartbeat_timeout, "silence after which a host is Unreachable (default 6s)");
  ctl->callback([&] {
    for (auto [text, target] : {std::pair{&heartbeat_interval, &controller.heartbeat_interval},
                                std::pair{&heartbeat_timeout, &controller.heartbeat_timeout}}) {
      if (text->empty()) {
        continue;
      }
      auto d = tranche::parse_duration(*text);
      if (!d) {
        std::cerr << "error: " << d.error().message << '\n';
        exit_code = 2;
        return;
      }
      *target = *d;
    }
    std::vector<std::string> given;
    if (listen->count() > 0) given.push_back("listen");
    if (data_dir->count() > 0) given.push_back("data-dir");
    if (haproxy->count() > 0) given.push_back("haproxy-socket");
    if (tls_cert->count() > 0) given.push_back("tls-cert");
    if (tls_key->count() > 0) given.push_back("tls-key");
    if (log_format->count() > 0) given.push_back("log-format");
    exit_code = tranche::api::run_controller(controller, given);
  });

  tranche::agent::AgentOptions agent;
  std::string labels;
  auto* agt = app.add_subcommand("agent", "run an agent on this host");
  agt->add_option("--server", agent.server, "controller URL, http://HOST:PORT or https://HOST:PORT");
  agt->add_option("--ca", agent.ca_file, "CA file an https:// controller's certificate must chain to")
      ->envname("TRANCHE_CA");
  agt->add_option("--server-file", agent.server_file, "a file holding the controller URL, re-read on reconnect");
  agt->add_option("--join-token", agent.join_token, "token for the first join");
  agt->add_option("--join-token-file", agent.join_token_file, "a file holding the join token");
  agt->add_option("--labels", labels, "k=v,k=v: host labels for placement");
  // CLI::PositiveNumber's refusal printed its range as a 300-digit double.
  agt->add_option("--slots", agent.slots, "capacity units for members (default 64)")
      ->check(tranche::cli::whole_number_from_1("expected a whole number of capacity units from 1 to " +
                                                std::to_string(std::numeric_limits<int64_t>::max())));
  agt->add_option("--state-dir", agent.state_dir, "journal and member logs (default ./tranche-agent)");
  // Tests play an older or an unknown agent with it (docs/upgrading.md); not in --help.
  agt->add_option("--protocol", agent.protocol, "speak only this protocol version")
      ->check(CLI::Range(1, 1000000))
      ->group("");
  agt->callback([&] {
    if (!agt->get_subcommands().empty()) {
      return;  // `agent upgrade`: a client command
    }
    std::stringstream list(labels);
    for (std::string pair; std::getline(list, pair, ',');) {
      const size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "error: --labels: expected k=v, got '" << pair << "'\n";
        exit_code = 2;
        return;
      }
      agent.labels[pair.substr(0, eq)] = pair.substr(eq + 1);
    }
    exit_code = tranche::agent::run_agent(agent);
  });

  // The fallback watchdog of an agent self-upgrade, started by the agent
  // (src/agent/self_upgrade.h); not in --help.
  tranche::agent::WatchdogOptions watchdog;
  std::vector<std::string> watched_agent;
  auto* wdg = app.add_subcommand("agent-watchdog", "")->group("");
  wdg->add_option("--state-dir", watchdog.state_dir)->required();
  wdg->add_option("--pid", watchdog.pid)->required();
  wdg->add_option("--command", watchdog.command_id)->required();
  wdg->add_option("agent", watched_agent, "the agent's command line, after --")->required();
  wdg->callback([&] { exit_code = tranche::agent::run_agent_watchdog(watchdog, watched_agent); });

  tranche::cli::ClientOptions client;
  tranche::cli::add_client_commands(app, client, exit_code);
  tranche::cli::add_artifact_commands(app, client, exit_code);
  tranche::cli::add_agent_upgrade_commands(*agt, client, exit_code);

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
