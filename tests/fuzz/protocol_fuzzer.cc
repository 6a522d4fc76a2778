// The agent protocol's decoders (protocol/messages.h) on arbitrary frames, as
// each side dispatches them: the controller reads a hello first and then every
// frame with decode_agent_frame(); the agent reads welcome, error and
// command frames. Besides "no crash, leak or sanitizer report": whatever
// decodes encodes (to_json) to a frame that decodes to the same value, which
// is what lets either side trust the other's to_json; and wherever the
// frame scanner reads a frame, the document decoder reads the same messages.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/frame_scanner.h"
#include "protocol/frames.h"
#include "protocol/messages.h"

namespace {

using namespace tranche::protocol;

template <class T, class Parse>
void check_round_trip(const T& decoded, Parse parse, const char* what) {
  const nlohmann::json encoded = to_json(decoded);
  const auto again = parse(encoded);
  if (!again || !(*again == decoded)) {
    std::fprintf(stderr, "%s does not round-trip: %s\n%s\n", what,
                 again ? "it decodes to another value" : again.error().describe().c_str(), encoded.dump().c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (const auto scanned = scan_agent_frame(text)) {
    const auto reference = decode_agent_frame_from_document(text);
    const bool same = reference.size() == scanned->size() &&
                      std::equal(reference.begin(), reference.end(), scanned->begin(),
                                 [](const auto& r, const AgentMessage& m) { return r && *r == m; });
    if (!same) {
      std::fprintf(stderr, "the frame scanner and the document decoder read this frame differently\n");
      std::abort();
    }
  }

  for (const auto& message : decode_agent_frame(text)) {
    if (message) {
      check_round_trip(
          *message,
          [](const nlohmann::json& j) { return decode_agent_message(Envelope{j.at("type").get<std::string>(), j}); },
          "an agent message");
    }
  }

  const auto envelope = parse_envelope(text);
  if (!envelope) {
    return 0;
  }
  const auto& [type, body] = *envelope;
  if (type == "hello") {
    if (const auto hello = parse_hello(body)) {
      check_round_trip(*hello, parse_hello, "a hello");
    }
  } else if (type == "welcome") {
    if (const auto welcome = parse_welcome(body)) {
      check_round_trip(*welcome, parse_welcome, "a welcome");
    }
  } else if (type == "error") {
    if (const auto error = parse_error_message(body)) {
      check_round_trip(*error, parse_error_message, "an error message");
    }
  } else if (type == "command") {
    if (const auto command = parse_command(body)) {
      check_round_trip(*command, parse_command, "a command");
    } else {
      (void)parse_command_header(body);  // what the agent answers a malformed command with
    }
  }
  return 0;
}
