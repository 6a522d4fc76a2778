#pragma once
// The fault campaign's test fixture: a controller, three agents and this
// test's own API calls in network namespaces the test creates (as
// netns_test.cc), the operations and faults of a campaign::Step carried out
// on them, and the checks made once the cluster is back at rest.
//
//   c: the controller (0.0.0.0:PORT, the same port after every restart),
//      agent 2 on 127.0.0.1, and this test's threads (they enter c)
//   a, b: agents 0 and 1, reaching the controller over veths c<->a, c<->b

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fault_campaign.h"
#include "harness.h"
#include "netns.h"

namespace tranche::e2e {

class FaultCampaign : public ::testing::Test {
 public:
  static constexpr const char* kApp = "shop";
  static constexpr const char* kCluster = "shop/web";

 protected:
  static constexpr int kHosts = 3;        // agents 0 (ns a), 1 (ns b), 2 (ns c)
  static constexpr int kLinkedHosts = 2;  // agents 0 and 1 sit behind a veth

  void SetUp() override;
  void TearDown() override;

  struct Answer {
    int status = 0;
    nlohmann::json body;
  };

  // Started (and restarted) on the port of its first start, so that agents
  // given --server find it again.
  bool start_controller();
  void start_agent(int i);

  Answer api(const std::string& method, const std::string& target, const nlohmann::json& body = nullptr) const;
  nlohmann::json get(const std::string& target) const;
  nlohmann::json hosts() const { return get("/api/v1/hosts"); }
  int ready_hosts() const;
  bool host_ready(int i) const;
  // The application's live members (or those in `state`), remembering their pids.
  std::vector<nlohmann::json> members(const std::string& state = "");
  // The workload processes (tranche-hello) in the test's namespaces.
  std::set<int64_t> workloads() const;
  std::vector<nlohmann::json> whole_log() const;
  // A line of the run's story, printed and kept for failure messages.
  void note(const std::string& line);

  void perform(const campaign::Operation& op);
  void inject(const campaign::Fault& fault);
  bool converge(std::string& why);
  void check_at_rest();
  void check_nothing_left_after_delete();
  std::string describe_strays(const std::set<int64_t>& owned) const;

  NetNamespace& ns_c() const { return *namespaces_[0]; }
  static std::string link_of(int host) { return host == 0 ? "to-a" : "to-b"; }
  fs::path data_dir() const { return dir_.path() / "data"; }
  fs::path markers() const { return dir_.path() / "markers"; }
  fs::path bin_dir() const { return dir_.path() / "bin"; }
  fs::path agent_dir(int i) const { return dir_.path() / ("agent" + std::to_string(i)); }
  std::string server() const { return "http://127.0.0.1:" + port_; }

  TempDir dir_;
  std::vector<std::unique_ptr<NetNamespace>> namespaces_;  // c, a, b
  std::unique_ptr<ThreadInNamespace> in_c_;
  std::array<std::string, kHosts> agent_servers_;
  std::array<std::string, kHosts> host_ids_;
  std::unique_ptr<Process> controller_;
  std::array<std::unique_ptr<Process>, kHosts> agents_;
  std::string port_;
  std::string token_;
  std::unique_ptr<campaign::InvariantObserver> observer_;
  std::set<int64_t> pids_seen_;
  std::map<std::string, int> faults_by_kind_;
  int kills_survived_ = 0;
  int operations_ = 0;
  std::string notes_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// The manifest of the one cluster the campaign drives; in-place updates run
// a hook that leaves a line "MEMBER TARGET_REVISION VERSION" per run in
// `markers`/MEMBER.
nlohmann::json campaign_manifest(const campaign::WebSpec& spec, const fs::path& markers);

}  // namespace tranche::e2e
