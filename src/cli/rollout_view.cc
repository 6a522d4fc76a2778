#include "cli/rollout_view.h"

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

// The controller side is young: a missing or null field renders as a
// default instead of throwing.
std::string text_of(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t int_of(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

std::string number_or_dash(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? std::to_string(it->get<int64_t>()) : std::string("-");
}

const json& clusters_of(const json& rollout) {
  static const json kNone = json::array();
  const auto it = rollout.find("clusters");
  return it != rollout.end() && it->is_array() ? *it : kNone;
}

// Everything but the clock: what makes a change worth a line.
json without_time(json j) {
  if (j.is_object()) {
    j.erase("elapsedSeconds");
    j.erase("updatedAt");
  }
  return j;
}

json top_level(const json& rollout) {
  json j = without_time(rollout);
  if (j.is_object()) {
    j.erase("clusters");
  }
  return j;
}

std::vector<std::string> cluster_cells(const json& c, int bar_width) {
  const int64_t updated = int_of(c, "updated");
  const int64_t total = int_of(c, "total");
  const int64_t failures = int_of(c, "failures");
  const std::string status = text_of(c, "status");
  std::vector<std::string> cells{text_of(c, "path")};
  if (bar_width > 0) {
    cells.push_back(progress_bar(static_cast<int>(updated), static_cast<int>(total), status == "Done", bar_width));
  }
  cells.push_back(std::to_string(updated) + "/" + std::to_string(total) + " updated");
  cells.push_back(std::to_string(int_of(c, "available")) + " available");
  cells.push_back(std::to_string(failures) + " failed" +
                  (failures > 0 ? " (max " + std::to_string(int_of(c, "maxFailures")) + ")" : ""));
  // As wide as the widest status, so that the columns after it stay put
  // while the clusters change status during a watch.
  std::string status_cell = status.empty() ? "?" : status;
  status_cell.resize(std::max(status_cell.size(), std::string_view("CanaryPaused").size()), ' ');
  cells.push_back(std::move(status_cell));
  std::string how = text_of(c, "method");
  const std::string strategy = text_of(c, "strategy");
  if (!strategy.empty()) {
    how += (how.empty() ? "" : ", ") + strategy;
  }
  cells.push_back(how.empty() ? std::string("-") : how);
  std::string waiting;
  if (const auto it = c.find("waitingFor"); it != c.end() && it->is_array()) {
    for (const auto& w : *it) {
      if (w.is_string()) {
        waiting += (waiting.empty() ? "waiting for " : ", ") + w.get<std::string>();
      }
    }
  }
  cells.push_back(waiting);
  return cells;
}

// Pads every column to its widest cell, two spaces apart, no trailing blanks.
std::vector<std::string> align(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line += std::string(widths[i] - row[i].size() + 2, ' ');
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace

bool is_final_phase(std::string_view phase) { return phase == "Succeeded" || phase == "Failed" || phase == "Aborted"; }

int exit_code_for_phase(std::string_view phase) { return phase == "Failed" || phase == "Aborted" ? 1 : 0; }

std::string progress_bar(int updated, int total, bool done, int width) {
  int filled = 0;
  if (total > 0) {
    filled = static_cast<int>(static_cast<int64_t>(std::clamp(updated, 0, total)) * width / total);
  } else if (done) {
    filled = width;
  }
  return "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '-') +
         "]";
}

std::string format_elapsed(double seconds) {
  return format_duration(std::chrono::seconds(static_cast<int64_t>(std::max(seconds, 0.0))));
}

std::string phase_line(const json& rollout) {
  const std::string phase = text_of(rollout, "phase");
  std::string line = "rollout " + number_or_dash(rollout, "id") + " of " + text_of(rollout, "application") +
                     ": revision " + number_or_dash(rollout, "fromRevision") + " -> " +
                     number_or_dash(rollout, "toRevision");
  const std::string target = number_or_dash(rollout, "targetRevision");
  if (target != "-" && target != number_or_dash(rollout, "toRevision")) {
    line += ", back to " + target;
  }
  line += "  " + (phase.empty() ? std::string("?") : phase);
  if (const auto it = rollout.find("elapsedSeconds"); it != rollout.end() && it->is_number()) {
    line += "  " + format_elapsed(it->get<double>());
  }
  if (const std::string reason = text_of(rollout, "reason"); !reason.empty()) {
    line += "  (" + reason + ")";
  }
  if (const std::string message = text_of(rollout, "message"); !message.empty()) {
    line += "  " + message;
  }
  return line;
}

std::vector<std::string> cluster_lines(const json& rollout, int bar_width) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : clusters_of(rollout)) {
    rows.push_back(cluster_cells(c, bar_width));
  }
  return align(rows);
}

std::vector<std::string> status_lines(const json& rollout, int bar_width) {
  std::vector<std::string> lines{phase_line(rollout)};
  for (const auto& l : cluster_lines(rollout, bar_width)) {
    lines.push_back("  " + l);
  }
  return lines;
}

std::vector<std::string> changed_lines(const json* previous, const json& current) {
  if (previous == nullptr) {
    return status_lines(current, 0);
  }
  std::vector<std::string> lines;
  if (top_level(*previous) != top_level(current)) {
    lines.push_back(phase_line(current));
  }
  const json& before = clusters_of(*previous);
  const json& after = clusters_of(current);
  const std::vector<std::string> rendered = cluster_lines(current, 0);
  for (size_t i = 0; i < after.size(); ++i) {
    const std::string path = text_of(after[i], "path");
    const auto old =
        std::find_if(before.begin(), before.end(), [&](const json& c) { return text_of(c, "path") == path; });
    if (old == before.end() || *old != after[i]) {
      lines.push_back("  " + rendered[i]);
    }
  }
  return lines;
}

bool differs(const json& previous, const json& current) { return without_time(previous) != without_time(current); }

std::optional<std::string> supersede_note(const json& previous, const json& current) {
  const std::string old_id = number_or_dash(previous, "id");
  if (number_or_dash(current, "id") != old_id) {
    return "rollout " + old_id + " was superseded by rollout " + number_or_dash(current, "id") + " (revision " +
           number_or_dash(current, "fromRevision") + " -> " + number_or_dash(current, "toRevision") + "); following it";
  }
  if (text_of(current, "phase") == "Superseded" && text_of(previous, "phase") != "Superseded") {
    return "rollout " + old_id + " was superseded; waiting for the newer rollout";
  }
  return std::nullopt;
}

std::string control_line(const json& answer) {
  const std::string phase = text_of(answer, "phase");
  const std::string shown = phase.empty() ? std::string("?") : phase;
  const std::string message = text_of(answer, "message");
  // The controller's message names the rollout already.
  return message.empty() ? "rollout " + number_or_dash(answer, "id") + " " + shown : message + " (phase " + shown + ")";
}

std::string fit_to_width(const std::string& line, int columns) {
  int seen = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    // A byte 10xxxxxx continues a UTF-8 character: it takes no column.
    if ((static_cast<unsigned char>(line[i]) & 0xC0) != 0x80 && seen++ == columns) {
      return line.substr(0, i);
    }
  }
  return line;
}

}  // namespace tranche::cli
