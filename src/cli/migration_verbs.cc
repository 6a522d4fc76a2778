#include "cli/migration_verbs.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/session.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// The application's route, or the platform's for --all.
std::string migration_target(const std::string& app, const std::string& action) {
  return (app.empty() ? "/api/v1/migration/" : "/api/v1/applications/" + url_encode(app) + "/migration/") + action;
}

// Exactly one of APP and --all.
bool check_target(const std::string& app, bool all) {
  if (app.empty() == all) {
    return true;
  }
  std::cerr << "error: APP: give an application, or --all for the whole platform (not both)\n";
  return false;
}

int print_answer(const Session& s, const Result<json>& reply) {
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << reply->value("message", "done") << '\n';
  }
  return 0;
}

int cmd_lock(const Session& s, const std::string& app, bool all, const std::string& action) {
  if (!check_target(app, all)) {
    return 2;
  }
  return print_answer(s, s.call("POST", migration_target(all ? "" : app, action), "{}"));
}

// updates.md: perform asks on a terminal unless --yes. Without a terminal
// there is nobody to ask: refuse rather than wait on a read that never ends.
bool confirmed(const std::string& what, bool yes) {
  if (yes) {
    return true;
  }
  if (isatty(STDIN_FILENO) == 0) {
    std::cerr << "error: migration perform moves running members: pass --yes to confirm (stdin is not a terminal, "
                 "so there is no one to ask)\n";
    return false;
  }
  std::cerr << "Move " << what << "? The clusters' update policies apply. [y/N] " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || answer == "yes") {
    return true;
  }
  std::cerr << "not confirmed: nothing changed\n";
  return false;
}

int cmd_perform(const Session& s, const std::string& app, const std::string& member, int64_t to, bool yes) {
  if (app.empty() || app.find('/') != std::string::npos) {
    std::cerr << "error: APP: give an application name, got '" << app << "'\n";
    return 2;
  }
  const std::string what = (member.empty() ? app : member) + " to revision " + std::to_string(to);
  if (!confirmed(what, yes)) {
    return 1;
  }
  json body = {{"toRevision", to}};
  if (!member.empty()) {
    body["member"] = member;
  }
  auto reply = s.call("POST", migration_target(app, "perform"), body.dump());
  if (!reply || s.print_structured(*reply)) {
    return reply ? 0 : report(reply.error());
  }
  std::cout << reply->value("message", "started") << '\n';
  if ((*reply)["rollout"].is_number_integer()) {
    std::cout << "follow it with: tranche rollout status " << app << " --watch\n";
  } else if (!member.empty()) {
    std::cout << "follow it with: tranche describe " << app << "\n";
  }
  return 0;
}

}  // namespace

std::string migration_cell(const json& lock) {
  if (!lock.is_object()) {
    return "-";
  }
  std::string cell = std::string(lock.value("platform", false) ? "platform " : "") + "locked by " +
                     lock.value("lockedBy", "?") + " at " + lock.value("lockedAt", "?");
  if (lock.value("performInProgress", false) && lock["perform"].is_object()) {
    const json& p = lock["perform"];
    cell += "; perform of " + (p["member"].is_string() ? p["member"].get<std::string>() : std::string("the application")) +
            " to revision " + std::to_string(p.value("toRevision", 0)) + " in progress";
  }
  return cell;
}

void add_migration_verbs(CLI::App& app, ClientOptions& options, int& exit_code) {
  struct Args {
    std::string app;
    bool all = false;
    std::string member;
    int64_t to = 0;
    bool yes = false;
  };
  auto args = std::make_shared<Args>();
  auto run = [&options, &exit_code](auto command) {
    return [&options, &exit_code, command] { exit_code = command(Session(options)); };
  };
  auto* migration =
      app.add_subcommand("migration", "lock an application (or the platform) for a migration")->require_subcommand(1);
  for (const char* action : {"begin", "complete", "cancel"}) {
    const std::string name = action;
    auto* verb = migration->add_subcommand(
        name, name == "begin"      ? "lock: every other change is refused, autoscaling and autohealing suspended"
              : name == "complete" ? "lift the lock once the migration is done (resumes what begin paused)"
                                   : "lift the lock, abandoning the migration (refused while a perform runs)");
    verb->add_option("APP", args->app, "the application");
    verb->add_flag("--all", args->all, "the whole platform (before upgrading Tranche itself)");
    verb->callback(run([=](const Session& s) { return cmd_lock(s, args->app, args->all, name); }));
  }
  auto* perform = migration->add_subcommand("perform", "move the application, or one member, to a revision");
  perform->add_option("APP", args->app, "the application")->required();
  perform->add_option("--member", args->member, "only this member (web/3 or APP/web/3)");
  perform->add_option("--to-revision", args->to, "the revision to move to, older or newer")
      ->required()
      ->check(CLI::PositiveNumber);
  perform->add_flag("--yes", args->yes, "do not ask for confirmation");
  perform->callback(
      run([=](const Session& s) { return cmd_perform(s, args->app, args->member, args->to, args->yes); }));
}

}  // namespace tranche::cli
