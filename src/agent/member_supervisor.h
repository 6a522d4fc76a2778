#pragma once
// The lifecycle of the host's members, apart from the session with the
// controller (agent.cc): starting, stopping, maintenance and in-place
// updates through their hooks, the restarts after those hooks, watching the
// processes, probing their health and journaling its verdict. Every step
// that changes a member is journaled before it acts, so an agent killed at
// any instant finishes it once restarted (resume).

#include <utility>  // before Asio: coroutine support needs it on g++ 12

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include "agent/driver.h"
#include "agent/health.h"
#include "agent/journal.h"
#include "common/error.h"
#include "protocol/messages.h"

namespace tranche::agent {

class MemberSupervisor {
 public:
  // What the supervisor needs of the agent's session with the controller.
  // Called on the event loop only.
  class Session {
   public:
    virtual ~Session() = default;
    // Writes the whole journal (members and commands are one file); a
    // failure is logged, and returned for the caller that must not go on.
    virtual Status save_journal() = 0;
    // A command is done: its result is journaled, then sent (and replayed
    // until acknowledged).
    virtual void answer(const protocol::CommandResult& result) = 0;
    // A member exited, turned healthy or unhealthy, or resumed after its
    // maintenance; dropped while disconnected (the heartbeats re-send state).
    virtual void report(const protocol::AgentEvent& event) = 0;
  };

  // `members` is the journal's, which the session saves; the supervisor
  // alone changes it. `driver` runs the members' processes (the agent's:
  // make_process_driver()).
  MemberSupervisor(boost::asio::io_context& io, std::filesystem::path state_dir,
                   std::map<std::string, JournalMember>& members, Session& session, std::unique_ptr<Driver> driver);

  // After the agent's start: ends processes nobody journaled, takes back the
  // members still running, and finishes the stops, maintenances and updates
  // an earlier incarnation left half done (`commands`: the journal's, to
  // find the ones still to answer).
  void resume(const std::vector<JournalCommand>& commands);
  // Polls the members' processes and probes their health until stop_watching.
  void watch();
  // The agent is stopping; its members keep running.
  void stop_watching();

  // The member commands, admitted and journaled by the session.
  void start_member(const protocol::Command& command, const protocol::StartSpec& start);
  void stop_member(const protocol::Command& command, const protocol::StopSpec& stop);
  void maintain_member(const protocol::Command& command, const protocol::MaintenanceSpec& maintenance);
  void update_member(const protocol::Command& command, const protocol::UpdateSpec& request);
  void send_logs(const protocol::Command& command, const protocol::LogsSpec& spec);

  // The members as the hello lists them, and as each heartbeat reports them.
  std::vector<protocol::HelloMember> hello_entries() const;
  std::vector<protocol::MemberReport> heartbeat_reports();

 private:
  // What the agent knows of one member's health between heartbeats.
  struct Health {
    bool healthy = false;
    int failures = 0;
    bool probing = false;
    std::chrono::steady_clock::time_point next_probe{};
    std::optional<protocol::MemberStats> stats;
  };

  void complete(const std::string& id, bool ok, const std::string& message, protocol::ResultData data = {},
                std::optional<int> exit_code = std::nullopt);
  void stop_unjournaled_processes();
  std::filesystem::path member_dir(const std::string& member) const;

  void restart_after_hook(const std::string& member, const std::string& note);
  void finish_maintenance(const std::string& id, JournalMember& m);
  void on_update_hook(const std::string& member, const std::string& command_id, const HookOutcome& outcome,
                      const std::string& last_output_line);
  void restart_for_update(const std::string& member, const std::string& note);
  void finish_update(const std::string& id, JournalMember& m);

  boost::asio::awaitable<void> poll_loop();
  void poll_members();
  void probe(const std::string& id, const JournalMember& m);
  void schedule_probe(const std::string& id, const JournalMember& m, const nlohmann::json& health,
                      std::chrono::milliseconds interval);
  void journal_health(const std::string& id, bool healthy);
  void on_probe(const std::string& id, const std::optional<ProbeResult>& result, const std::optional<Stats>& figures,
                int threshold);

  boost::asio::io_context& io_;
  std::filesystem::path state_dir_;
  std::map<std::string, JournalMember>& members_;
  Session& session_;
  std::unique_ptr<Driver> driver_;
  boost::asio::thread_pool pool_{4};  // hooks and probes, off the event loop
  boost::asio::steady_timer poll_timer_;
  bool stopping_ = false;
  std::map<std::string, Health> health_;
  std::map<std::string, std::string> pending_stops_;        // member -> stop command id
  std::map<std::string, std::string> pending_maintenance_;  // member -> maintenance command id
  std::map<std::string, std::string> maintenance_notes_;    // member -> what its hook did
};

}  // namespace tranche::agent
