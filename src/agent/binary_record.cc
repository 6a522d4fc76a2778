#include "agent/binary_record.h"

#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "protocol/json_reader.h"

namespace tranche::agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t to_ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint from_ms(int64_t ms) { return TimePoint{std::chrono::milliseconds{ms}}; }

json binary_json(const AgentBinary& b) { return {{"version", b.version}, {"path", b.path.string()}}; }

AgentBinary read_binary(const json& j, const std::string& path, protocol::Reader& outer) {
  protocol::Reader r(j, path);
  AgentBinary b{r.nonempty_str("version"), r.nonempty_str("path")};
  outer.absorb(r.done(0));
  return b;
}

// Present and not null.
const json* given(protocol::Reader& r, const char* key) {
  const json* v = r.raw(key);
  return v && !v->is_null() && r.ok() ? v : nullptr;
}

}  // namespace

Result<std::optional<BinaryRecord>> load_binary_record(const fs::path& state_dir) {
  const fs::path file = state_dir / kBinaryRecordFile;
  std::ifstream in(file);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      return std::optional<BinaryRecord>{};
    }
    return fail(ErrorCode::kInternal, "cannot read " + file.string());
  }
  std::stringstream text;
  text << in.rdbuf();
  json j = json::parse(text.str(), nullptr, false);
  if (j.is_discarded()) {
    j = nullptr;  // the reader's "expected an object"
  }
  protocol::Reader r(j, file.filename().string());
  BinaryRecord record;
  if (const json* current = given(r, "current")) {
    record.current = read_binary(*current, r.path("current"), r);
  } else {
    r.fail_at("current", "is required");
  }
  if (const json* previous = given(r, "previous")) {
    record.previous = read_binary(*previous, r.path("previous"), r);
  }
  if (const json* trial = given(r, "trial")) {
    protocol::Reader t(*trial, r.path("trial"));
    BinaryTrial x;
    x.command_id = t.nonempty_str("commandId");
    x.binary = AgentBinary{t.nonempty_str("version"), t.nonempty_str("path")};
    x.switched_at = from_ms(t.integer("switchedAtMs", true, 0, protocol::kInt64Max).value_or(0));
    x.deadline = from_ms(t.integer("deadlineMs", true, 0, protocol::kInt64Max).value_or(0));
    r.absorb(t.done(0));
    record.trial = std::move(x);
  }
  if (const json* report = given(r, "report")) {
    protocol::Reader p(*report, r.path("report"));
    protocol::AgentUpgradeReport x{p.nonempty_str("commandId"), p.str("version"), p.boolean("ok"), p.str("message")};
    r.absorb(p.done(0));
    record.report = std::move(x);
  }
  auto done = r.done(std::move(record));
  if (!done) {
    return std::unexpected(done.error());
  }
  return std::optional<BinaryRecord>(std::move(*done));
}

Status save_binary_record(const fs::path& state_dir, const BinaryRecord& record) {
  json j = {{"current", binary_json(record.current)},
            {"previous", record.previous ? binary_json(*record.previous) : json()},
            {"trial", nullptr},
            {"report", nullptr}};
  if (record.trial) {
    j["trial"] = {{"commandId", record.trial->command_id},
                  {"version", record.trial->binary.version},
                  {"path", record.trial->binary.path.string()},
                  {"switchedAtMs", to_ms(record.trial->switched_at)},
                  {"deadlineMs", to_ms(record.trial->deadline)}};
  }
  if (record.report) {
    j["report"] = {{"commandId", record.report->command_id},
                   {"version", record.report->version},
                   {"ok", record.report->ok},
                   {"message", record.report->message}};
  }
  return write_file_atomically(state_dir / kBinaryRecordFile, j.dump(2) + "\n", 0600);
}

Result<FileLock> lock_binary_record(const fs::path& state_dir, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto lock = FileLock::acquire(state_dir / "agent-binary.lock");
    if (lock || lock.error().code != ErrorCode::kConflict || std::chrono::steady_clock::now() >= give_up) {
      return lock;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

BinaryRecord begin_trial(BinaryRecord record, BinaryTrial trial) {
  record.report.reset();  // a new switch supersedes what the last one said
  record.trial = std::move(trial);
  return record;
}

BinaryRecord confirm_trial(BinaryRecord record) {
  if (!record.trial) {
    return record;
  }
  const BinaryTrial trial = std::move(*record.trial);
  record.trial.reset();
  record.report = protocol::AgentUpgradeReport{
      trial.command_id, trial.binary.version, true,
      "tranche " + trial.binary.version + " connected; was " + record.current.version};
  record.previous = std::move(record.current);
  record.current = trial.binary;
  return record;
}

BinaryRecord fall_back(BinaryRecord record, const std::string& why) {
  if (!record.trial) {
    return record;
  }
  record.report = protocol::AgentUpgradeReport{record.trial->command_id, record.trial->binary.version, false,
                                               why + "; back on " + record.current.version};
  record.trial.reset();
  return record;
}

BinaryRecord forget_report(BinaryRecord record, const std::string& command_id) {
  if (record.report && record.report->command_id == command_id) {
    record.report.reset();
  }
  return record;
}

StartupChoice choose_startup_binary(const std::optional<BinaryRecord>& loaded, const StartupContext& context) {
  StartupChoice choice;
  if (!loaded) {
    return choice;  // never upgraded: the binary that was started runs
  }
  BinaryRecord record = *loaded;
  if (record.trial) {
    if (!context.trial_marker.empty() && context.trial_marker == record.trial->command_id) {
      choice.is_trial = true;
      choice.note = "on trial as tranche " + record.trial->binary.version + " (command " +
                    record.trial->command_id + "), until connected";
      return choice;
    }
    // Started again (by its supervisor, or after a reboot) while a switch was
    // unconfirmed: the new binary never proved itself, the old one did, so
    // the old one runs. The trial's watchdog, if alive, finds the trial
    // cleared and leaves.
    record = fall_back(std::move(record), "the agent was started again during the switch to " +
                                              record.trial->binary.version + ", before it had connected");
    choice.write = record;
  }
  const fs::path& wanted = record.current.path;
  if (context.same_file(context.self, wanted)) {
    return choice;
  }
  if (context.exec_marker) {
    // This process was exec'd by an agent or its watchdog: run, never exec again.
    choice.note = "running " + context.self.string() + " as exec'd, although the record names " + wanted.string();
    return choice;
  }
  if (!context.is_executable(wanted)) {
    choice.note = "the recorded binary " + wanted.string() + " (tranche " + record.current.version +
                  ") is missing or not executable; running " + context.self.string() + " (tranche " +
                  context.self_version + ")";
    return choice;
  }
  choice.exec = wanted;
  choice.note = "the record says tranche " + record.current.version + " runs: exec " + wanted.string();
  return choice;
}

}  // namespace tranche::agent
