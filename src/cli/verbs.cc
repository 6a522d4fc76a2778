#include "cli/verbs.h"

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/completion.h"
#include "cli/manifest_edit.h"
#include "cli/session.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

std::string app_target(const std::string& app) { return "/api/v1/applications/" + url_encode(app); }

// A new revision that changes only the cluster's members.desired: the
// current revision's manifest, edited, applied again. As with `update`,
// another apply landing between the read and this one would be overwritten.
int cmd_scale(const Session& s, const std::string& path, int64_t members) {
  const auto [app, cluster] = split_app(path);
  if (app.empty() || cluster.empty()) {
    std::cerr << "error: PATH: give a cluster path like shop/web or shop/backend/db, got '" << path << "'\n";
    return 2;
  }
  auto application = s.call("GET", app_target(app));
  if (!application) {
    return report(application.error());
  }
  if (!(*application)["revision"].is_number_integer()) {
    return report(Error{ErrorCode::kInternal, "the server did not say the current revision of " + app, ""});
  }
  const int64_t current = (*application)["revision"].get<int64_t>();
  auto revision = s.call("GET", app_target(app) + "/revisions/" + std::to_string(current));
  if (!revision) {
    return report(revision.error());
  }
  auto manifest = with_cluster_desired((*revision)["manifest"], cluster, members);
  if (!manifest) {
    return report(manifest.error());
  }
  auto reply = s.call("POST", "/api/v1/applications", manifest->dump(), "application/json");
  if (!reply) {
    return report(reply.error());
  }
  const int status = print_apply_answer(s, *reply, app);
  // The autoscaler keeps a count of its own: desired is then only where it
  // starts from, and the operator should know the count may not hold.
  for (const auto& node : (*application)["tree"]) {
    if (node.value("path", "") == cluster && node.contains("autoscaling") &&
        node["autoscaling"].value("effective", "") == "on" && s.format() == OutputFormat::kTable) {
      std::cout << "note: autoscaling is on for " << path << ": the autoscaler moves the count within min..max\n";
    }
  }
  return status;
}

// `set maintenance restart PATH`: the members below PATH restart in turn,
// within each cluster's maxUnavailable unless --all-at-once.
int cmd_restart(const Session& s, const std::string& path, bool all_at_once) {
  const auto [app, node] = split_app(path);
  if (app.empty()) {
    std::cerr << "error: PATH: give an application, a node path like shop/web, or a member, got '" << path << "'\n";
    return 2;
  }
  json body = {{"path", node}, {"maintenance", "restart"}};
  if (all_at_once) {
    body["allAtOnce"] = true;
  }
  auto reply = s.call("PUT", app_target(app) + "/operational-state", body.dump());
  if (!reply) {
    return report(reply.error());
  }
  if (s.print_structured(*reply)) {
    return 0;
  }
  std::cout << "restart of " << path << (all_at_once ? " (all at once)" : "") << ": "
            << reply->value("message", "accepted") << "\n"
            << "operation " << reply->value("operation", "?") << "; follow it with: tranche describe " << path
            << "\n";
  return 0;
}

int cmd_ui(const Session& s) {
  const std::string url = s.client().server() + "/ui/";
  if (!s.print_structured(json{{"url", url}})) {
    std::cout << url << '\n';
  }
  return 0;
}

}  // namespace

void add_operator_verbs(CLI::App& app, ClientOptions& options, int& exit_code) {
  struct Args {
    std::string scale_path;
    int64_t scale_members = -1;
    std::string restart_path;
    bool restart_all_at_once = false;
    std::string shell;
  };
  auto args = std::make_shared<Args>();
  auto run = [&options, &exit_code](auto command) {
    return [&options, &exit_code, command] { exit_code = command(Session(options)); };
  };

  auto* scale = app.add_subcommand("scale", "a new revision with one cluster's desired member count changed");
  scale->add_option("PATH", args->scale_path, "APP/CLUSTER or APP/GROUP/.../CLUSTER")->required();
  scale->add_option("--members", args->scale_members, "the desired count, within the cluster's min..max")
      ->required()
      ->check(CLI::NonNegativeNumber);
  scale->callback(run([=](const Session& s) { return cmd_scale(s, args->scale_path, args->scale_members); }));

  auto* restart = app.add_subcommand("restart", "restart the members below a node (maintenance restart)");
  restart->add_option("PATH", args->restart_path, "APP, APP/GROUP/.../CLUSTER or a member")->required();
  restart->add_flag("--all-at-once", args->restart_all_at_once, "ignore maxUnavailable: all members at once");
  restart->callback(
      run([=](const Session& s) { return cmd_restart(s, args->restart_path, args->restart_all_at_once); }));

  app.add_subcommand("ui", "print the URL of the web console")->callback(run([](const Session& s) {
    return cmd_ui(s);
  }));

  auto* completion = app.add_subcommand("completion", "print a shell completion script (bash or zsh)");
  completion->add_option("SHELL", args->shell, "bash | zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  completion->callback([&app, &exit_code, args] {
    CommandWords words = command_words(app);
    words.name = "tranche";  // the root's own name is the path it was run by
    std::cout << (args->shell == "zsh" ? zsh_completion(words) : bash_completion(words));
    exit_code = 0;
  });
}

}  // namespace tranche::cli
