// Autohealing off (model.md), or suspended by a migration lock: healing a
// member waits, said once, and resumes.

#include "engine/fleet/fleet.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/time_format.h"
#include "engine/events.h"

namespace tranche {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

}  // namespace

// model.md, "autohealing off": the fact is recorded and published once, and
// nothing is started or stopped for the member.
void Fleet::delay_healing(MemberEntry& m, const std::string& why) {
  if (m.record.healing_delayed_since) {
    return;
  }
  const std::string message = why + ": " + m.record.id + " (" + m.record.state + ") is neither restarted nor replaced";
  spdlog::warn("{}", message);
  record_healing(m, clock_.now(), "HealingDelayed", message);
}

// Autohealing is back on (or the migration lock lifted) for a member that
// still needs it: say for how long healing waited, then heal as usual.
void Fleet::resume_healing(MemberEntry& m) {
  const auto waited = duration_cast<milliseconds>(clock_.now() - *m.record.healing_delayed_since);
  const std::string message = "autohealing is on again: healing of " + m.record.id + " had been delayed since " +
                              format_rfc3339(*m.record.healing_delayed_since) + " (" + format_duration(waited) + ")";
  spdlog::info("{}", message);
  record_healing(m, std::nullopt, "HealingResumed", message);
}

// The member's healing waits since `delayed_since` (or no longer waits),
// staged with the event that tells the operator.
void Fleet::record_healing(MemberEntry& m, std::optional<TimePoint> delayed_since, const char* event,
                           const std::string& message) {
  MemberRecord next = m.record;
  next.healing_delayed_since = delayed_since;
  WriteBatch batch;
  batch.mutations.push_back(PutMember{next});
  batch.mutations.push_back(AppendEvent{make_event(clock_.now(), m.record.app, full_path(m.record.app, m.record.cluster),
                                                   m.record.id, event, m.record.state, m.record.state, message)});
  stage(std::move(batch));
  m.record = std::move(next);
  note_change(m);
}

}  // namespace tranche
