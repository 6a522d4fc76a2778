#pragma once
// The words of HAProxy 2.6's runtime API (doc/management.txt, section 9.3) as
// pure functions: which names may go into a command line, which answers mean
// success, and how a `show stat` dump reads. No I/O here, so every rule is
// tested on recorded answers (tests/unit/lb).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "lb/load_balancer.h"

namespace tranche::lb::haproxy {

// Letters, digits, '-', '_', '.' and ':' (HAProxy's identifier characters).
// Checked before a name goes into a command line, where a space, ';' or a
// newline would start another argument or another command. kInvalid names
// `what` ("backend", "server").
Status check_identifier(std::string_view name, std::string_view what);

// How a command answers when it succeeds.
enum class Reply {
  kAddServer,     // "New server registered." (or nothing)
  kDeleteServer,  // "Server deleted."
  kSilent,        // enable server, enable health, set server ... state: nothing
};

// Success, or kUnavailable naming `command` and HAProxy's answer. Answers end
// with one or two newlines, which are not part of the words.
Status check_answer(Reply reply, std::string_view command, std::string_view answer);

// The answer in one line for an error message: trimmed, its first line, and
// " (...)" when there was more (an unknown command answers with a page of help).
std::string brief(std::string_view answer);

// A server's `status` column: "UP", "UP 1/3" (up, failing checks), "no check"
// -> kUp; "DOWN", "DOWN 1/2" (down, passing checks), "DOWN (agent)" -> kDown;
// "DRAIN", "DRAIN 1/3", "DRAIN (agent)", "NOLB" (the server asked out of
// balancing, e.g. http-check disable-on-404) -> kDrain; "MAINT",
// "MAINT (via B/S)", "MAINT (resolution)" -> kMaintenance. Nothing for words
// HAProxy 2.6 does not write.
std::optional<ServerState> parse_server_status(std::string_view status);

// One CSV line as HAProxy writes it: fields holding ',' or '"' are quoted, a
// '"' inside doubled. Nothing for a line with an unterminated quote.
std::optional<std::vector<std::string>> split_csv_line(std::string_view line);

// The servers of `backend` in the answer to `command` (a `show stat` of
// backends and servers). Strict: the answer must end with the empty line
// HAProxy writes after a complete dump, its header must name the columns read,
// every row must have the header's number of fields, and `backend` must have
// its BACKEND row (so an unknown backend is an error, not an empty list).
// Errors are kUnavailable naming `command`.
Result<std::vector<ServerInfo>> parse_show_stat(std::string_view command, std::string_view answer,
                                                std::string_view backend);

}  // namespace tranche::lb::haproxy
