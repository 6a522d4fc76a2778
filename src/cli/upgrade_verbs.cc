#include "cli/upgrade_verbs.h"

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/session.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// The name the agent binary is pushed as by `agent upgrade --artifact PATH`.
constexpr const char* kAgentArtifact = "tranche-agent";

std::string artifact_target(const std::string& name, const std::string& version) {
  return "/api/v1/artifacts/" + url_encode(name) + "/" + url_encode(version);
}

void print_artifacts(const std::vector<json>& items) {
  std::vector<Row> rows;
  for (const auto& a : items) {
    rows.push_back({cell(a["name"]), cell(a["version"]), cell(a["size"]), cell(a["sha256"]), cell(a["uploadedBy"]),
                    cell(a["uploadedAt"])});
  }
  print_table(std::cout, {"NAME", "VERSION", "SIZE", "SHA256", "BY", "AT"}, rows);
}

int cmd_push(const Session& s, const std::string& name, const std::string& version, const std::string& path,
             const std::string& sha256) {
  auto reply = s.upload(artifact_target(name, version) + (sha256.empty() ? "" : "?sha256=" + url_encode(sha256)), path);
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << reply->value("message", "stored") << " (" << cell((*reply)["size"]) << " bytes, sha256 "
              << cell((*reply)["sha256"]) << ")\n";
  }
  return 0;
}

int cmd_list(const Session& s, const std::string& name) {
  auto reply = s.call("GET", "/api/v1/artifacts" + (name.empty() ? "" : "/" + url_encode(name)));
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_artifacts((*reply)["items"].get<std::vector<json>>());
  }
  return 0;
}

int cmd_describe(const Session& s, const std::string& name, const std::string& version) {
  auto reply = s.call("GET", artifact_target(name, version));
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_artifacts({*reply});
    std::cout << "download: GET " << cell((*reply)["path"]) << " (an agent's host token or an operator's)\n";
  }
  return 0;
}

int cmd_delete(const Session& s, const std::string& name, const std::string& version) {
  auto reply = s.call("DELETE", artifact_target(name, version));
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << reply->value("message", "deleted") << "\n";
  }
  return 0;
}

// GET /agents/upgrade, as lines: the upgrade, then one per host.
void print_upgrade(const json& u) {
  std::cout << "agent upgrade " << cell(u["id"]) << " to " << cell(u["version"]) << ": " << cell(u["state"]) << " ("
            << cell(u["reason"]) << ")\n"
            << "batch " << cell(u["batch"]) << " of " << cell(u["batches"]) << ", " << cell(u["maxUnavailable"])
            << " at a time" << (u.value("hosts", "").empty() ? "" : ", hosts " + u.value("hosts", "")) << "\n";
  std::vector<Row> rows;
  for (const auto& h : u["progress"]) {
    rows.push_back({cell(h["host"]), cell(h["status"]), cell(h["from"]), cell(h["message"])});
  }
  print_table(std::cout, {"HOST", "STATUS", "FROM", "MESSAGE"}, rows);
}

int cmd_upgrade(const Session& s, const std::string& version, const std::string& path, int64_t max_unavailable,
                const std::string& hosts, int64_t fallback_seconds) {
  if (version.empty() || path.empty()) {
    std::cerr << "error: agent upgrade needs --version V and --artifact PATH (or one of status, pause, resume, "
                 "abort)\n";
    return 2;
  }
  auto pushed = s.upload(artifact_target(kAgentArtifact, version), path);
  if (!pushed) {
    return report(pushed.error());
  }
  if (s.format() == OutputFormat::kTable) {
    std::cout << pushed->value("message", "stored") << " (sha256 " << cell((*pushed)["sha256"]) << ")\n";
  }
  json body = {{"version", version},
               {"artifact", {{"name", kAgentArtifact}, {"version", version}}},
               {"maxUnavailable", max_unavailable},
               {"fallbackSeconds", fallback_seconds}};
  if (!hosts.empty()) {
    body["hosts"] = hosts;
  }
  auto reply = s.call("POST", "/api/v1/agents/upgrade", body.dump());
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_upgrade(*reply);
    std::cout << "follow it with: tranche agent upgrade status\n";
  }
  return 0;
}

int cmd_upgrade_control(const Session& s, const std::string& action) {
  auto reply = action == "status" ? s.call("GET", "/api/v1/agents/upgrade")
                                  : s.call("POST", "/api/v1/agents/upgrade/" + action);
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_upgrade(*reply);
  }
  return 0;
}

}  // namespace

void add_artifact_commands(CLI::App& app, ClientOptions& options, int& exit_code) {
  struct Args {
    std::string name;
    std::string version;
    std::string path;
    std::string sha256;
  };
  auto args = std::make_shared<Args>();
  auto run = [&options, &exit_code](auto command) {
    return [&options, &exit_code, command] { exit_code = command(Session(options)); };
  };
  auto* artifact = app.add_subcommand("artifact", "the controller's content-addressed artifact store");
  artifact->require_subcommand(1);
  auto* push = artifact->add_subcommand("push", "upload a file as artifact NAME VERSION (streamed)");
  push->add_option("NAME", args->name, "artifact name, e.g. tranche-agent")->required();
  push->add_option("VERSION", args->version, "its version, e.g. 0.2.0")->required();
  push->add_option("PATH", args->path, "the file")->required()->check(CLI::ExistingFile);
  push->add_option("--sha256", args->sha256, "refuse the upload unless the file has this digest");
  push->callback(run([=](const Session& s) { return cmd_push(s, args->name, args->version, args->path, args->sha256); }));
  auto* list = artifact->add_subcommand("list", "artifacts, all or of one name");
  list->add_option("NAME", args->name, "only this name");
  list->callback(run([=](const Session& s) { return cmd_list(s, args->name); }));
  for (const char* verb : {"describe", "delete"}) {
    auto* sub = artifact->add_subcommand(verb, std::string(verb) == "describe" ? "one artifact"
                                                                               : "forget an artifact (its file goes "
                                                                                 "with its last name)");
    sub->add_option("NAME", args->name, "artifact name")->required();
    sub->add_option("VERSION", args->version, "its version")->required();
    sub->callback(run([=, describe = std::string(verb) == "describe"](const Session& s) {
      return describe ? cmd_describe(s, args->name, args->version) : cmd_delete(s, args->name, args->version);
    }));
  }
}

void add_agent_upgrade_commands(CLI::App& agent, ClientOptions& options, int& exit_code) {
  struct Args {
    std::string version;
    std::string path;
    int64_t max_unavailable = 1;
    std::string hosts;
    int64_t fallback_seconds = 60;
  };
  auto args = std::make_shared<Args>();
  auto* upgrade = agent.add_subcommand("upgrade", "roll a new agent binary across the hosts in batches");
  upgrade->add_option("--version", args->version, "the version the agents report once upgraded");
  upgrade->add_option("--artifact", args->path, "the agent binary (pushed as artifact tranche-agent VERSION)")
      ->check(CLI::ExistingFile);
  upgrade->add_option("--max-unavailable", args->max_unavailable, "hosts upgrading at once (default 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  upgrade->add_option("--hosts", args->hosts, "k=v,...: only hosts with these labels");
  upgrade->add_option("--fallback-seconds", args->fallback_seconds,
                      "a host goes back to its previous binary unless the new one is up within this (default 60)")
      ->check(CLI::Range(int64_t{5}, int64_t{3600}));
  upgrade->callback([upgrade, args, &options, &exit_code] {
    if (!upgrade->get_subcommands().empty()) {
      return;  // status, pause, resume or abort
    }
    exit_code = cmd_upgrade(Session(options), args->version, args->path, args->max_unavailable, args->hosts,
                            args->fallback_seconds);
  });
  for (const char* action : {"status", "pause", "resume", "abort"}) {
    upgrade->add_subcommand(action, std::string("the agent upgrade: ") + action)
        ->callback([&options, &exit_code, action = std::string(action)] {
          exit_code = cmd_upgrade_control(Session(options), action);
        });
  }
}

}  // namespace tranche::cli
