// HAProxy's runtime API words, checked on answers recorded from HAProxy 2.6.12
// (Debian 12): show_stat_sample.txt is the answer to "show stat -1 6 -1" with
// servers in each state and one open session.

#include "lb/haproxy_protocol.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace tranche::lb::haproxy {
namespace {

std::string sample() {
  std::ifstream in(std::string(TRANCHE_SOURCE_DIR) + "/tests/unit/lb/show_stat_sample.txt", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr std::string_view kShowStat = "show stat -1 6 -1";

// A short dump in HAProxy's shape: header, rows with a trailing comma, and the
// closing empty line.
std::string dump(std::initializer_list<std::string_view> rows) {
  std::string out = "# pxname,svname,scur,status,addr,\n";
  for (std::string_view row : rows) {
    out += std::string(row) + "\n";
  }
  return out + "\n";
}

TEST(HaproxyIdentifier, AcceptsHaproxysCharacters) {
  for (const char* good : {"web", "shop_web_3", "be-1.a:b", "WEB"}) {
    EXPECT_TRUE(check_identifier(good, "server").has_value()) << good;
  }
}

TEST(HaproxyIdentifier, RejectsWhatWouldChangeTheCommandLine) {
  for (const char* bad : {"", "a b", "a;show info", "a\nshow info", "a/b", "a#1", "a\"b"}) {
    const auto ok = check_identifier(bad, "backend");
    ASSERT_FALSE(ok.has_value()) << bad;
    EXPECT_EQ(ok.error().code, ErrorCode::kInvalid);
    EXPECT_NE(ok.error().message.find("backend"), std::string::npos);
  }
}

TEST(HaproxyAnswer, AddServerSucceedsWithRegisteredOrNothing) {
  EXPECT_TRUE(check_answer(Reply::kAddServer, "add server web/a 127.0.0.1:1", "New server registered.\n\n"));
  EXPECT_TRUE(check_answer(Reply::kAddServer, "add server web/a 127.0.0.1:1", ""));
  EXPECT_TRUE(check_answer(Reply::kAddServer, "add server web/a 127.0.0.1:1", "\n"));
}

TEST(HaproxyAnswer, AddServerErrorsCarryCommandAndAnswer) {
  for (const char* answer : {"No such backend.\n", "Already exists a server with the same name in backend.\n\n",
                             "Backend must use a dynamic load balancing to support dynamic servers.\n",
                             "Permission denied\n", "New server registered. Or not.\n"}) {
    const auto ok = check_answer(Reply::kAddServer, "add server web/a 127.0.0.1:1", answer);
    ASSERT_FALSE(ok.has_value()) << answer;
    EXPECT_EQ(ok.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(ok.error().message.find("'add server web/a 127.0.0.1:1'"), std::string::npos) << ok.error().message;
    EXPECT_NE(ok.error().message.find(brief(answer)), std::string::npos) << ok.error().message;
  }
}

TEST(HaproxyAnswer, SilentCommandsSucceedOnlyWithNothing) {
  EXPECT_TRUE(check_answer(Reply::kSilent, "enable server web/a", "\n"));
  EXPECT_TRUE(check_answer(Reply::kSilent, "set server web/a state drain", ""));
  const auto ok = check_answer(Reply::kSilent, "enable health web/a",
                               "Health check was not configured on this server, cannot enable.\n\n");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().message,
            "HAProxy answered 'enable health web/a' with 'Health check was not configured on this server, cannot "
            "enable.'");
  EXPECT_FALSE(check_answer(Reply::kSilent, "set server web/zz state drain", "No such server.\n\n"));
}

TEST(HaproxyAnswer, DeleteServerSucceedsOnlyWithDeleted) {
  EXPECT_TRUE(check_answer(Reply::kDeleteServer, "del server web/a", "Server deleted.\n"));
  EXPECT_FALSE(check_answer(Reply::kDeleteServer, "del server web/a", ""));
  const auto ok = check_answer(Reply::kDeleteServer, "del server web/a", "No such server.\n");
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().message, "HAProxy answered 'del server web/a' with 'No such server.'");
  EXPECT_EQ(check_answer(Reply::kDeleteServer, "del server web/a", "").error().message,
            "HAProxy answered 'del server web/a' with nothing");
}

TEST(HaproxyAnswer, BriefKeepsTheFirstLine) {
  EXPECT_EQ(brief("No such server.\n\n"), "No such server.");
  EXPECT_EQ(brief("Unknown command, but maybe one of the following ones is a better match:\n  help\n  quit\n\n"),
            "Unknown command, but maybe one of the following ones is a better match: (...)");
  EXPECT_EQ(brief("\n"), "");
}

TEST(HaproxyStatus, MapsEveryWordOfHaproxy26) {
  const std::pair<const char*, ServerState> cases[] = {
      {"UP", ServerState::kUp},
      {"UP 1/3", ServerState::kUp},
      {"no check", ServerState::kUp},
      {"DOWN", ServerState::kDown},
      {"DOWN 1/2", ServerState::kDown},
      {"DOWN (agent)", ServerState::kDown},
      {"DRAIN", ServerState::kDrain},
      {"DRAIN 1/3", ServerState::kDrain},
      {"DRAIN (agent)", ServerState::kDrain},
      {"NOLB", ServerState::kDrain},
      {"NOLB 1/3", ServerState::kDrain},
      {"MAINT", ServerState::kMaintenance},
      {"MAINT (via web/a)", ServerState::kMaintenance},
      {"MAINT (resolution)", ServerState::kMaintenance},
  };
  for (const auto& [status, state] : cases) {
    EXPECT_EQ(parse_server_status(status), state) << status;
  }
  for (const char* unknown : {"", "UPPER", "up", "DRAINED", "OPEN", "MAINTENANCE"}) {
    EXPECT_EQ(parse_server_status(unknown), std::nullopt) << unknown;
  }
}

TEST(HaproxyCsv, SplitsPlainAndQuotedFields) {
  EXPECT_EQ(split_csv_line("web,a,0,"), (std::vector<std::string>{"web", "a", "0", ""}));
  EXPECT_EQ(split_csv_line("a,\"b,c\",\"say \"\"hi\"\"\",d"),
            (std::vector<std::string>{"a", "b,c", "say \"hi\"", "d"}));
  EXPECT_EQ(split_csv_line(""), (std::vector<std::string>{""}));
  EXPECT_EQ(split_csv_line("a,\"b"), std::nullopt);
}

TEST(HaproxyShowStat, ReadsTheRecordedSample) {
  const auto servers = parse_show_stat(kShowStat, sample(), "web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  ASSERT_EQ(servers->size(), 4u);
  const auto& s = *servers;
  EXPECT_EQ(s[0].name, "shop_web_1");
  EXPECT_EQ(s[0].state, ServerState::kUp);
  EXPECT_EQ(s[0].status, "no check");
  EXPECT_EQ(s[0].address, "127.0.0.1:18484");
  EXPECT_EQ(s[0].sessions, 1);
  EXPECT_EQ(s[1].name, "shop_web_2");
  EXPECT_EQ(s[1].state, ServerState::kDrain);
  EXPECT_EQ(s[1].sessions, 0);
  EXPECT_EQ(s[2].name, "shop_web_3");
  EXPECT_EQ(s[2].state, ServerState::kMaintenance);
  EXPECT_EQ(s[3].name, "shop_web_4");
  EXPECT_EQ(s[3].state, ServerState::kDown);
  EXPECT_EQ(s[3].address, "127.0.0.1:18487");
}

TEST(HaproxyShowStat, ABackendWithoutServersIsEmpty) {
  const auto servers = parse_show_stat(kShowStat, sample(), "empty");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  EXPECT_TRUE(servers->empty());
}

TEST(HaproxyShowStat, AnUnknownBackendIsAnError) {
  const auto servers = parse_show_stat(kShowStat, sample(), "nope");
  ASSERT_FALSE(servers.has_value());
  EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(servers.error().message.find("no backend 'nope'"), std::string::npos) << servers.error().message;
}

TEST(HaproxyShowStat, ReadsQuotedFields) {
  const auto servers =
      parse_show_stat(kShowStat, dump({"web,BACKEND,0,UP,,", "web,\"a\",2,\"DOWN 1/2\",\"127.0.0.1:80\","}), "web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].name, "a");
  EXPECT_EQ((*servers)[0].sessions, 2);
  EXPECT_EQ((*servers)[0].state, ServerState::kDown);
}

TEST(HaproxyShowStat, IgnoresOtherProxies) {
  const auto servers =
      parse_show_stat(kShowStat, dump({"api,x,5,UP,127.0.0.1:81,", "web,BACKEND,0,UP,,", "api,BACKEND,5,UP,,"}), "web");
  ASSERT_TRUE(servers.has_value()) << servers.error().message;
  EXPECT_TRUE(servers->empty());
}

TEST(HaproxyShowStat, RefusesWhatIsNotACompleteDump) {
  std::string cut = sample();
  cut.pop_back();  // the closing empty line is what tells a complete dump
  const std::pair<std::string, std::string_view> cases[] = {
      {"No such proxy.\n\n", "with 'No such proxy.'"},
      {"", "with nothing"},
      {cut, "does not end with an empty line"},
      {sample().substr(0, 1000), "does not end with an empty line"},
      {"# pxname,svname,scur,status,\n\n", "header lacks"},
      {dump({"web,BACKEND,0,UP,,", "web,a,0,UP,"}), "line 3 does not have the header's 6 fields"},
      {dump({"web,BACKEND,0,UP,,", "web,a,0,UP,\"127.0.0.1:80,"}), "line 3"},
      {"# pxname,svname,scur,status,addr,\nweb,BACKEND,0,UP,,\n\nweb,a,0,UP,127.0.0.1:80,\n\n", "line 3"},
      {dump({"web,BACKEND,0,UP,,", "web,a,,UP,127.0.0.1:80,"}), "scur '' of server a is not a count"},
      {dump({"web,BACKEND,0,UP,,", "web,a,-1,UP,127.0.0.1:80,"}), "scur '-1'"},
      {dump({"web,BACKEND,0,UP,,", "web,a,1x,UP,127.0.0.1:80,"}), "scur '1x'"},
      {dump({"web,BACKEND,0,UP,,", "web,a,0,SLEEPING,127.0.0.1:80,"}), "unknown status 'SLEEPING' of server a"},
  };
  for (const auto& [answer, expected] : cases) {
    const auto servers = parse_show_stat(kShowStat, answer, "web");
    ASSERT_FALSE(servers.has_value()) << answer;
    EXPECT_EQ(servers.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(servers.error().message.find(expected), std::string::npos)
        << "expected '" << expected << "' in: " << servers.error().message;
    EXPECT_NE(servers.error().message.find("'show stat -1 6 -1'"), std::string::npos) << servers.error().message;
  }
}

}  // namespace
}  // namespace tranche::lb::haproxy
