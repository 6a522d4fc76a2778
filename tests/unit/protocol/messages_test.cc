// The agent protocol's messages: every typed message round-trips, the wire
// stays what the previous (untyped) build wrote and read, and every
// malformed shape is an error that names its field, never an exception.

#include "protocol/messages.h"

#include <functional>
#include <limits>

#include "protocol/frames.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tranche::protocol {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// A frame of one message, decoded as the controller decodes an agent's.
Result<AgentMessage> decode_text(std::string_view text) {
  auto messages = decode_agent_frame(text);
  EXPECT_EQ(messages.size(), 1u) << text;
  return messages.at(0);
}

StartSpec sample_start() {
  StartSpec s;
  s.app = "shop";
  s.cluster = "backend/web";
  s.revision = 3;
  s.version = "1.4.2";
  s.command = {"./bin/web", "--port", "${PORT_HTTP}"};
  s.env = {{"LOG_LEVEL", "info"}, {"EMPTY", ""}};
  s.workdir = "/srv/web";
  s.ports = {"http", "admin-api"};
  s.health = HealthCheckSpec{HttpEndpoint{"http", "/healthz"}, 2, 3, 4};
  s.stats = StatsSpec{HttpEndpoint{"admin-api", "/admin/load"}};
  s.drain_hook = {"./bin/drain", "--now"};
  return s;
}

// ---- round trips -----------------------------------------------------------------

TEST(Messages, HelloRoundTrips) {
  Hello h;
  h.host_id = "web-1-ab12";
  h.host_token = "ht_x";
  h.hostname = "web-1";
  h.labels = {{"zone", "a"}};
  h.slots = 8;
  h.members = {{"shop/web/1", 3, "Running", 42}, {"shop/web/2", 3, "Exited", std::nullopt}};
  auto back = parse_hello(to_json(h));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(*back, h);
}

TEST(Messages, HelloNeedsAToken) {
  auto bad = parse_hello(json{{"type", "hello"}, {"protocol", 1}, {"hostname", "x"}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("joinToken or a hostToken"), std::string::npos);
}

TEST(Messages, WelcomeRoundTrips) {
  const Welcome w{"web-1-ab12", "ht_x", 0.5, kVersion};
  auto back = parse_welcome(to_json(w));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(*back, w);
}

TEST(Messages, HeartbeatRoundTrips) {
  Heartbeat hb{7,
               {{"m1", "Running", true, MemberStats{0.5, 3}, 10, {{"http", 8080}}},
                {"m2", "Exited", false, std::nullopt, std::nullopt, {}}}};
  auto back = decode_text(to_json(hb).dump());
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  ASSERT_TRUE(std::holds_alternative<Heartbeat>(*back));
  EXPECT_EQ(std::get<Heartbeat>(*back), hb);
}

TEST(Messages, AHeartbeatsTextIsTheSameJsonAsItsDocument) {
  Heartbeat hb{18446744073709551615u,
               {{"m1", "Running", true, MemberStats{0.1, -9223372036854775807 - 1}, 2147483647, {{"a", 1}, {"b", 65535}}},
                {"m\"2\\\n\t\x01\x1f caf\xC3\xA9", "Exited", false, MemberStats{3, std::nullopt}, std::nullopt, {}},
                {"m3", "Updating", false, MemberStats{1e-7, 0}, 1, {}},
                {"m4", "Stopping", true, std::nullopt, std::nullopt, {{"x\"y", 80}}}}};
  const std::string text = heartbeat_text(hb);
  EXPECT_EQ(json::parse(text), to_json(hb)) << text;
  auto back = decode_text(text);
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(std::get<Heartbeat>(*back), hb);
  EXPECT_EQ(heartbeat_text(Heartbeat{1, {}}), to_json(Heartbeat{1, {}}).dump());
}

TEST(Messages, AHeartbeatsTextWritesALoadThatIsNotANumberAsNull) {
  const Heartbeat hb{1, {{"m1", "Running", true, MemberStats{std::numeric_limits<double>::infinity(), 1}, 10, {}}}};
  EXPECT_EQ(json::parse(heartbeat_text(hb)), json::parse(to_json(hb).dump()));
}

TEST(Messages, ResultsRoundTripWithEachKindOfData) {
  const std::vector<CommandResult> results = {
      {"start:a/b/1", true, std::nullopt, "started", ProcessStarted{9, std::map<std::string, int>{{"http", 8080}}}},
      {"update:a/b/1:4", true, std::nullopt, "updated", ProcessStarted{10, std::nullopt}},
      {"logs:ab12", true, std::nullopt, "ok", LogOutput{"out\n", "err\n"}},
      {"stop:a/b/1", false, 137, "killed", std::monostate{}},
  };
  for (const auto& r : results) {
    auto back = decode_text(to_json(r).dump());
    ASSERT_TRUE(back.has_value()) << back.error().describe();
    ASSERT_TRUE(std::holds_alternative<CommandResult>(*back));
    EXPECT_EQ(std::get<CommandResult>(*back), r) << to_json(r).dump();
  }
}

TEST(Messages, EventsAndAcksRoundTrip) {
  for (const AgentEvent& e : {AgentEvent{"exited", "a/b/1", 137, "killed"}, AgentEvent{"resumed", "a/b/1", {}, ""}}) {
    auto back = decode_text(to_json(e).dump());
    ASSERT_TRUE(back.has_value()) << back.error().describe();
    EXPECT_EQ(std::get<AgentEvent>(*back), e);
  }
  auto ack = decode_text(to_json(Ack{"start:a/b/1"}).dump());
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(std::get<Ack>(*ack), Ack{"start:a/b/1"});
  // The variant's own to_json is the alternative's.
  EXPECT_EQ(to_json(AgentMessage(Ack{"x"})), to_json(Ack{"x"}));
}

TEST(Messages, EveryCommandRoundTrips) {
  StartSpec tcp = sample_start();
  tcp.health = HealthCheckSpec{TcpProbe{"http"}, 1, 1, 3};
  tcp.stats.reset();
  StartSpec exec = sample_start();
  exec.health = HealthCheckSpec{ExecProbe{{"./check", "-q"}}, 5, 2, 1};
  StartSpec bare = sample_start();
  bare.health.reset();
  bare.stats.reset();
  bare.drain_hook.clear();
  bare.env.clear();
  bare.ports.clear();
  const std::vector<Command> commands = {
      {"start:shop/backend/web/1", "shop/backend/web/1", sample_start()},
      {"start:shop/backend/web/2", "shop/backend/web/2", tcp},
      {"start:shop/backend/web/3", "shop/backend/web/3", exec},
      {"start:shop/backend/web/4", "shop/backend/web/4", bare},
      {"update:shop/backend/web/1:4", "shop/backend/web/1", UpdateSpec{sample_start(), {"./upgrade"}, 5000}},
      {"update:shop/backend/web/1:5", "shop/backend/web/1", UpdateSpec{bare, {}, 0}},
      {"stop:shop/backend/web/1", "shop/backend/web/1", StopSpec{10000, {"./drain"}}},
      {"stop:shop/backend/web/2", "shop/backend/web/2", StopSpec{10000, {}}},
      {"maintenance:shop/backend/web/1:1700000000000", "shop/backend/web/1", MaintenanceSpec{3000, {"./fsck"}}},
      {"maintenance:shop/backend/web/1:1700000000001", "shop/backend/web/1", MaintenanceSpec{3000, {}}},
      {"logs:ab12", "shop/backend/web/1", LogsSpec{}},
      {"logs:cd34", "shop/backend/web/1", LogsSpec{"update"}},
  };
  for (const auto& c : commands) {
    const json wire = to_json(c);
    auto back = parse_command(json::parse(wire.dump()));
    ASSERT_TRUE(back.has_value()) << wire.dump() << ": " << back.error().describe();
    EXPECT_EQ(back->id, c.id);
    EXPECT_EQ(back->member, c.member);
    EXPECT_EQ(back->type(), c.type());
    EXPECT_EQ(back->spec, c.spec) << wire.dump();
    EXPECT_EQ(to_json(*back).dump(), wire.dump());
    EXPECT_EQ(command_text(c.id, c.member, spec_text(c.spec)), wire.dump()) << "joined from the spec's text";
  }
  EXPECT_EQ(commands[0].type(), "start");
  EXPECT_EQ(commands[4].type(), "update");
  EXPECT_EQ(commands[6].type(), "stop");
  EXPECT_EQ(commands[8].type(), "maintenance");
  EXPECT_EQ(commands[10].type(), "logs");
  EXPECT_EQ(commands[6].header().type, "stop");
}

// The join escapes ids and members as the document does, whatever they hold.
TEST(Messages, ACommandJoinedFromItsSpecsTextIsTheDocumentsText) {
  const SpecText maintenance = spec_text(MaintenanceSpec{3000, {"./fsck", "--\"all\""}});
  EXPECT_EQ(maintenance.type, "maintenance");
  for (const std::string odd : {"", "quote\"back\\slash", "tab\tnew\nline\x01", "caf\xc3\xa9 \xe2\x9c\x93", "/"}) {
    const Command c{"maintenance:" + odd, odd, MaintenanceSpec{3000, {"./fsck", "--\"all\""}}};
    EXPECT_EQ(command_text(c.id, c.member, maintenance), to_json(c).dump()) << odd;
  }
}

// ---- the previous build's wire -----------------------------------------------------

// The spec of a start command exactly as the previous controller built it
// (Fleet::start_spec before the protocol was typed), for an http check, a
// stats endpoint and a drain hook.
json previous_start_spec() {
  json health = {{"http", {{"port", "http"}, {"path", "/healthz"}}}};
  health["intervalSeconds"] = 2;
  health["timeoutSeconds"] = 3;
  health["unhealthyThreshold"] = 4;
  json stats = json{{"http", {{"port", "admin-api"}, {"path", "/admin/load"}}}};
  return {{"app", "shop"},
          {"cluster", "backend/web"},
          {"revision", int64_t{3}},
          {"version", "1.4.2"},
          {"command", std::vector<std::string>{"./bin/web", "--port", "${PORT_HTTP}"}},
          {"env", std::map<std::string, std::string>{{"LOG_LEVEL", "info"}, {"EMPTY", ""}}},
          {"workdir", "/srv/web"},
          {"ports", std::vector<std::string>{"http", "admin-api"}},
          {"health", health},
          {"stats", stats},
          {"hooks", {{"drain", std::vector<std::string>{"./bin/drain", "--now"}}}}};
}

json previous_command(const std::string& id, const std::string& type, const std::string& member, const json& spec) {
  return {{"type", "command"}, {"id", id}, {"command", type}, {"member", member}, {"spec", spec}};
}

TEST(Messages, ThePreviousControllersCommandsParseAndSerialiseToTheSameBytes) {
  json tcp = previous_start_spec();
  tcp["health"] = {
      {"tcp", {{"port", "http"}}}, {"intervalSeconds", 1}, {"timeoutSeconds", 1}, {"unhealthyThreshold", 3}};
  tcp["stats"] = nullptr;
  tcp["hooks"] = {{"drain", std::vector<std::string>{}}};
  json exec = previous_start_spec();
  exec["health"] = {
      {"exec", {"./check", "-q"}}, {"intervalSeconds", 5}, {"timeoutSeconds", 2}, {"unhealthyThreshold", 1}};
  json none = previous_start_spec();
  none["health"] = nullptr;
  json update = previous_start_spec();
  update["hook"] = std::vector<std::string>{"./upgrade"};
  update["graceMs"] = int64_t{10000};
  json update_without_hook = previous_start_spec();
  update_without_hook["hook"] = std::vector<std::string>{};
  update_without_hook["graceMs"] = int64_t{10000};
  json stop_with_drain = {{"graceMs", int64_t{10000}}};
  stop_with_drain["drainHook"] = std::vector<std::string>{"./drain"};
  const std::vector<json> wire = {
      previous_command("start:shop/backend/web/1", "start", "shop/backend/web/1", previous_start_spec()),
      previous_command("start:shop/backend/web/2", "start", "shop/backend/web/2", tcp),
      previous_command("start:shop/backend/web/3", "start", "shop/backend/web/3", exec),
      previous_command("start:shop/backend/web/4", "start", "shop/backend/web/4", none),
      previous_command("update:shop/backend/web/1:4", "update", "shop/backend/web/1", update),
      previous_command("update:shop/backend/web/1:5", "update", "shop/backend/web/1", update_without_hook),
      previous_command("stop:shop/backend/web/1", "stop", "shop/backend/web/1", {{"graceMs", int64_t{10000}}}),
      previous_command("stop:shop/backend/web/2", "stop", "shop/backend/web/2", stop_with_drain),
      previous_command("maintenance:shop/backend/web/1:17", "maintenance", "shop/backend/web/1",
                       {{"graceMs", int64_t{10000}}, {"hook", std::vector<std::string>{"./fsck"}}}),
      previous_command("maintenance:shop/backend/web/1:18", "maintenance", "shop/backend/web/1",
                       {{"graceMs", int64_t{10000}}, {"hook", std::vector<std::string>{}}}),
      previous_command("logs:ab12", "logs", "shop/backend/web/1", json::object()),
      previous_command("logs:cd34", "logs", "shop/backend/web/1", json{{"hook", "maintenance"}}),
  };
  for (const auto& j : wire) {
    const std::string text = j.dump();
    auto typed = parse_command(json::parse(text));
    ASSERT_TRUE(typed.has_value()) << text << ": " << typed.error().describe();
    EXPECT_EQ(to_json(*typed).dump(), text);
  }
  // The typed form holds what the previous agent read.
  auto start = parse_command(wire[0]);
  ASSERT_TRUE(start.has_value());
  const auto& s = std::get<StartSpec>(start->spec);
  EXPECT_EQ(s, sample_start());
  auto up = parse_command(wire[4]);
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(std::get<UpdateSpec>(up->spec), (UpdateSpec{sample_start(), {"./upgrade"}, 10000}));
  auto stop = parse_command(wire[7]);
  ASSERT_TRUE(stop.has_value());
  EXPECT_EQ(std::get<StopSpec>(stop->spec), (StopSpec{10000, {"./drain"}}));
  auto logs = parse_command(wire[11]);
  ASSERT_TRUE(logs.has_value());
  EXPECT_EQ(std::get<LogsSpec>(logs->spec).hook, "maintenance");
}

TEST(Messages, ThePreviousAgentsMessagesDecode) {
  // As the previous agent built them (pid_t pids, map<string, int> ports).
  const int pid = 4242;
  const std::map<std::string, int> ports = {{"http", 8080}};
  const json started = {{"type", "result"},
                        {"id", "start:a/w/1"},
                        {"ok", true},
                        {"message", "started"},
                        {"data", json{{"pid", pid}, {"ports", ports}}}};
  const json logs = {{"type", "result"},
                     {"id", "logs:ab"},
                     {"ok", true},
                     {"message", "ok"},
                     {"data", json{{"stdout", "hello\n"}, {"stderr", ""}}}};
  json failed = {{"type", "result"},
                 {"id", "update:a/w/1:2"},
                 {"ok", false},
                 {"message", "update hook failed (exit 3)"},
                 {"data", nullptr}};
  failed["exitCode"] = 3;
  for (const json& j : {started, logs, failed}) {
    auto m = decode_text(j.dump());
    ASSERT_TRUE(m.has_value()) << j.dump() << ": " << m.error().describe();
    EXPECT_EQ(to_json(*m).dump(), j.dump()) << "the same bytes back";
  }
  auto r = std::get<CommandResult>(*decode_text(started.dump()));
  ASSERT_NE(r.process(), nullptr);
  EXPECT_EQ(r.process()->pid, pid);
  EXPECT_EQ(r.process()->ports, ports);
  auto l = std::get<CommandResult>(*decode_text(logs.dump()));
  ASSERT_NE(l.logs(), nullptr);
  EXPECT_EQ(l.logs()->out, "hello\n");
  // What an agent of a newer build might add is ignored, not refused.
  auto newer = decode_text(R"({"type":"result","id":"x:1","ok":true,"data":{"checksum":"ab"},"extra":1})");
  ASSERT_TRUE(newer.has_value()) << newer.error().describe();
  EXPECT_TRUE(std::holds_alternative<std::monostate>(std::get<CommandResult>(*newer).data));
}

// ---- malformed agent messages ------------------------------------------------------

struct Malformed {
  const char* text;
  const char* field;
};

void expect_rejected(const std::vector<Malformed>& cases) {
  for (const auto& c : cases) {
    Result<AgentMessage> m;
    EXPECT_NO_THROW(m = decode_text(c.text)) << c.text;
    ASSERT_FALSE(m.has_value()) << c.text << " was accepted";
    EXPECT_EQ(m.error().field, c.field) << c.text << ": " << m.error().describe();
    EXPECT_EQ(m.error().code, ErrorCode::kInvalid);
    if (*c.field != '\0') {
      EXPECT_THAT(m.error().describe(), HasSubstr(c.field));
    }
  }
}

TEST(Messages, FramesThatAreNoMessageAreRejected) {
  expect_rejected({
      {"not json", ""},
      {"", ""},
      {"[1,2]", ""},
      {"5", ""},
      {"\"heartbeat\"", ""},
      {"null", ""},
      {"{\"type\":\"result\"", ""},  // truncated
      {"{}", "type"},
      {R"({"type": 3})", "type"},
      {R"({"type": null})", "type"},
      {R"({"type": "bogus"})", "type"},
      {R"({"type": "command", "id": "x"})", "type"},  // the controller's, not an agent's
      {R"({"type": "hello", "protocol": 1})", "type"},
  });
  auto unknown = decode_text(R"({"type": "bogus"})");
  EXPECT_THAT(unknown.error().message, HasSubstr("bogus"));
}

TEST(Messages, MalformedHeartbeatsNameTheField) {
  expect_rejected({
      {R"({"type":"heartbeat"})", "heartbeat.seq"},
      {R"({"type":"heartbeat","seq":"1"})", "heartbeat.seq"},
      {R"({"type":"heartbeat","seq":-1})", "heartbeat.seq"},
      {R"({"type":"heartbeat","seq":1.5})", "heartbeat.seq"},
      {R"({"type":"heartbeat","seq":1,"members":{}})", "heartbeat.members"},
      {R"({"type":"heartbeat","seq":1,"members":[5]})", "heartbeat.members[0]"},
      {R"({"type":"heartbeat","seq":1,"members":[{"state":"Running","healthy":true}]})", "heartbeat.members[0].id"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","healthy":true}]})", "heartbeat.members[0].state"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":7,"healthy":true}]})", "heartbeat.members[0].state"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running"}]})", "heartbeat.members[0].healthy"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":"yes"}]})",
       "heartbeat.members[0].healthy"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true},
           {"id":"b","state":"Running","healthy":true,"pid":"12"}]})",
       "heartbeat.members[1].pid"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"pid":-3}]})",
       "heartbeat.members[0].pid"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"pid":2147483648}]})",
       "heartbeat.members[0].pid"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"pid":1e3}]})",
       "heartbeat.members[0].pid"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"ports":[8080]}]})",
       "heartbeat.members[0].ports"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"ports":{"http":"80"}}]})",
       "heartbeat.members[0].ports.http"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"ports":{"http":70000}}]})",
       "heartbeat.members[0].ports.http"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"ports":{"http":0}}]})",
       "heartbeat.members[0].ports.http"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"stats":3}]})",
       "heartbeat.members[0].stats"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"stats":{}}]})",
       "heartbeat.members[0].stats.load"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,"stats":{"load":"high"}}]})",
       "heartbeat.members[0].stats.load"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,
           "stats":{"load":0.5,"requestsInFlight":"3"}}]})",
       "heartbeat.members[0].stats.requestsInFlight"},
      {R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,
           "stats":{"load":0.5,"requestsInFlight":1e30}}]})",
       "heartbeat.members[0].stats.requestsInFlight"},
  });
}

TEST(Messages, MalformedResultsNameTheField) {
  expect_rejected({
      {R"({"type":"result","ok":true})", "result.id"},
      {R"({"type":"result","id":7,"ok":true})", "result.id"},
      {R"({"type":"result","id":"","ok":true})", "result.id"},
      {R"({"type":"result","id":"start:a/w/1"})", "result.ok"},
      {R"({"type":"result","id":"start:a/w/1","ok":"true"})", "result.ok"},
      {R"({"type":"result","id":"start:a/w/1","ok":false,"exitCode":"3"})", "result.exitCode"},
      {R"({"type":"result","id":"start:a/w/1","ok":false,"exitCode":4294967296})", "result.exitCode"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"message":5})", "result.message"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":"pid 5"})", "result.data"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":[5]})", "result.data"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":"12"}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":null}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":0}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":-12}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12.5}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":18446744073709551615}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":1e300}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"ports":{"http":8080}}})", "result.data.pid"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12,"ports":[8080]}})", "result.data.ports"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12,"ports":"http=8080"}})", "result.data.ports"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12,"ports":{"http":"8080"}}})",
       "result.data.ports.http"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12,"ports":{"http":-1}}})",
       "result.data.ports.http"},
      {R"({"type":"result","id":"start:a/w/1","ok":true,"data":{"pid":12,"ports":{"http":9223372036854775808}}})",
       "result.data.ports.http"},
      {R"({"type":"result","id":"logs:ab","ok":true,"data":{"stdout":5,"stderr":""}})", "result.data.stdout"},
      {R"({"type":"result","id":"logs:ab","ok":true,"data":{"stdout":"","stderr":["x"]}})", "result.data.stderr"},
  });
}

TEST(Messages, MalformedEventsAndAcksNameTheField) {
  expect_rejected({
      {R"({"type":"event","member":"a/w/1"})", "event.event"},
      {R"({"type":"event","event":["exited"],"member":"a/w/1"})", "event.event"},
      {R"({"type":"event","event":"exited"})", "event.member"},
      {R"({"type":"event","event":"exited","member":"a/w/1","exitCode":"1"})", "event.exitCode"},
      {R"({"type":"event","event":"exited","member":"a/w/1","exitCode":-2147483649})", "event.exitCode"},
      {R"({"type":"event","event":"exited","member":"a/w/1","message":{}})", "event.message"},
      {R"({"type":"ack"})", "ack.id"},
      {R"({"type":"ack","id":3})", "ack.id"},
  });
}

TEST(Messages, OptionalFieldsMayBeNullOrAbsent) {
  for (const char* text : {
           R"({"type":"heartbeat","seq":0})",
           R"({"type":"heartbeat","seq":1,"members":null})",
           R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Exited","healthy":false,"pid":null,
               "ports":null,"stats":null}]})",
           R"({"type":"result","id":"stop:a/w/1","ok":true})",
           R"({"type":"result","id":"stop:a/w/1","ok":true,"data":null,"exitCode":null,"message":null})",
           R"({"type":"event","event":"healthy","member":"a/w/1"})",
           // What a member's stats endpoint reports goes through as it is
           // (the agent drops only what is not a finite number).
           R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":true,
               "stats":{"load":-0.5,"requestsInFlight":-1}}]})",
       }) {
    auto m = decode_text(text);
    EXPECT_TRUE(m.has_value()) << text << ": " << m.error().describe();
  }
}

// ---- malformed commands ------------------------------------------------------------

json start_command(const std::function<void(json& spec)>& change) {
  json spec = previous_start_spec();
  change(spec);
  return previous_command("start:a/w/1", "start", "a/w/1", spec);
}

TEST(Messages, MalformedCommandsNameTheField) {
  struct Case {
    json command;
    const char* field;
  };
  auto update = [](const std::function<void(json&)>& change) {
    json spec = previous_start_spec();
    spec["hook"] = json::array();
    spec["graceMs"] = 10000;
    change(spec);
    return previous_command("update:a/w/1:2", "update", "a/w/1", spec);
  };
  const std::vector<Case> cases = {
      {json::array(), "command"},
      {json{{"type", "command"}, {"command", "start"}, {"member", "a/w/1"}}, "command.id"},
      {json{{"type", "command"}, {"id", 5}, {"command", "start"}, {"member", "a/w/1"}}, "command.id"},
      {json{{"type", "command"}, {"id", ""}, {"command", "start"}, {"member", "a/w/1"}}, "command.id"},
      {json{{"type", "command"}, {"id", "x"}, {"member", "a/w/1"}}, "command.command"},
      {json{{"type", "command"}, {"id", "x"}, {"command", "start"}}, "command.member"},
      {previous_command("replace:a/w/1", "replace", "a/w/1", json::object()), "command.command"},
      {previous_command("start:a/w/1", "start", "a/w/1", json::array()), "command.spec"},
      {previous_command("start:a/w/1", "start", "a/w/1", "spec"), "command.spec"},
      {previous_command("start:a/w/1", "start", "a/w/1", nullptr), "command.spec.app"},
      {start_command([](json& s) { s.erase("app"); }), "command.spec.app"},
      {start_command([](json& s) { s["app"] = 3; }), "command.spec.app"},
      {start_command([](json& s) { s.erase("cluster"); }), "command.spec.cluster"},
      {start_command([](json& s) { s.erase("revision"); }), "command.spec.revision"},
      {start_command([](json& s) { s["revision"] = "3"; }), "command.spec.revision"},
      {start_command([](json& s) { s["revision"] = 0; }), "command.spec.revision"},
      {start_command([](json& s) { s["revision"] = -3; }), "command.spec.revision"},
      {start_command([](json& s) { s["revision"] = 3.5; }), "command.spec.revision"},
      {start_command([](json& s) { s["revision"] = 18446744073709551615ULL; }), "command.spec.revision"},
      {start_command([](json& s) { s.erase("version"); }), "command.spec.version"},
      {start_command([](json& s) { s.erase("command"); }), "command.spec.command"},
      {start_command([](json& s) { s["command"] = "./web"; }), "command.spec.command"},
      {start_command([](json& s) { s["command"] = json::array(); }), "command.spec.command"},
      {start_command([](json& s) {
         s["command"] = {"./web", 8080};
       }),
       "command.spec.command[1]"},
      {start_command([](json& s) { s["env"] = json::array(); }), "command.spec.env"},
      {start_command([](json& s) {
         s["env"] = {{"PORT", 8080}};
       }),
       "command.spec.env.PORT"},
      {start_command([](json& s) { s["workdir"] = 1; }), "command.spec.workdir"},
      {start_command([](json& s) {
         s["ports"] = {{"http", 8080}};
       }),
       "command.spec.ports"},
      {start_command([](json& s) {
         s["ports"] = {"http", 8080};
       }),
       "command.spec.ports[1]"},
      {start_command([](json& s) { s["health"] = "http"; }), "command.spec.health"},
      {start_command([](json& s) {
         s["health"] = {{"intervalSeconds", 1}};
       }),
       "command.spec.health"},
      {start_command([](json& s) {
         s["health"]["tcp"] = {{"port", "http"}};
       }),
       "command.spec.health"},
      {start_command([](json& s) { s["health"]["http"].erase("port"); }), "command.spec.health.http.port"},
      {start_command([](json& s) { s["health"]["http"]["port"] = 8080; }), "command.spec.health.http.port"},
      {start_command([](json& s) { s["health"]["http"]["path"] = 1; }), "command.spec.health.http.path"},
      {start_command([](json& s) {
         s["health"] = {{"tcp", "http"}};
       }),
       "command.spec.health.tcp"},
      {start_command([](json& s) {
         s["health"] = {{"exec", json::array()}};
       }),
       "command.spec.health.exec"},
      {start_command([](json& s) { s["health"]["intervalSeconds"] = 0; }), "command.spec.health.intervalSeconds"},
      {start_command([](json& s) { s["health"]["timeoutSeconds"] = "1"; }), "command.spec.health.timeoutSeconds"},
      {start_command([](json& s) { s["health"]["unhealthyThreshold"] = 4294967296LL; }),
       "command.spec.health.unhealthyThreshold"},
      {start_command([](json& s) {
         s["stats"] = {{"tcp", {{"port", "http"}}}};
       }),
       "command.spec.stats.http"},
      {start_command([](json& s) { s["stats"]["http"] = "x"; }), "command.spec.stats.http"},
      {start_command([](json& s) {
         s["hooks"] = {{"drain", "./drain"}};
       }),
       "command.spec.hooks.drain"},
      {start_command([](json& s) { s["hooks"] = "drain"; }), "command.spec.hooks"},
      {update([](json& s) { s["hook"] = "./upgrade"; }), "command.spec.hook"},
      {update([](json& s) { s["graceMs"] = -1; }), "command.spec.graceMs"},
      {update([](json& s) { s["graceMs"] = "10s"; }), "command.spec.graceMs"},
      {update([](json& s) { s["graceMs"] = 1e12; }), "command.spec.graceMs"},
      {update([](json& s) { s["graceMs"] = 4294967296LL; }), "command.spec.graceMs"},
      {update([](json& s) { s.erase("version"); }), "command.spec.version"},
      {previous_command("stop:a/w/1", "stop", "a/w/1", {{"graceMs", "10"}}), "command.spec.graceMs"},
      {previous_command("stop:a/w/1", "stop", "a/w/1", {{"graceMs", 10}, {"drainHook", "./drain"}}),
       "command.spec.drainHook"},
      {previous_command("maintenance:a/w/1:1", "maintenance", "a/w/1", {{"graceMs", 10}, {"hook", json::array({1})}}),
       "command.spec.hook[0]"},
      {previous_command("logs:ab", "logs", "a/w/1", {{"hook", "drain"}}), "command.spec.hook"},
      {previous_command("logs:ab", "logs", "a/w/1", {{"hook", 1}}), "command.spec.hook"},
  };
  for (const auto& c : cases) {
    Result<Command> parsed;
    EXPECT_NO_THROW(parsed = parse_command(c.command)) << c.command.dump();
    ASSERT_FALSE(parsed.has_value()) << c.command.dump() << " was accepted";
    EXPECT_EQ(parsed.error().field, c.field) << c.command.dump() << ": " << parsed.error().describe();
  }
}

TEST(Messages, AnUnreadableSpecStillHasAHeaderToAnswer) {
  const json bad = start_command([](json& s) { s["revision"] = "three"; });
  ASSERT_FALSE(parse_command(bad).has_value());
  auto header = parse_command_header(bad);
  ASSERT_TRUE(header.has_value()) << header.error().describe();
  EXPECT_EQ(header->id, "start:a/w/1");
  EXPECT_EQ(header->type, "start");
  EXPECT_EQ(header->member, "a/w/1");
  auto unknown = parse_command_header(previous_command("replace:a/w/1", "replace", "a/w/1", json::object()));
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->type, "replace");
  EXPECT_FALSE(parse_command_header(json{{"type", "command"}, {"command", "start"}}).has_value());
}

TEST(Messages, SpecDefaultsAreThoseThePreviousAgentAssumed) {
  // A stop or logs without a spec, a start with only what is required.
  auto stop = parse_command(json{{"type", "command"}, {"id", "stop:a/w/1"}, {"command", "stop"}, {"member", "a/w/1"}});
  ASSERT_TRUE(stop.has_value()) << stop.error().describe();
  EXPECT_EQ(std::get<StopSpec>(stop->spec), (StopSpec{10000, {}}));
  auto start = parse_command(previous_command("start:a/w/1", "start", "a/w/1",
                                              {{"app", "a"},
                                               {"cluster", "w"},
                                               {"revision", 1},
                                               {"version", "1"},
                                               {"command", json::array({"./w"})},
                                               {"health", {{"http", {{"port", "http"}}}}}}));
  ASSERT_TRUE(start.has_value()) << start.error().describe();
  const auto& s = std::get<StartSpec>(start->spec);
  ASSERT_TRUE(s.health.has_value());
  EXPECT_EQ(std::get<HttpEndpoint>(s.health->probe).path, "/");
  EXPECT_EQ(s.health->interval_seconds, 1);
  EXPECT_EQ(s.health->timeout_seconds, 1);
  EXPECT_EQ(s.health->unhealthy_threshold, 3);
  EXPECT_FALSE(s.stats.has_value());
  EXPECT_TRUE(s.drain_hook.empty());
  // A logs hook given as "" or null means the member's own output, as before.
  auto logs = parse_command(previous_command("logs:ab", "logs", "a/w/1", {{"hook", ""}}));
  ASSERT_TRUE(logs.has_value());
  EXPECT_FALSE(std::get<LogsSpec>(logs->spec).hook.has_value());
}

// ---- the connection ------------------------------------------------------------------

TEST(Messages, ErrorsNameTheField) {
  auto hb = parse_heartbeat(
      json::parse(R"({"type":"heartbeat","seq":1,"members":[{"id":"a","state":"Running","healthy":"yes"}]})"));
  ASSERT_FALSE(hb.has_value());
  EXPECT_EQ(hb.error().field, "heartbeat.members[0].healthy");
  auto cmd = parse_command(json{{"type", "command"}, {"id", 5}});
  ASSERT_FALSE(cmd.has_value());
  EXPECT_EQ(cmd.error().field, "command.id");
  EXPECT_FALSE(parse_envelope("[1,2]").has_value());
  EXPECT_FALSE(parse_envelope("{\"type\": 3}").has_value());
  EXPECT_FALSE(parse_envelope("not json").has_value());
  auto hello = parse_hello(json{{"protocol", "1"}, {"hostname", "x"}, {"joinToken", "t"}});
  ASSERT_FALSE(hello.has_value());
  EXPECT_EQ(hello.error().field, "hello.protocol");
  auto slots = parse_hello(json{{"protocol", 1}, {"hostname", "x"}, {"joinToken", "t"}, {"slots", 0}});
  ASSERT_FALSE(slots.has_value());
  EXPECT_EQ(slots.error().field, "hello.slots");
  auto pid = parse_hello(json{{"protocol", 1},
                              {"hostname", "x"},
                              {"hostToken", "t"},
                              {"members", {{{"id", "a"}, {"state", "Running"}, {"pid", "12"}}}}});
  ASSERT_FALSE(pid.has_value());
  EXPECT_EQ(pid.error().field, "hello.members[0].pid");
}

TEST(Messages, HelloSaysItsProtocolRange) {
  Hello h;
  h.hostname = "x";
  h.join_token = "t";
  h.protocol = 2;
  h.oldest_protocol = 1;
  EXPECT_EQ(to_json(h)["oldestProtocol"], 1);
  auto back = parse_hello(to_json(h));
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_EQ(*back, h);

  // One version: written as protocol 1 agents wrote it; read back as such.
  h.oldest_protocol = 2;
  EXPECT_FALSE(to_json(h).contains("oldestProtocol"));
  auto one = parse_hello(json{{"protocol", 1}, {"hostname", "x"}, {"joinToken", "t"}});
  ASSERT_TRUE(one.has_value()) << one.error().describe();
  EXPECT_EQ(one->oldest_protocol, 1);

  auto inverted = parse_hello(json{{"protocol", 1}, {"oldestProtocol", 2}, {"hostname", "x"}, {"joinToken", "t"}});
  ASSERT_FALSE(inverted.has_value());
  EXPECT_EQ(inverted.error().field, "hello.oldestProtocol");
  auto text = parse_hello(json{{"protocol", 2}, {"oldestProtocol", "1"}, {"hostname", "x"}, {"joinToken", "t"}});
  ASSERT_FALSE(text.has_value());
  EXPECT_EQ(text.error().field, "hello.oldestProtocol");
}

}  // namespace
}  // namespace tranche::protocol
