// bench_protocol_codec: what the agent protocol's JSON costs per message, on
// the shapes that dominate a large fleet: a heartbeat of 100 members (each
// agent of P7's and P2's 1,000 hosts sends one every 2 s), encoded as an
// agent does and decoded as the controller does, and a batch frame of 100
// acks (a host's answer to a pass that gave it 100 commands). Both are
// also decoded by the document decoder alone, which is what the controller
// falls back to for frames its scanner does not read (frame_scanner.h),
// and the heartbeat is also encoded through a JSON document (to_json), as
// agents did before heartbeat_text.
//
// Plain std::chrono loops: each case runs ITERATIONS times in a row, five
// rounds interleaved so that background load hits every case alike; the
// median round's time per message is reported.
//
//   bench_protocol_codec [--iterations N]
//
// Prints a table, then one JSON line {"bench":"protocol_codec", ...}.

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/machine.h"
#include "protocol/frames.h"
#include "protocol/messages.h"

namespace {

using namespace tranche::protocol;

Heartbeat heartbeat_of(int members) {
  Heartbeat hb;
  hb.seq = 42;
  for (int i = 0; i < members; ++i) {
    MemberReport r;
    r.id = "simfan/c" + std::to_string(i % 10) + "/" + std::to_string(i);
    r.state = "Running";
    r.healthy = true;
    r.stats = MemberStats{0.25 * (i % 4), i % 7};
    r.pid = 100000 + i;
    hb.members.push_back(std::move(r));
  }
  return hb;
}

std::string ack_batch_of(int acks) {
  nlohmann::json messages = nlohmann::json::array();
  for (int i = 0; i < acks; ++i) {
    messages.push_back(to_json(Ack{"maintenance:simfan/c" + std::to_string(i % 10) + "/" + std::to_string(i) + ":1"}));
  }
  return nlohmann::json{{"type", "batch"}, {"messages", std::move(messages)}}.dump();
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string_view(argv[i]) == "--iterations") {
      iterations = std::max(1, std::atoi(argv[i + 1]));
    }
  }
  const Heartbeat hb = heartbeat_of(100);
  const std::string hb_text = heartbeat_text(hb);  // as agents write it
  const std::string acks_text = ack_batch_of(100);
  size_t sink = 0;  // keeps the work from being optimized away
  struct Case {
    const char* name;
    const char* key;  // in the JSON line
    size_t bytes;     // of the message's text
    std::function<void()> once;
    std::vector<double> rounds_us;  // per message, one entry per round
  };
  std::vector<Case> cases = {
      {"encode heartbeat (100 members)", "encode_heartbeat_us", hb_text.size(),
       [&] { sink += heartbeat_text(hb).size(); }, {}},
      {"decode heartbeat (100 members)", "decode_heartbeat_us", hb_text.size(),
       [&] { sink += decode_agent_frame(hb_text).size(); }, {}},
      {"decode batch of 100 acks", "decode_ack_batch_us", acks_text.size(),
       [&] { sink += decode_agent_frame(acks_text).size(); }, {}},
      {"encode heartbeat, document", "encode_heartbeat_document_us", hb_text.size(),
       [&] { sink += to_json(hb).dump().size(); }, {}},
      {"decode heartbeat, document decoder", "decode_heartbeat_document_us", hb_text.size(),
       [&] { sink += decode_agent_frame_from_document(hb_text).size(); }, {}},
      {"decode batch of 100 acks, document decoder", "decode_ack_batch_document_us", acks_text.size(),
       [&] { sink += decode_agent_frame_from_document(acks_text).size(); }, {}},
  };
  for (int round = 0; round < 5; ++round) {
    for (auto& c : cases) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < iterations; ++i) {
        c.once();
      }
      const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
      c.rounds_us.push_back(took.count() / iterations);
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("bench_protocol_codec: %s; build: %s; %d iterations x 5 rounds\n\n", tranche::bench::machine().c_str(),
              tranche::bench::build_type().c_str(), iterations);
  std::printf("| case | bytes | median us per message |\n| --- | --- | --- |\n");
  nlohmann::ordered_json line = {{"bench", "protocol_codec"},
                                 {"machine", tranche::bench::machine()},
                                 {"build", tranche::bench::build_type()},
                                 {"iterations", iterations}};
  for (const Case& c : cases) {
    const double us = median(c.rounds_us);
    std::printf("| %s | %zu | %.1f |\n", c.name, c.bytes, us);
    line[c.key] = std::round(us * 10) / 10;
  }
  std::printf("\n%s\n", line.dump().c_str());
  return sink == 0 ? 1 : 0;
}
