// The global options (--server, --token, --ca, --timeout, -o) and the
// resource commands: `apply`, `get apps|hosts|members`, `logs`, `host
// drain|undrain`, `delete`, `set`, `events`, `token create` and `version`.
// The other verbs register themselves from their own files, called from
// add_client_commands in the order `--help` lists them.
#include "cli/commands.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/describe_verb.h"
#include "cli/migration_verbs.h"
#include "cli/output.h"
#include "cli/rollout_verbs.h"
#include "cli/session.h"
#include "cli/verbs.h"
#include "common/build_version.h"
#include "common/time_format.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// One manifest file. `name_it`: its answer, or refusal, starts with its name.
int apply_file(const Session& s, const std::filesystem::path& file, bool dry_run, bool name_it) {
  const std::string name = name_it ? file.string() + ": " : "";
  std::ifstream in(file);
  if (!in) {
    return report(Error{ErrorCode::kInvalid, "cannot read " + file.string(), "-f"});
  }
  std::stringstream text;
  text << in.rdbuf();
  const bool is_json = file.extension() == ".json";
  auto reply = s.call("POST", std::string("/api/v1/applications") + (dry_run ? "?dryRun=1" : ""), text.str(),
                      is_json ? "application/json" : "application/yaml");
  if (!reply) {
    std::cerr << "error: " << name << reply.error().describe() << '\n';
    return 1;
  }
  if (!s.print_structured(*reply)) {
    std::cout << name << reply->value("message", "") << '\n';
  }
  return 0;
}

// `-f DIR` applies every *.yaml, *.yml and *.json file in DIR (not below it)
// in name order, as kubectl does; one refused does not stop the others, and
// the exit status is 1 when any was.
int cmd_apply(const Session& s, const std::string& path, bool dry_run) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    return apply_file(s, path, dry_run, false);
  }
  std::vector<std::filesystem::path> files;
  std::filesystem::directory_iterator entries(path, ec);
  for (; !ec && entries != std::filesystem::directory_iterator(); entries.increment(ec)) {
    const std::string extension = entries->path().extension().string();
    if ((extension == ".yaml" || extension == ".yml" || extension == ".json") && entries->is_regular_file(ec)) {
      files.push_back(entries->path());
    }
  }
  if (ec) {
    return report(Error{ErrorCode::kInvalid, "cannot read directory " + path + ": " + ec.message(), "-f"});
  }
  if (files.empty()) {
    return report(Error{ErrorCode::kInvalid, path + " is a directory without *.yaml, *.yml or *.json files", "-f"});
  }
  std::sort(files.begin(), files.end());
  int status = 0;
  for (const auto& file : files) {
    status = std::max(status, apply_file(s, file, dry_run, true));
  }
  return status;
}

int cmd_get_apps(const Session& s, const std::string& name) {
  auto reply = s.call("GET", "/api/v1/applications");
  if (!reply) {
    return report(reply.error());
  }
  json items = json::array();
  for (const auto& a : (*reply)["items"]) {
    if (name.empty() || a["name"] == name) {
      items.push_back(a);
    }
  }
  if (!name.empty() && items.empty()) {
    return report(Error{ErrorCode::kNotFound, "application '" + name + "' not found", ""});
  }
  if (s.print_structured(json{{"items", items}})) {
    return 0;
  }
  std::vector<Row> rows;
  for (const auto& a : items) {
    rows.push_back({cell(a["name"]), cell(a["revision"]), cell(a["deployed"]), cell(a["clusters"]), cell(a["desired"]),
                    cell(a["active"]), cell(a["updatedAt"]), migration_cell(a.value("migration", json()))});
  }
  print_table(std::cout, {"NAME", "REVISION", "DEPLOYED", "CLUSTERS", "DESIRED", "ACTIVE", "UPDATED", "MIGRATION"},
              rows);
  return 0;
}

int cmd_get_hosts(const Session& s) {
  auto reply = s.call("GET", "/api/v1/hosts");
  if (!reply) {
    return report(reply.error());
  }
  if (s.print_structured(*reply)) {
    return 0;
  }
  std::vector<Row> rows;
  for (const auto& h : (*reply)["items"]) {
    std::string labels;
    for (const auto& [k, v] : h["labels"].items()) {
      labels += (labels.empty() ? "" : ",") + k + "=" + v.get<std::string>();
    }
    // A host whose agent was refused says so first (the reason: -o json, the events).
    const bool refused = h.contains("refused") && h["refused"].is_string();
    rows.push_back({cell(h["id"]), cell(h["hostname"]), refused ? std::string("Refused") : cell(h["state"]),
                    cell(h["connected"]), cell(h.value("agentVersion", json())), cell(h.value("protocol", json())),
                    cell(h["members"]), cell(h["slots"]), labels.empty() ? "-" : labels, cell(h["lastSeen"])});
  }
  print_table(std::cout,
              {"ID", "HOSTNAME", "STATE", "CONNECTED", "AGENT", "PROTOCOL", "MEMBERS", "SLOTS", "LABELS", "LAST SEEN"},
              rows);
  return 0;
}

int cmd_get_members(const Session& s, const std::string& path, const std::string& state) {
  const auto [app, cluster] = split_app(path);
  std::string query;
  auto add = [&](const std::string& key, const std::string& value) {
    if (!value.empty()) {
      query += (query.empty() ? "?" : "&") + key + "=" + url_encode(value);
    }
  };
  add("app", app);
  add("cluster", cluster);
  add("state", state);
  auto reply = s.call("GET", "/api/v1/members" + query);
  if (!reply) {
    return report(reply.error());
  }
  if (s.print_structured(*reply)) {
    return 0;
  }
  std::vector<Row> rows;
  for (const auto& m : (*reply)["items"]) {
    std::string ports;
    for (const auto& [k, v] : m["ports"].items()) {
      ports += (ports.empty() ? "" : ",") + k + ":" + v.dump();
    }
    std::string marks;
    if (m.contains("maintenance") && m["maintenance"].is_string() && m["maintenance"] != "off") {
      marks += "maintenance=" + m["maintenance"].get<std::string>();
    }
    if (!m["healingDelayedSince"].is_null()) {
      marks += (marks.empty() ? "" : " ") + std::string("healing-delayed-since=") + cell(m["healingDelayedSince"]);
    }
    rows.push_back({cell(m["id"]), cell(m["state"]), cell(m["host"]), cell(m["revision"]), cell(m["version"]),
                    cell(m["healthy"]), cell(m["pid"]), ports.empty() ? "-" : ports, marks.empty() ? "-" : marks});
  }
  print_table(std::cout, {"ID", "STATE", "HOST", "REVISION", "VERSION", "HEALTHY", "PID", "PORTS", "MARKS"}, rows);
  return 0;
}

int cmd_host(const Session& s, const std::string& action, const std::string& host) {
  auto reply = s.call("POST", "/api/v1/hosts/" + url_encode(host) + "/" + action);
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << cell((*reply)["message"]) << '\n';
  }
  return 0;
}

// Prints a member's output, or with `hook` the output of its last update or
// maintenance hook; with --follow, asks again every second and prints what is
// new (the agent returns the last 64 KiB).
int cmd_logs(const Session& s, const std::string& member, const std::string& hook, bool follow) {
  const std::string target =
      "/api/v1/members/" + url_encode(member) + "/logs" + (hook.empty() ? "" : "?hook=" + url_encode(hook));
  std::string printed;
  for (;;) {
    auto reply = s.call("GET", target);
    if (!reply) {
      return report(reply.error());
    }
    const std::string text = (*reply)["stdout"].get<std::string>() + (*reply)["stderr"].get<std::string>();
    size_t from = 0;
    if (!printed.empty()) {
      const std::string anchor = printed.substr(printed.size() - std::min<size_t>(printed.size(), 256));
      const size_t at = text.rfind(anchor);
      from = at == std::string::npos ? 0 : at + anchor.size();
    }
    std::cout << text.substr(std::min(from, text.size())) << std::flush;
    printed = text;
    if (!follow) {
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the polling interval of --follow
  }
}

int cmd_delete(const Session& s, const std::string& app) {
  auto reply = s.call("DELETE", "/api/v1/applications/" + url_encode(app));
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << reply->value("message", "") << '\n';
  }
  return 0;
}

struct SetArgs {
  std::string value;
  std::string path;
  bool recursive = false;
  bool all_at_once = false;
  std::string duration;
};

int cmd_set(const Session& s, const std::string& setting, const SetArgs& a) {
  const auto [app, node] = split_app(a.path);
  if (app.empty()) {
    return report(Error{ErrorCode::kInvalid, "give an application or a node path like shop/web", "PATH"});
  }
  json body = {{"path", node}, {setting, a.value}, {"propagate", a.recursive}};
  if (a.all_at_once) {
    body["allAtOnce"] = true;
  }
  if (!a.duration.empty()) {
    body["for"] = a.duration;
  }
  auto reply = s.call("PUT", "/api/v1/applications/" + url_encode(app) + "/operational-state", body.dump());
  if (!reply) {
    return report(reply.error());
  }
  if (s.print_structured(*reply)) {
    return 0;
  }
  for (const auto& c : (*reply)["changes"]) {
    const std::string p = c["path"];
    std::cout << cell(c["setting"]) << " on " << (p.empty() ? app : app + "/" + p) << ": "
              << (c["from"].is_null() ? "inherited" : cell(c["from"])) << " -> "
              << (c["to"].is_null() ? "inherited" : cell(c["to"]));
    if (c.contains("note")) {
      std::cout << " (" << cell(c["note"]) << ")";
    }
    std::cout << '\n';
  }
  std::cout << "operation " << cell((*reply)["operation"]) << " (#" << cell((*reply)["seq"]) << ")\n";
  return 0;
}

int cmd_events(const Session& s, const std::string& app, uint64_t since, bool follow) {
  std::string query = "?since=" + std::to_string(since);
  if (!app.empty()) {
    query += "&app=" + url_encode(app);
  }
  auto print_event = [&](const json& e) {
    if (s.format() == OutputFormat::kTable) {
      std::cout << event_line(e) << '\n';
    } else {
      std::cout << e.dump() << '\n';  // one JSON object a line, for tools
    }
    std::cout.flush();
  };
  if (follow) {
    auto done = s.client().stream("/api/v1/events" + query + "&follow=1", [&](const std::string& data) {
      const json e = json::parse(data, nullptr, false);
      if (!e.is_discarded()) {
        print_event(e);
      }
      return static_cast<bool>(std::cout);
    });
    return done ? 0 : report(done.error());
  }
  for (;;) {
    auto reply = s.call("GET", "/api/v1/events" + query);
    if (!reply) {
      return report(reply.error());
    }
    for (const auto& e : (*reply)["items"]) {
      print_event(e);
    }
    if ((*reply)["items"].size() < 1000) {
      return 0;
    }
    query =
        "?since=" + std::to_string((*reply)["last"].get<uint64_t>()) + (app.empty() ? "" : "&app=" + url_encode(app));
  }
}

int cmd_token_create(const Session& s, const std::string& role, const std::string& app, const std::string& name) {
  json body = {{"role", role}};
  if (!app.empty()) {
    body["app"] = app;
  }
  if (!name.empty()) {
    body["name"] = name;
  }
  auto reply = s.call("POST", "/api/v1/tokens", body.dump());
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    std::cout << cell((*reply)["token"]) << '\n';
  }
  return 0;
}

int cmd_version(const Session& s) {
  json out = {{"client", {{"version", build_version()}}}};
  auto reply = s.call("GET", "/version");
  if (reply) {
    out["server"] = *reply;
  }
  if (!s.print_structured(out)) {
    std::cout << "client: " << build_version() << '\n';
    if (reply) {
      std::cout << "server: " << cell((*reply)["version"]) << " (protocol " << cell((*reply)["protocol"]) << ", schema "
                << cell((*reply)["schema"]) << ")\n";
    }
  }
  return reply ? 0 : report(reply.error());
}

}  // namespace

CLI::Validator whole_number_from_1(std::string expected) {
  return CLI::Validator(
      [expected = std::move(expected)](const std::string& text) {
        int64_t n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        return ec == std::errc() && end == text.data() + text.size() && n >= 1 ? std::string()
                                                                               : expected + ", got '" + text + "'";
      },
      "N");
}

void add_client_commands(CLI::App& app, ClientOptions& options, int& exit_code) {
  // The options are global so that they may come before or after the command.
  app.add_option("--server", options.server,
                 "controller URL (default $TRANCHE_SERVER, the data dir's controller.url, or http://127.0.0.1:7468)");
  app.add_option("--token", options.token, "API token (default $TRANCHE_TOKEN or the file $TRANCHE_TOKEN_FILE)");
  app.add_option("--ca", options.ca,
                 "CA file to trust for https:// servers (default $TRANCHE_CA, the data dir's ca.crt)");
  app.add_option("--timeout", options.timeout, "give up on a request after this long (default 30s)")
      ->check(CLI::Validator(
          [](std::string& text) {
            auto d = parse_duration(text);
            return d && d->count() > 0 ? std::string()
                                       : "expected a duration such as 30s or 500ms, got '" + text + "'";
          },
          "DURATION"));
  app.add_option("-o,--output", options.output, "output format")->check(CLI::IsMember({"table", "json", "yaml"}));
  // Values the parser fills in; shared by the callbacks, which outlive this call.
  struct Args {
    std::string apply_file;
    bool apply_dry = false;
    std::string get_apps_name;
    std::string members_path;
    std::string members_state;
    std::string logs_member;
    std::string logs_hook;
    bool logs_follow = false;
    std::string drain_host;
    std::string undrain_host;
    std::string del_app;
    SetArgs set[3];
    std::string events_app;
    uint64_t events_since = 0;
    bool events_follow = false;
    std::string token_role;
    std::string token_app;
    std::string token_name;
  };
  auto args = std::make_shared<Args>();
  size_t setting_index = 0;
  auto run = [&options, &exit_code](auto command) {
    return [&options, &exit_code, command] { exit_code = command(Session(options)); };
  };

  auto* apply = app.add_subcommand("apply", "create or update an application (a new revision)");
  apply->add_option("-f,--filename", args->apply_file,
                    "manifest, YAML or JSON; a directory: each *.yaml, *.yml, *.json in it, by name")
      ->required();
  apply->add_flag("--dry-run", args->apply_dry, "validate and show the change without storing it");
  apply->callback(run([=](const Session& s) { return cmd_apply(s, args->apply_file, args->apply_dry); }));

  auto* get = app.add_subcommand("get", "list resources")->require_subcommand(1);
  auto* get_apps = get->add_subcommand("apps", "applications");
  get_apps->add_option("NAME", args->get_apps_name, "only this application");
  get_apps->callback(run([=](const Session& s) { return cmd_get_apps(s, args->get_apps_name); }));

  auto* get_hosts = get->add_subcommand("hosts", "hosts and their agents");
  get_hosts->callback(run([](const Session& s) { return cmd_get_hosts(s); }));
  auto* get_members = get->add_subcommand("members", "members, optionally of one application or cluster");
  get_members->add_option("PATH", args->members_path, "APP or APP/GROUP/.../CLUSTER");
  get_members->add_option("--state", args->members_state, "only members in this state (Terminated: history)");
  get_members->callback(
      run([=](const Session& s) { return cmd_get_members(s, args->members_path, args->members_state); }));

  auto* logs = app.add_subcommand("logs", "a member's output");
  logs->add_option("MEMBER", args->logs_member, "member id, e.g. shop/web/3")->required();
  auto* follow = logs->add_flag("-f,--follow", args->logs_follow, "keep printing new output");
  // A hook's output is that of one finished run: there is nothing to follow.
  logs->add_option("--hook", args->logs_hook, "the output of the member's last update or maintenance hook")
      ->check(CLI::IsMember({"update", "maintenance"}))
      ->excludes(follow);
  logs->callback(
      run([=](const Session& s) { return cmd_logs(s, args->logs_member, args->logs_hook, args->logs_follow); }));

  auto* host = app.add_subcommand("host", "hosts")->require_subcommand(1);
  for (const char* action : {"drain", "undrain"}) {
    auto* sub = host->add_subcommand(
        action, std::string(action) == "drain" ? "cordon: no new members" : "take new members again");
    auto* target = std::string(action) == "drain" ? &args->drain_host : &args->undrain_host;
    sub->add_option("HOST", *target, "host id")->required();
    sub->callback(run([=](const Session& s) { return cmd_host(s, action, *target); }));
  }

  add_describe_verb(app, options, exit_code);

  auto* del = app.add_subcommand("delete", "undeploy an application, keeping its history");
  del->add_option("APP", args->del_app, "application")->required();
  del->callback(run([=](const Session& s) { return cmd_delete(s, args->del_app); }));

  auto* set = app.add_subcommand("set", "operational state of a node")->require_subcommand(1);
  for (const char* setting : {"autoscaling", "autohealing", "maintenance"}) {
    const bool maintenance = std::string(setting) == "maintenance";
    auto* sub = set->add_subcommand(setting, maintenance ? "off | restart | replace" : "on | off");
    SetArgs* a = &args->set[setting_index++];
    sub->add_option("VALUE", a->value)
        ->required()
        ->check(maintenance ? CLI::IsMember({"off", "restart", "replace"}) : CLI::IsMember({"on", "off"}));
    sub->add_option("PATH", a->path, "APP or APP/GROUP/.../CLUSTER or a member")->required();
    sub->add_flag("--recursive", a->recursive, "also clear explicit values below, so the subtree follows");
    sub->add_option("--for", a->duration, "revert by itself after this long (30s, 2h, 1h30m)");
    if (maintenance) {
      sub->add_flag("--all-at-once", a->all_at_once, "ignore maxUnavailable");
    }
    sub->callback(run([=](const Session& s) { return cmd_set(s, setting, *a); }));
  }

  add_rollout_verbs(app, options, exit_code);

  auto* events = app.add_subcommand("events", "the event log");
  events->add_option("--app", args->events_app, "only this application");
  events->add_option("--since", args->events_since, "only events after this seq");
  events->add_flag("-f,--follow", args->events_follow, "keep streaming new events");
  events->callback(
      run([=](const Session& s) { return cmd_events(s, args->events_app, args->events_since, args->events_follow); }));

  auto* token = app.add_subcommand("token", "API tokens")->require_subcommand(1);
  auto* token_create = token->add_subcommand("create", "issue a token (printed once)");
  token_create->add_option("--role", args->token_role, "admin | operator | viewer")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "viewer"}));
  token_create->add_option("--app", args->token_app, "limit the token to one application");
  token_create->add_option("--name", args->token_name, "a name for audit records");
  token_create->callback(
      run([=](const Session& s) { return cmd_token_create(s, args->token_role, args->token_app, args->token_name); }));

  app.add_subcommand("version", "versions of client and server")->callback(run([](const Session& s) {
    return cmd_version(s);
  }));

  add_operator_verbs(app, options, exit_code);
  add_migration_verbs(app, options, exit_code);
}

}  // namespace tranche::cli
