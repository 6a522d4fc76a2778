#include "api/metrics.h"

#include <gtest/gtest.h>

namespace tranche::api {
namespace {

using namespace std::chrono_literals;

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.record_request("GET", "/api/v1/applications/{app}", 200, 3ms);
  m.record_request("GET", "/api/v1/applications/{app}", 200, 30ms);
  m.record_request("GET", "/api/v1/applications/{app}", 404, 1ms);
  m.record_commit(2ms, true);
  m.record_commit(2ms, false);
  m.record_events_published(3);
  m.record_pass(40ms);
  m.record_pass(300ms);
  const std::string text = m.render();
  EXPECT_NE(
      text.find("tranche_http_requests_total{method=\"GET\",route=\"/api/v1/applications/{app}\",code=\"200\"} 2"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("code=\"404\"} 1"), std::string::npos);
  EXPECT_NE(text.find("tranche_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/applications/"
                      "{app}\",le=\"0.005\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tranche_store_commit_duration_seconds_count 2"), std::string::npos);
  EXPECT_NE(text.find("tranche_store_commit_failures_total 1"), std::string::npos);
  EXPECT_NE(text.find("tranche_events_published_total 3"), std::string::npos);
  EXPECT_NE(text.find("tranche_fleet_pass_duration_seconds_bucket{le=\"0.05\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tranche_fleet_pass_duration_seconds_bucket{le=\"0.5\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tranche_fleet_pass_duration_seconds_count 2\n"), std::string::npos) << text;
}

TEST(Metrics, MethodLabelIsOneOfAFixedSet) {
  for (const char* known : {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}) {
    EXPECT_EQ(method_label(known), known);
  }
  for (const char* unknown : {"get", "PROPFIND", "XYZZY1", "BREW", ""}) {
    EXPECT_EQ(method_label(unknown), "other") << unknown;
  }
}

// Each request with a made-up method used to add a series of its own.
TEST(Metrics, MadeUpMethodsShareOneSeries) {
  Metrics m;
  for (int i = 0; i < 100; ++i) {
    m.record_request("M" + std::to_string(i), "unmatched", 405, 1ms);
  }
  m.record_request("DELETE", "unmatched", 405, 1ms);
  const std::string text = m.render();
  EXPECT_NE(text.find("tranche_http_requests_total{method=\"other\",route=\"unmatched\",code=\"405\"} 100\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tranche_http_requests_total{method=\"DELETE\",route=\"unmatched\",code=\"405\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("method=\"M1"), std::string::npos);
  EXPECT_NE(text.find("tranche_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\"} 100\n"),
            std::string::npos)
      << text;
}

TEST(Metrics, RendersCountersKeptElsewhereAsTheyAreNow) {
  Metrics m;
  uint64_t rejected = 0;
  m.add_counter("tranche_agent_messages_rejected_total", "Agent messages rejected.", [&] { return rejected; });
  EXPECT_NE(m.render().find("# TYPE tranche_agent_messages_rejected_total counter\n"
                            "tranche_agent_messages_rejected_total 0\n"),
            std::string::npos)
      << m.render();
  rejected = 2;
  EXPECT_NE(m.render().find("tranche_agent_messages_rejected_total 2\n"), std::string::npos) << m.render();
  m.add_counter("tranche_agent_messages_rejected_total", "Replaced.", [] { return uint64_t{7}; });
  const std::string text = m.render();
  EXPECT_NE(text.find("tranche_agent_messages_rejected_total 7\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("tranche_agent_messages_rejected_total 2"), std::string::npos) << "one series per name";
}

TEST(Metrics, RendersHistogramsKeptElsewhere) {
  Metrics m;
  Histogram handled;
  m.add_histogram("tranche_heartbeat_handling_seconds", "Heartbeats handled.", [&] { return handled; });
  handled.observe(0.0001);
  handled.observe(0.2);
  handled.observe(10);
  const std::string out = m.render();
  EXPECT_NE(out.find("# HELP tranche_heartbeat_handling_seconds Heartbeats handled.\n"
                     "# TYPE tranche_heartbeat_handling_seconds histogram\n"
                     "tranche_heartbeat_handling_seconds_bucket{le=\"0.0005\"} 1\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("tranche_heartbeat_handling_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tranche_heartbeat_handling_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tranche_heartbeat_handling_seconds_count 3\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace tranche::api
