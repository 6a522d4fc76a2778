// tranche-loadgen's pure parts: the command line (loopback only, bounds,
// defaults, phase labels) and the accounting (outcome kinds, latency
// quantiles, time buckets of the version share, slow requests apart, phases)
// and its JSON report.

#include <chrono>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "options.h"
#include "report.h"
#include "stats.h"

namespace tranche::loadgen {
namespace {

using namespace std::chrono_literals;

Result<Options> parse(std::vector<std::string_view> args) { return parse_options(args); }

TEST(LoadgenOptions, Defaults) {
  auto opts = parse({"--url", "http://127.0.0.1:8080/"});
  ASSERT_TRUE(opts) << opts.error().describe();
  EXPECT_EQ(opts->target.address, "127.0.0.1");
  EXPECT_EQ(opts->target.port, 8080);
  EXPECT_EQ(opts->target.host_header, "127.0.0.1:8080");
  EXPECT_EQ(opts->target.path, "/");
  EXPECT_EQ(opts->connections, 4);
  EXPECT_EQ(opts->keep_alive_rate, 50);
  EXPECT_EQ(opts->new_connection_rate, 10);
  EXPECT_EQ(opts->duration, 60s);
  EXPECT_EQ(opts->timeout, 2s);
  EXPECT_EQ(opts->interval, 1s);
  EXPECT_TRUE(opts->stop_file.empty());
  EXPECT_EQ(opts->slow_rate, 0);
  EXPECT_EQ(opts->slow_path, "/slow?ms=1000");
  EXPECT_TRUE(opts->phase_file.empty());
  EXPECT_FALSE(opts->json);
}

TEST(LoadgenOptions, EveryOptionInBothSpellings) {
  auto opts = parse({"--url=http://localhost:9/slow?ms=5", "--connections", "2", "--keep-alive-rate=20/s",
                     "--new-connection-rate", "7.5/s", "--duration=90s", "--stop-file", "/tmp/stop", "--timeout",
                     "500ms", "--interval=250ms", "--json", "--slow-rate", "20/s", "--slow-path=/slow?ms=900",
                     "--phase-file", "/tmp/phase"});
  ASSERT_TRUE(opts) << opts.error().describe();
  EXPECT_EQ(opts->target.address, "127.0.0.1");
  EXPECT_EQ(opts->target.port, 9);
  EXPECT_EQ(opts->target.host_header, "localhost:9");
  EXPECT_EQ(opts->target.path, "/slow?ms=5");
  EXPECT_EQ(opts->connections, 2);
  EXPECT_EQ(opts->keep_alive_rate, 20);
  EXPECT_EQ(opts->new_connection_rate, 7.5);
  EXPECT_EQ(opts->duration, 90s);
  EXPECT_EQ(opts->stop_file, "/tmp/stop");
  EXPECT_EQ(opts->timeout, 500ms);
  EXPECT_EQ(opts->interval, 250ms);
  EXPECT_TRUE(opts->json);
  EXPECT_EQ(opts->slow_rate, 20);
  EXPECT_EQ(opts->slow_path, "/slow?ms=900");
  EXPECT_EQ(opts->phase_file, "/tmp/phase");
}

TEST(LoadgenOptions, SlowRequestsAloneAreSomethingToSend) {
  EXPECT_TRUE(parse(
      {"--url", "http://127.0.0.1:1/", "--connections", "0", "--new-connection-rate", "0", "--slow-rate", "5/s"}));
}

TEST(LoadgenOptions, PhaseLabelIsTheFirstLineTrimmed) {
  EXPECT_EQ(phase_label("steady\n"), "steady");
  EXPECT_EQ(phase_label("  rolling-replace \r\nignored\n"), "rolling-replace");
  EXPECT_EQ(phase_label("v1.2_x"), "v1.2_x");
  EXPECT_EQ(phase_label(std::string(kMaxPhaseLength, 'a')), std::string(kMaxPhaseLength, 'a'));
  // Unusable: the phase stays what it was.
  for (std::string_view bad : {"", "\n", "   \n", "two words", "quote\"", "{x}", "\nsecond-line"}) {
    EXPECT_FALSE(phase_label(bad)) << bad;
  }
  EXPECT_FALSE(phase_label(std::string(kMaxPhaseLength + 1, 'a')));
}

TEST(LoadgenOptions, HelpNeedsNothingElse) {
  auto opts = parse({"--help"});
  ASSERT_TRUE(opts);
  EXPECT_TRUE(opts->help);
}

TEST(LoadgenOptions, UrlIsLoopbackOnly) {
  for (std::string_view ok :
       {"http://127.0.0.1/", "http://127.1.2.3:1", "http://localhost:80/x", "http://[::1]:8080/"}) {
    EXPECT_TRUE(parse_url(ok)) << ok;
  }
  auto v6 = parse_url("http://[::1]:8080/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->address, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(parse_url("http://127.0.0.1")->port, 80);

  for (std::string_view refused :
       {"http://10.0.0.1:80/", "http://example.com/", "http://0.0.0.0:80/", "http://128.0.0.1/",
        "http://localhost.example.com/", "http://[::2]:80/", "http://127.0.0.1.example.com/"}) {
    auto target = parse_url(refused);
    ASSERT_FALSE(target) << refused;
    EXPECT_NE(target.error().message.find("loopback"), std::string::npos) << target.error().message;
    EXPECT_EQ(target.error().field, "--url");
  }
  for (std::string_view bad : {"https://127.0.0.1/", "127.0.0.1:80", "http://127.0.0.1:0/", "http://127.0.0.1:70000/",
                               "http://127.0.0.1:x/", "http://[::1/"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
}

TEST(LoadgenOptions, Rates) {
  EXPECT_EQ(parse_rate("20/s"), 20);
  EXPECT_EQ(parse_rate("20"), 20);
  EXPECT_EQ(parse_rate("0.5/s"), 0.5);
  EXPECT_EQ(parse_rate("0"), 0);
  for (std::string_view bad : {"", "/s", "-1/s", "20/m", "abc", "10001", "inf"}) {
    EXPECT_FALSE(parse_rate(bad)) << bad;
  }
}

TEST(LoadgenOptions, RefusesWhatWouldBeUnbounded) {
  const std::vector<std::vector<std::string_view>> cases = {
      {},                                                         // no --url
      {"--url", "http://127.0.0.1:1/", "--duration", "2h"},       // over 1h
      {"--url", "http://127.0.0.1:1/", "--duration", "10"},       // no unit
      {"--url", "http://127.0.0.1:1/", "--interval", "10ms"},     // too many buckets
      {"--url", "http://127.0.0.1:1/", "--connections", "1001"},  // too many sockets
      {"--url", "http://127.0.0.1:1/", "--connections", "-1"},
      {"--url", "http://127.0.0.1:1/", "--keep-alive-rate", "0"},  // back to back
      {"--url", "http://127.0.0.1:1/", "--connections", "0", "--new-connection-rate", "0"},
      {"--url", "http://127.0.0.1:1/", "--timeout", "0s"},
      {"--url", "http://127.0.0.1:1/", "--bogus"},
      {"--url", "http://127.0.0.1:1/", "extra"},
      {"--url", "http://127.0.0.1:1/", "--json=yes"},
      {"--url", "http://127.0.0.1:1/", "--stop-file"},  // missing value
      {"--url", "http://127.0.0.1:1/", "--stop-file="},
      {"--url", "http://127.0.0.1:1/", "--phase-file="},
      {"--url", "http://127.0.0.1:1/", "--slow-path", "slow"},  // not a path
      {"--url", "http://127.0.0.1:1/", "--slow-rate", "-1/s"},
  };
  for (const auto& args : cases) {
    std::string joined;
    for (auto a : args) {
      joined += std::string(a) + " ";
    }
    EXPECT_FALSE(parse(args)) << joined;
  }
}

Outcome outcome(Kind kind, std::chrono::milliseconds at, std::chrono::microseconds latency = 1ms,
                std::string version = "1.0.0", Mode mode = Mode::kKeepAlive, int status = 200) {
  Outcome o;
  o.kind = kind;
  o.mode = mode;
  o.at = at;
  o.latency = latency;
  o.version = std::move(version);
  o.status = status;
  return o;
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  EXPECT_EQ(h.quantile(0.5), 0us);
  for (int us = 1; us <= 50; ++us) {
    h.record(std::chrono::microseconds(us));
  }
  EXPECT_EQ(h.count(), 50u);
  EXPECT_EQ(h.quantile(0.5), 25us);   // nearest rank: the 25th of 50
  EXPECT_EQ(h.quantile(0.99), 50us);  // ceil(49.5) = 50th
  EXPECT_EQ(h.quantile(1.0), 50us);
  EXPECT_EQ(h.quantile(0.01), 1us);
  EXPECT_EQ(h.max(), 50us);
}

TEST(LatencyHistogram, LargeValuesWithinAFewPercent) {
  LatencyHistogram h;
  // 1..1000 ms: p50 is 500 ms, p99 990 ms.
  for (int ms = 1; ms <= 1000; ++ms) {
    h.record(std::chrono::milliseconds(ms));
  }
  auto near = [](std::chrono::microseconds got, double want_us) {
    const double g = static_cast<double>(got.count());
    return g >= want_us && g <= want_us * (1 + 1.0 / 32);
  };
  EXPECT_TRUE(near(h.quantile(0.5), 500'000)) << h.quantile(0.5).count();
  EXPECT_TRUE(near(h.quantile(0.99), 990'000)) << h.quantile(0.99).count();
  EXPECT_EQ(h.quantile(1.0), 1000ms);  // capped by the exact maximum
  EXPECT_EQ(h.max(), 1000ms);
}

TEST(LatencyHistogram, OneSlowOutlierShowsInP99OnlyWhenOverOnePercent) {
  LatencyHistogram h;
  for (int i = 0; i < 99; ++i) {
    h.record(300us);
  }
  h.record(2s);
  EXPECT_LE(h.quantile(0.99), 310us);
  EXPECT_EQ(h.max(), 2s);
  h.record(2s);
  EXPECT_GE(h.quantile(0.99), 2s);
}

TEST(Tally, CountsEveryKindAndMode) {
  Tally t(1s);
  t.record(outcome(Kind::kOk, 100ms));
  t.record(outcome(Kind::kOk, 200ms, 1ms, "1.0.0", Mode::kNewConnection));
  t.record(outcome(Kind::kHttpError, 300ms, 1ms, "", Mode::kKeepAlive, 503));
  t.record(outcome(Kind::kHttpError, 300ms, 1ms, "", Mode::kKeepAlive, 503));
  t.record(outcome(Kind::kHttpError, 300ms, 1ms, "", Mode::kNewConnection, 502));
  t.record(outcome(Kind::kRefused, 400ms, 0us, "", Mode::kNewConnection, 0));
  t.record(outcome(Kind::kReset, 400ms, 0us, "", Mode::kKeepAlive, 0));
  t.record(outcome(Kind::kTimeout, 2500ms, 2s, "", Mode::kKeepAlive, 0));
  t.record(outcome(Kind::kOther, 2600ms, 0us, "", Mode::kKeepAlive, 0));

  EXPECT_EQ(t.sent(), 9u);
  EXPECT_EQ(t.ok(), 2u);
  EXPECT_EQ(t.failed(), 7u);
  EXPECT_EQ(t.count(Kind::kHttpError), 3u);
  EXPECT_EQ(t.http_errors(), (std::map<int, uint64_t>{{502, 1}, {503, 2}}));
  EXPECT_EQ(t.count(Kind::kRefused), 1u);
  EXPECT_EQ(t.count(Kind::kReset), 1u);
  EXPECT_EQ(t.count(Kind::kTimeout), 1u);
  EXPECT_EQ(t.count(Kind::kOther), 1u);
  EXPECT_EQ(t.by_mode(Mode::kKeepAlive).sent, 6u);
  EXPECT_EQ(t.by_mode(Mode::kKeepAlive).failed, 5u);
  EXPECT_EQ(t.by_mode(Mode::kNewConnection).sent, 3u);
  EXPECT_EQ(t.by_mode(Mode::kNewConnection).failed, 2u);
  // Only the ok answers make the latency figures: the 2 s timeout does not.
  EXPECT_EQ(t.latency().count(), 2u);
  EXPECT_EQ(t.latency().max(), 1ms);
}

TEST(Tally, BucketsShareOfVersionsOverTime) {
  Tally t(500ms);
  t.record(outcome(Kind::kOk, 0ms, 1ms, "1.0.0"));
  t.record(outcome(Kind::kOk, 499ms, 1ms, "1.0.0"));
  t.record(outcome(Kind::kOk, 500ms, 1ms, "1.0.0"));
  t.record(outcome(Kind::kOk, 900ms, 1ms, "2.0.0"));
  t.record(outcome(Kind::kHttpError, 950ms, 1ms, "", Mode::kKeepAlive, 503));
  t.record(outcome(Kind::kOk, 1700ms, 1ms, "2.0.0"));  // leaves [1000, 1500) empty
  t.record(outcome(Kind::kOk, 1800ms, 1ms, ""));       // an answer without a version

  ASSERT_EQ(t.buckets().size(), 4u);
  EXPECT_EQ(t.buckets()[0].ok, 2u);
  EXPECT_EQ(t.buckets()[0].versions, (std::map<std::string, uint64_t>{{"1.0.0", 2}}));
  EXPECT_EQ(t.buckets()[1].ok, 2u);
  EXPECT_EQ(t.buckets()[1].failed, 1u);
  EXPECT_EQ(t.buckets()[1].versions, (std::map<std::string, uint64_t>{{"1.0.0", 1}, {"2.0.0", 1}}));
  EXPECT_EQ(t.buckets()[2].ok + t.buckets()[2].failed, 0u);
  EXPECT_EQ(t.buckets()[3].versions, (std::map<std::string, uint64_t>{{"2.0.0", 1}, {"", 1}}));
  EXPECT_EQ(t.versions(), (std::vector<std::string>{"1.0.0", "2.0.0", ""}));
}

TEST(Tally, KeepsABoundedVersionString) {
  Tally t(1s);
  t.record(outcome(Kind::kOk, 0ms, 1ms, std::string(1000, 'v')));
  ASSERT_EQ(t.versions().size(), 1u);
  EXPECT_EQ(t.versions()[0].size(), 64u);
}

TEST(Tally, SlowRequestsCountInTheTotalsButHaveTheirOwnLatencies) {
  Tally t(1s);
  for (int i = 0; i < 99; ++i) {
    t.record(outcome(Kind::kOk, 100ms, 1ms));
  }
  // Two 1 s answers among 101 would be the p99 if they were mixed in.
  t.record(outcome(Kind::kOk, 1100ms, 1000ms, "1.0.0", Mode::kSlow));
  t.record(outcome(Kind::kOk, 1200ms, 1010ms, "1.0.0", Mode::kSlow));
  t.record(outcome(Kind::kReset, 1300ms, 5ms, "", Mode::kSlow, 0));

  EXPECT_EQ(t.sent(), 102u);
  EXPECT_EQ(t.ok(), 101u);
  EXPECT_EQ(t.failed(), 1u);
  EXPECT_EQ(t.by_mode(Mode::kSlow).sent, 3u);
  EXPECT_EQ(t.by_mode(Mode::kSlow).failed, 1u);
  EXPECT_EQ(t.by_mode(Mode::kKeepAlive).sent, 99u);
  EXPECT_EQ(t.latency().count(), 99u);
  EXPECT_EQ(t.latency().max(), 1ms);
  EXPECT_EQ(t.slow_latency().count(), 2u);
  EXPECT_EQ(t.slow_latency().max(), 1010ms);
  EXPECT_EQ(t.buckets()[1].versions.at("1.0.0"), 2u);  // slow answers show the version too
}

TEST(Tally, PhasesCountTheRequestsBegunInThemAndAddUpWhenTheyComeBack) {
  Tally t(1s, "steady");
  EXPECT_EQ(t.current_phase(), 0u);
  auto in_phase = [&](Kind kind, std::chrono::microseconds latency, Mode mode = Mode::kKeepAlive) {
    Outcome o = outcome(kind, 0ms, latency, "1.0.0", mode, kind == Kind::kOk ? 200 : 503);
    o.phase = t.current_phase();
    return o;
  };
  t.record(in_phase(Kind::kOk, 1ms));
  t.record(in_phase(Kind::kOk, 1ms));
  const Outcome begun_in_steady = in_phase(Kind::kOk, 2ms);

  ASSERT_TRUE(t.enter_phase("rolling", 10s));
  EXPECT_EQ(t.current_phase(), 1u);
  t.record(begun_in_steady);  // answered after the switch, counted where it began
  t.record(in_phase(Kind::kOk, 8ms));
  t.record(in_phase(Kind::kHttpError, 1ms));
  t.record(in_phase(Kind::kOk, 1000ms, Mode::kSlow));
  EXPECT_TRUE(t.enter_phase("rolling", 12s));  // the same phase again: nothing changes

  ASSERT_TRUE(t.enter_phase("steady", 15s));
  EXPECT_EQ(t.current_phase(), 0u);
  t.record(in_phase(Kind::kOk, 3ms));

  ASSERT_EQ(t.phases().size(), 2u);
  const Phase& steady = t.phases()[0];
  const Phase& rolling = t.phases()[1];
  EXPECT_EQ(steady.name, "steady");
  EXPECT_EQ(steady.ok, 4u);
  EXPECT_EQ(steady.failed, 0u);
  EXPECT_EQ(steady.latency.max(), 3ms);
  EXPECT_EQ(rolling.ok, 2u);
  EXPECT_EQ(rolling.failed, 1u);
  EXPECT_EQ(rolling.slow.sent, 1u);
  EXPECT_EQ(rolling.latency.count(), 1u);  // the slow answer is not in it
  EXPECT_EQ(rolling.latency.max(), 8ms);
  EXPECT_EQ(rolling.slow_latency.max(), 1000ms);
  // 0-10 s and 15-20 s steady, 10-15 s rolling.
  EXPECT_EQ(t.phase_duration(0, 20s), 15s);
  EXPECT_EQ(t.phase_duration(1, 20s), 5s);
}

TEST(Tally, AtMostKMaxPhases) {
  Tally t(1s, "p0");
  for (size_t i = 1; i < kMaxPhases; ++i) {
    ASSERT_TRUE(t.enter_phase("p" + std::to_string(i), std::chrono::seconds(i)));
  }
  EXPECT_FALSE(t.enter_phase("one-too-many", 100s));
  EXPECT_EQ(t.phases().size(), kMaxPhases);
  EXPECT_EQ(t.phases()[t.current_phase()].name, "p" + std::to_string(kMaxPhases - 1));
  EXPECT_TRUE(t.enter_phase("p0", 101s));  // one seen before is still fine
}

TEST(Report, PhasesAreFlatObjectsInTheJsonAndRowsInTheTable) {
  auto opts = parse({"--url", "http://127.0.0.1:8080/", "--phase-file", "/tmp/p", "--slow-rate", "1/s"});
  ASSERT_TRUE(opts);
  Tally t(1s, "steady");
  for (int i = 0; i < 20; ++i) {
    t.record(outcome(Kind::kOk, 100ms, 2ms));
  }
  ASSERT_TRUE(t.enter_phase("maintenance", 10s));
  Outcome slow = outcome(Kind::kOk, 10500ms, 1000ms, "2.0.0", Mode::kSlow);
  slow.phase = 1;
  t.record(slow);

  const auto j = to_json(t, *opts, 20000ms);
  EXPECT_EQ(j["rps"], 1.05);
  EXPECT_EQ(j["slow"]["sent"], 1);
  EXPECT_EQ(j["slow_latency_ms"]["max"], 1000.0);
  EXPECT_EQ(j["latency_ms"]["max"], 2.0);
  ASSERT_EQ(j["phases"].size(), 2u);
  const auto& steady = j["phases"]["steady"];
  EXPECT_EQ(steady["duration_s"], 10.0);
  EXPECT_EQ(steady["sent"], 20);
  EXPECT_EQ(steady["rps"], 2.0);
  EXPECT_EQ(steady["max_ms"], 2.0);
  EXPECT_EQ(steady["slow_sent"], 0);
  const auto& maintenance = j["phases"]["maintenance"];
  EXPECT_EQ(maintenance["duration_s"], 10.0);
  EXPECT_EQ(maintenance["sent"], 1);
  EXPECT_EQ(maintenance["p99_ms"], 0.0);  // no answer that is not slow
  EXPECT_EQ(maintenance["slow_p99_ms"], 1000.0);
  for (const auto& [name, phase] : j["phases"].items()) {
    for (const auto& [key, value] : phase.items()) {
      EXPECT_TRUE(value.is_primitive()) << name << "." << key;
    }
  }

  const std::string table = format_table(t, *opts, 20000ms);
  EXPECT_NE(table.find("slow sent/failed"), std::string::npos) << table;
  EXPECT_NE(table.find("maintenance"), std::string::npos) << table;
  EXPECT_NE(table.find("slow p99"), std::string::npos) << table;

  // Without slow requests the table has no columns for them.
  auto no_slow = parse({"--url", "http://127.0.0.1:8080/", "--phase-file", "/tmp/p"});
  ASSERT_TRUE(no_slow);
  const std::string plain = format_table(t, *no_slow, 20000ms);
  EXPECT_NE(plain.find("maintenance"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("slow"), std::string::npos) << plain;
}

TEST(Report, JsonCarriesTheFiguresAndTheTableTheShares) {
  auto opts = parse({"--url", "http://127.0.0.1:8080/"});
  ASSERT_TRUE(opts);
  Tally t(1s);
  for (int i = 0; i < 3; ++i) {
    t.record(outcome(Kind::kOk, 100ms, 2ms, "1.0.0"));
  }
  t.record(outcome(Kind::kOk, 1100ms, 4ms, "2.0.0"));
  t.record(outcome(Kind::kHttpError, 1200ms, 1ms, "", Mode::kNewConnection, 503));
  t.record(outcome(Kind::kTimeout, 1300ms, 2s, "", Mode::kKeepAlive, 0));

  const auto j = to_json(t, *opts, 2000ms);
  EXPECT_EQ(j["bench"], "loadgen");
  EXPECT_EQ(j["url"], "http://127.0.0.1:8080/");
  EXPECT_EQ(j["elapsed_s"], 2.0);
  EXPECT_EQ(j["sent"], 6);
  EXPECT_EQ(j["ok"], 4);
  EXPECT_EQ(j["failed"], 2);
  EXPECT_EQ(j["failures"]["http"]["503"], 1);
  EXPECT_EQ(j["failures"]["timeout"], 1);
  EXPECT_EQ(j["failures"]["refused"], 0);
  // 2 ms within the histogram's 1/32, rounded to 0.01 ms.
  EXPECT_GE(j["latency_ms"]["p50"].get<double>(), 2.0);
  EXPECT_LE(j["latency_ms"]["p50"].get<double>(), 2.07);
  EXPECT_EQ(j["latency_ms"]["max"], 4.0);
  EXPECT_EQ(j["new_connection"]["failed"], 1);
  EXPECT_EQ(j["versions"]["1.0.0"], 3);
  EXPECT_EQ(j["versions"]["2.0.0"], 1);
  ASSERT_EQ(j["buckets"].size(), 2u);
  EXPECT_EQ(j["buckets"][1]["t_s"], 1.0);
  EXPECT_EQ(j["buckets"][1]["failed"], 2);
  EXPECT_EQ(j["buckets"][1]["versions"]["2.0.0"], 1);

  const std::string table = format_table(t, *opts, 2000ms);
  EXPECT_NE(table.find("HTTP 503"), std::string::npos) << table;
  EXPECT_NE(table.find("1.0.0 100%"), std::string::npos) << table;
  EXPECT_NE(table.find("2.0.0 100%"), std::string::npos) << table;
}

}  // namespace
}  // namespace tranche::loadgen
