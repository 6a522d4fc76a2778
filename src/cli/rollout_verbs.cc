// The rollout commands (rollout_verbs.h): a rollout's history, its status
// once or watched until it ends (redrawn in place on a terminal, a line or a
// document per change otherwise), pause, resume, abort, promote and undo, and
// `update`, which applies the current manifest with one version changed.
#include "cli/rollout_verbs.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/manifest_edit.h"
#include "cli/output.h"
#include "cli/rollout_view.h"
#include "cli/session.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

int cmd_rollout_history(const Session& s, const std::string& app) {
  auto reply = s.call("GET", "/api/v1/applications/" + url_encode(app) + "/revisions");
  if (!reply) {
    return report(reply.error());
  }
  if (s.print_structured(*reply)) {
    return 0;
  }
  std::vector<Row> rows;
  for (const auto& r : (*reply)["items"]) {
    rows.push_back({cell(r["revision"]) + (r.value("current", false) ? "*" : ""), cell(r["createdAt"]),
                    cell(r["author"]), cell(r["summary"])});
  }
  print_table(std::cout, {"REVISION", "CREATED", "AUTHOR", "SUMMARY"}, rows);
  return 0;
}

std::string rollout_target(const std::string& app) { return "/api/v1/applications/" + url_encode(app) + "/rollout"; }

void print_lines(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    std::cout << l << '\n';
  }
  std::cout.flush();
}

std::string phase_of(const json& rollout) {
  return rollout.contains("phase") && rollout["phase"].is_string() ? rollout["phase"].get<std::string>() : "";
}

// A block of lines redrawn in place on a terminal: the cursor goes back up
// over the previous drawing, which is cleared, and the new one is written.
class LiveFrame {
 public:
  void draw(const std::vector<std::string>& lines) {
    std::string out;
    if (drawn_ > 0) {
      out += "\x1b[" + std::to_string(drawn_) + "A\r";
    }
    out += "\x1b[J";
    // A wrapped line would take two rows and spoil the next cursor-up.
    const int columns = terminal_columns() - 1;
    for (const auto& l : lines) {
      out += fit_to_width(l, columns) + "\n";
    }
    std::cout << out << std::flush;
    drawn_ = lines.size();
  }

  // Leaves the current drawing in the scrollback; the next draw goes below.
  void keep() { drawn_ = 0; }

 private:
  static int terminal_columns() {
    winsize size{};
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 ? size.ws_col : 80;
  }

  size_t drawn_ = 0;
};

// Fast enough that a progress bar looks live, slow enough to cost the
// controller nothing: one GET of a small document.
constexpr auto kWatchPollInterval = std::chrono::milliseconds(400);
// A controller restarting (or failing over) answers again within this; the
// rollout continues from its last persisted step, so the watch waits for it.
constexpr auto kControllerGrace = std::chrono::seconds(30);
constexpr int kBarWidth = 20;

// Follows the newest rollout of `app` until it ends: a live frame on a
// terminal, otherwise a line per change (or a document per change with -o).
int watch_rollout(const Session& s, const std::string& app) {
  const bool live = s.format() == OutputFormat::kTable && isatty(STDOUT_FILENO) == 1;
  LiveFrame frame;
  std::optional<json> last;
  auto last_answer = std::chrono::steady_clock::now();
  bool lost = false;
  for (;; std::this_thread::sleep_for(kWatchPollInterval)) {
    auto reply = s.call("GET", rollout_target(app));
    if (!reply) {
      if (!last || reply.error().code != ErrorCode::kUnavailable ||
          std::chrono::steady_clock::now() - last_answer > kControllerGrace) {
        return report(reply.error());
      }
      const std::string note = "waiting for the controller: " + reply.error().describe();
      if (live) {
        auto lines = status_lines(*last, kBarWidth);
        lines.push_back(note);
        frame.draw(lines);
      } else if (!lost) {
        // Beside -o json a note would spoil the stream of documents.
        (s.format() == OutputFormat::kTable ? std::cout : std::cerr) << note << std::endl;
      }
      lost = true;
      continue;
    }
    last_answer = std::chrono::steady_clock::now();
    const bool was_lost = std::exchange(lost, false);
    const json& current = *reply;
    std::optional<std::string> note = last ? supersede_note(*last, current) : std::nullopt;
    if (live) {
      if (note) {
        frame.keep();
        print_lines({*note});
      }
      frame.draw(status_lines(current, kBarWidth));
    } else if (s.format() != OutputFormat::kTable) {
      if (note || !last || differs(*last, current)) {
        if (s.format() == OutputFormat::kJson) {
          std::cout << current.dump() << '\n';  // one document a line, for tools
        } else {
          std::cout << "---\n";
          print_document(std::cout, current, OutputFormat::kYaml);
        }
        std::cout.flush();
      }
    } else {
      if (note) {
        print_lines({*note});
      }
      // After a supersede or a silence of the controller the rollout is
      // shown whole again.
      const bool continued = last && !was_lost && (*last)["id"] == current["id"];
      print_lines(changed_lines(continued ? &*last : nullptr, current));
    }
    last = current;
    const std::string phase = phase_of(current);
    if (is_final_phase(phase)) {
      return exit_code_for_phase(phase);
    }
  }
}

int cmd_rollout_status(const Session& s, const std::string& app, bool watch) {
  if (watch) {
    return watch_rollout(s, app);
  }
  auto reply = s.call("GET", rollout_target(app));
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_lines(status_lines(*reply, 0));
  }
  return exit_code_for_phase(phase_of(*reply));
}

int cmd_rollout_control(const Session& s, const std::string& action, const std::string& app) {
  auto reply = s.call("POST", rollout_target(app) + "/" + action);
  if (!reply) {
    return report(reply.error());
  }
  if (!s.print_structured(*reply)) {
    print_lines({control_line(*reply)});
  }
  return 0;
}

int cmd_rollout_undo(const Session& s, const std::string& app, int64_t to_revision) {
  json body = json::object();
  if (to_revision > 0) {
    body["toRevision"] = to_revision;
  }
  auto reply = s.call("POST", rollout_target(app) + "/undo", body.dump());
  if (!reply) {
    return report(reply.error());
  }
  return print_apply_answer(s, *reply, app);
}

// Applies the current revision's manifest again with one cluster's
// artifact.version changed. Between the read and the apply another apply
// may land and would be overwritten: the API has no precondition on the base
// revision to refuse that.
int cmd_update(const Session& s, const std::string& path, const std::string& version) {
  const auto [app, cluster] = split_app(path);
  if (app.empty() || cluster.empty()) {
    std::cerr << "error: PATH: give a cluster path like shop/web or shop/backend/db, got '" << path << "'\n";
    return 2;
  }
  if (version.empty()) {
    std::cerr << "error: --version: give the artifact version to roll out\n";
    return 2;
  }
  auto application = s.call("GET", "/api/v1/applications/" + url_encode(app));
  if (!application) {
    return report(application.error());
  }
  if (!(*application)["revision"].is_number_integer()) {
    return report(Error{ErrorCode::kInternal, "the server did not say the current revision of " + app, ""});
  }
  const int64_t current = (*application)["revision"].get<int64_t>();
  auto revision = s.call("GET", "/api/v1/applications/" + url_encode(app) + "/revisions/" + std::to_string(current));
  if (!revision) {
    return report(revision.error());
  }
  auto manifest = with_cluster_version((*revision)["manifest"], cluster, version);
  if (!manifest) {
    return report(manifest.error());
  }
  auto reply = s.call("POST", "/api/v1/applications", manifest->dump(), "application/json");
  if (!reply) {
    return report(reply.error());
  }
  return print_apply_answer(s, *reply, app);
}

}  // namespace

void add_rollout_verbs(CLI::App& app, ClientOptions& options, int& exit_code) {
  // Values the parser fills in; shared by the callbacks, which outlive this call.
  struct Args {
    std::string history_app;
    std::string status_app;
    bool status_watch = false;
    std::string control_app[4];
    std::string undo_app;
    int64_t undo_to = 0;
    std::string update_path;
    std::string update_version;
  };
  auto args = std::make_shared<Args>();
  auto run = [&options, &exit_code](auto command) {
    return [&options, &exit_code, command] { exit_code = command(Session(options)); };
  };

  auto* rollout = app.add_subcommand("rollout", "rollouts and revisions")->require_subcommand(1);
  auto* history = rollout->add_subcommand("history", "revisions with time, author and change");
  history->add_option("APP", args->history_app, "application")->required();
  history->callback(run([=](const Session& s) { return cmd_rollout_history(s, args->history_app); }));

  auto* status = rollout->add_subcommand("status", "phase and per-cluster progress of the newest rollout");
  status->add_option("APP", args->status_app, "application")->required();
  status->add_flag("-w,--watch", args->status_watch,
                   "follow it until it ends: exit 0 on Succeeded, 1 on Failed or Aborted");
  status->callback(run([=](const Session& s) { return cmd_rollout_status(s, args->status_app, args->status_watch); }));

  const std::pair<const char*, const char*> controls[] = {
      {"pause", "hold the rollout where it is until resume"},
      {"resume", "continue a paused rollout"},
      {"abort", "stop where it is; members keep the revision they reached"},
      {"promote", "continue past the canary pause"},
  };
  for (size_t i = 0; i < std::size(controls); ++i) {
    const char* action = controls[i].first;
    std::string* target = &args->control_app[i];
    auto* sub = rollout->add_subcommand(action, controls[i].second);
    sub->add_option("APP", *target, "application")->required();
    sub->callback(run([=](const Session& s) { return cmd_rollout_control(s, action, *target); }));
  }

  auto* undo = rollout->add_subcommand("undo", "a new rollout back to an earlier revision");
  undo->add_option("APP", args->undo_app, "application")->required();
  undo->add_option("--to-revision", args->undo_to, "revision to go back to (default: the previous one)")
      ->check(whole_number_from_1("a revision is a number from 1"));
  undo->callback(run([=](const Session& s) { return cmd_rollout_undo(s, args->undo_app, args->undo_to); }));

  auto* update = app.add_subcommand("update", "a new revision with one cluster's artifact version changed");
  update->add_option("PATH", args->update_path, "APP/CLUSTER or APP/GROUP/.../CLUSTER")->required();
  update->add_option("--version", args->update_version, "the artifact version to roll out")->required();
  update->callback(run([=](const Session& s) { return cmd_update(s, args->update_path, args->update_version); }));
}

}  // namespace tranche::cli
