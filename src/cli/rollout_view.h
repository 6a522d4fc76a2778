#pragma once
// How `tranche rollout status` shows a rollout (the JSON of
// GET /applications/{app}/rollout): pure functions from that document to
// lines, so that the plain, the live and the change-only forms agree and can
// be tested without a terminal or a controller.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tranche::cli {

// Succeeded, Failed and Aborted end a watch. Superseded does not: a newer
// rollout carries on and the watch follows it.
bool is_final_phase(std::string_view phase);

// 1 for Failed and Aborted, 0 otherwise.
int exit_code_for_phase(std::string_view phase);

// "[########------------]": `updated` of `total` filled, `width` cells inside
// the brackets. A cluster with no members is full once Done.
std::string progress_bar(int updated, int total, bool done, int width);

// "12s", "2m5s": whole seconds of elapsedSeconds.
std::string format_elapsed(double seconds);

// "rollout 3 of shop: revision 1 -> 2  Progressing  12s  (apply)  3 of 6 updated";
// while RollingBack: "revision 1 -> 2, back to 1".
std::string phase_line(const nlohmann::json& rollout);

// One line per cluster, in the document's order, columns aligned:
// "web  [####----] 3/6 updated  5 available  0 failed  Progressing  replace, rolling".
// `bar_width` 0 leaves the bar out.
std::vector<std::string> cluster_lines(const nlohmann::json& rollout, int bar_width);

// The phase line, then the cluster lines indented by two spaces.
std::vector<std::string> status_lines(const nlohmann::json& rollout, int bar_width);

// What a watch without a terminal prints when `current` arrives after
// `previous` (nullptr: the first answer): the phase line when the rollout's
// phase, revisions, reason or message changed (elapsed time alone is no
// change), and the line of every cluster that changed. Lines are
// self-contained, for logs.
std::vector<std::string> changed_lines(const nlohmann::json* previous, const nlohmann::json& current);

// True when `current` says more than `previous` beyond the passing of time.
bool differs(const nlohmann::json& previous, const nlohmann::json& current);

// When the watch must say that it now follows another rollout: the newest
// rollout has another id than the one watched, or the watched one reports
// Superseded. Empty otherwise.
std::optional<std::string> supersede_note(const nlohmann::json& previous, const nlohmann::json& current);

// The answer of a control (pause, resume, abort, promote):
// "rollout 3 of shop paused by admin (phase Paused)".
std::string control_line(const nlohmann::json& answer);

// `line` cut to `columns` characters (UTF-8 aware), so that a live redraw
// never wraps and its cursor-up count stays right.
std::string fit_to_width(const std::string& line, int columns);

}  // namespace tranche::cli
