// The controller's settings (internal to api/): the --config file read under
// the flags given, and what must hold before anything starts — the listen
// address, the TLS flags that go together or exclude each other, the
// heartbeat interval and timeout. Each refusal names its setting.

#pragma once

#include <string>
#include <utility>
#include <vector>

#include "api/controller.h"
#include "common/error.h"

namespace tranche::api {

// Settings from options.config_file; a flag in `flags_given` wins over its setting.
Status read_config(ControllerOptions& options, const std::vector<std::string>& flags_given);

// "ADDR:PORT" as its address and port.
Result<std::pair<std::string, unsigned short>> parse_listen(const std::string& listen);

// The TLS flags that go together, and those that exclude each other.
Status check_tls_options(const ControllerOptions& options);

// A host is Unreachable after heartbeat-timeout of silence: a timeout not
// longer than the interval would call every host Unreachable between two of
// its heartbeats (a fleet that flaps, agents reconnecting without end).
Status check_heartbeat_options(const ControllerOptions& options);

}  // namespace tranche::api
