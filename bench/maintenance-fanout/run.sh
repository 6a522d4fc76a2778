#!/usr/bin/env bash
# maintenance-fanout: quality.md P7. `tranche set maintenance restart APP
# --all-at-once` on an application of M members: every agent must have its
# maintenance commands <= 1 s after the API answered (before the rollout's own
# pacing; --all-at-once removes that pacing). One controller, HOSTS
# simulated hosts (tranche-agent-simulator) holding M members in clusters of
# CLUSTER_SIZE; the simulator records, per host, when its first and its last
# maintenance command arrived (wall clock ms, the same clock as this
# script's), and answers each after MAINTENANCE_TIME with a result and a
# `resumed` event, as the agent does.
#
#   bench/maintenance-fanout/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Defaults: build-bench/src/tranche, and the simulator of the same build tree.
# Environment:
#   M (10000)                members of the application
#   HOSTS (100)              simulated hosts, one WebSocket each
#   CLUSTER_SIZE (1000)      members per cluster (maxUnavailable 1 each: the
#                            pacing --all-at-once overrides)
#   MAINTENANCE_TIME (2s)    how long each simulated maintenance restart takes
#   HEARTBEAT (2s)           the controller's --heartbeat-interval
#   HEARTBEAT_TIMEOUT        the controller's --heartbeat-timeout (its default: 6s)
#   SIM_THREADS (2)          simulator io threads
#   ACTIVE_TIMEOUT           deadline for all M members Active (120 s + M/20 s)
#   FANOUT_TIMEOUT           deadline for every command to arrive (60 s + M/50 s)
#   STALL_SECONDS (15)       the fan-out ends early when no command arrived for
#                            this long (members of a host found Unreachable
#                            meanwhile never get theirs)
#   RESUME_TIMEOUT           deadline for all members Active again (60 s + M/50 s)
#   CLI_TIMEOUT              seconds any one HTTP call may take (20; the set
#                            itself: 300)
#   TIMEOUT                  deadline for the whole script (sum of the above + 120 s)
#   KEEP (0)                 1: keep the work dir and say where
#   PERF                     a file: `perf record` of the controller from just
#                            before the set until the fan-out ends, with
#                            PERF_OPTS (-F 299 --call-graph dwarf,16384); it
#                            perturbs the figures: for where the time goes,
#                            not for the table
#
# Prints a table and one JSON line {"bench":"maintenance-fanout",...}. Exit
# status 1 when no command arrived at all; `complete` in the JSON says
# whether every member got its command.

set -euo pipefail

die() {
  echo "maintenance-fanout: $*" >&2
  exit 1
}
note() { echo "maintenance-fanout: $*" >&2; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
wall_ms() { date +%s%3N; }

# shellcheck source=bench/lib/binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/binaries.sh"
# shellcheck source=bench/lib/perf.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/perf.sh"
find_binaries "$@"

M=${M:-10000}
HOSTS=${HOSTS:-100}
CLUSTER_SIZE=${CLUSTER_SIZE:-1000}
MAINTENANCE_TIME=${MAINTENANCE_TIME:-2s}
HEARTBEAT=${HEARTBEAT:-2s}
STALL_SECONDS=${STALL_SECONDS:-15}
TIMEOUT_ARGS=()
[[ -n "${HEARTBEAT_TIMEOUT:-}" ]] && TIMEOUT_ARGS=(--heartbeat-timeout "$HEARTBEAT_TIMEOUT")
SIM_THREADS=${SIM_THREADS:-2}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
[[ "$M" =~ ^[0-9]+$ && "$M" -ge 1 ]] || die "M must be a positive number, got '$M'"
[[ "$HOSTS" =~ ^[0-9]+$ && "$HOSTS" -ge 1 ]] || die "HOSTS must be a positive number, got '$HOSTS'"
[[ "$CLUSTER_SIZE" =~ ^[0-9]+$ && "$CLUSTER_SIZE" -ge 1 ]] || die "CLUSTER_SIZE must be a positive number"
CLUSTERS=$(((M + CLUSTER_SIZE - 1) / CLUSTER_SIZE))
SLOTS=$(((M + HOSTS - 1) / HOSTS + 10))
ACTIVE_TIMEOUT=${ACTIVE_TIMEOUT:-$((120 + M / 20))}
FANOUT_TIMEOUT=${FANOUT_TIMEOUT:-$((60 + M / 50))}
RESUME_TIMEOUT=${RESUME_TIMEOUT:-$((60 + M / 50))}
TIMEOUT=${TIMEOUT:-$((120 + ACTIVE_TIMEOUT + FANOUT_TIMEOUT + RESUME_TIMEOUT))}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH=maintenance-fanout
# shellcheck source=bench/lib/simulated-fleet.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/simulated-fleet.sh"

# --- controller ---------------------------------------------------------------
start_controller --heartbeat-interval "$HEARTBEAT" "${TIMEOUT_ARGS[@]}"

# --- simulated hosts ----------------------------------------------------------
"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" \
  --members-per-host $(((M + HOSTS - 1) / HOSTS)) --slots "$SLOTS" --threads "$SIM_THREADS" \
  --maintenance-time "$MAINTENANCE_TIME" --duration 24h --progress 30s --stats-file "$WORK/sim-stats.json" \
  >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
SIM_PID=$!
deadline=$((SECONDS + 30 + 3 * HOSTS / 500))
while :; do
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited"
  alive "while hosts connected"
  connected=$(api GET /hosts 2>/dev/null | jq '[.items[] | select(.connected and .state == "Ready")] | length' \
    2>/dev/null || echo 0)
  [[ "$connected" -ge "$HOSTS" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $connected of $HOSTS hosts connected in time"
  sleep 0.5
done
note "$HOSTS hosts connected"

# --- the application: CLUSTERS clusters, M members ----------------------------------
APP=simfan
{
  echo "application: $APP"
  echo "description: maintenance fan-out benchmark, $M members on $HOSTS simulated hosts"
  echo "clusters:"
  for ((c = 0; c < CLUSTERS; c++)); do
    n=$((c == CLUSTERS - 1 ? M - c * CLUSTER_SIZE : CLUSTER_SIZE))
    cat <<YAML
  - name: c$c
    members: {min: 1, max: $n, desired: $n}
    artifact: {version: "1.0.0", command: ["sim"]}
    ports: [main]
    update: {minReadySeconds: 0, maxUnavailable: 1}
    operational: {autoscaling: "off"}
    placement: {hostLabels: {sim: "1"}, slots: 1}
YAML
  done
} >"$WORK/manifest.yaml"
T_APPLY=$(wall_ms)
api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest.yaml" >"$WORK/apply.json" ||
  die "apply failed: $(cat "$WORK/apply.json")"
active_count() {
  api GET "/members?app=$APP&state=Active" 2>/dev/null | jq '.items | length' 2>/dev/null || echo -1
}
POLL_ACTIVE=$((M >= 20000 ? 5 : 1))
deadline=$((SECONDS + ACTIVE_TIMEOUT))
while :; do
  alive "while members started"
  active=$(active_count)
  [[ "$active" -ge "$M" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $active of $M members Active within ${ACTIVE_TIMEOUT} s"
  note "$active of $M members Active"
  sleep "$POLL_ACTIVE"
done
ACTIVE_SECONDS=$(calc "($(wall_ms) - $T_APPLY) / 1000")
note "all $M members Active after ${ACTIVE_SECONDS} s"
sleep 2 # a few quiet heartbeats

# --- the command ------------------------------------------------------------------
perf_start "-F 299 --call-graph dwarf,16384"
# The body `tranche set maintenance restart simfan --all-at-once` sends.
T0=$(wall_ms)
curl -sS --fail-with-body --max-time 300 -X PUT -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" --data '{"maintenance":"restart","allAtOnce":true}' \
  "$URL/api/v1/applications/$APP/operational-state" >"$WORK/set.json" || die "the set failed: $(cat "$WORK/set.json")"
T1=$(wall_ms)
API_MS=$((T1 - T0))
note "the API answered after $API_MS ms: $(jq -c '{operation, message}' "$WORK/set.json")"

arrived() { jq '[.maintenance_hosts // [] | .[][2]] | add // 0' "$WORK/sim-stats.json" 2>/dev/null || echo 0; }
deadline=$((SECONDS + FANOUT_TIMEOUT))
last_got=0
last_change=$SECONDS
while :; do
  alive "during the fan-out"
  got=$(arrived)
  [[ "$got" -ge "$M" ]] && break
  if [[ "$got" -ne "$last_got" ]]; then
    last_got=$got
    last_change=$SECONDS
  fi
  if [[ "$got" -gt 0 && $((SECONDS - last_change)) -ge "$STALL_SECONDS" ]]; then
    note "only $got of $M maintenance commands arrived; none for ${STALL_SECONDS} s"
    break
  fi
  [[ $SECONDS -lt $deadline ]] || break
  # The figures are the simulator's own arrival times; this loop only
  # notices the end. The stats file changes once a second, and each look is
  # a jq over 1,000 hosts' entries (4 % of both cores at 0.2 s).
  sleep 0.5
done
[[ "$(arrived)" -gt 0 ]] || die "no maintenance command arrived within ${FANOUT_TIMEOUT} s"
sleep 1.2 # the stats file is rewritten every second: the last arrivals are in it now
perf_stop
cp "$WORK/sim-stats.json" "$WORK/fanout-stats.json"
FANOUT=$(jq -c --argjson t1 "$T1" '
  def q(p): sort | .[((length - 1) * p | floor)];
  .maintenance_hosts as $h |
  { hosts_with_commands: ($h | length), commands: ([$h[][2]] | add),
    first_ms_p50: ([$h[] | .[0] - $t1] | q(0.5)), first_ms_p99: ([$h[] | .[0] - $t1] | q(0.99)),
    first_ms_max: ([$h[] | .[0] - $t1] | max),
    last_ms_p50: ([$h[] | .[1] - $t1] | q(0.5)), last_ms_p99: ([$h[] | .[1] - $t1] | q(0.99)),
    every_agent_ms: ([$h[] | .[1] - $t1] | max),
    first_ms_min: ([$h[] | .[0] - $t1] | min) }' "$WORK/fanout-stats.json")
note "fan-out: $FANOUT"

# Where the time goes: the controller logs, as it stages them, the members
# going Active -> Maintenance: one line per member ("member ID A -> B: ..."),
# or one per cluster when a pass takes several ("N members of PATH A -> B:
# ..."), with a ms timestamp of its local time.
log_ms() { # LOG-LINE: its timestamp in Unix ms
  date -d "$(sed -E 's/^\[([^]]+)\].*/\1/' <<<"$1")" +%s%3N
}
first_line=$(grep -m 1 -F -- '-> Maintenance' "$WORK/controller.log" || true)
last_line=$(grep -F -- '-> Maintenance' "$WORK/controller.log" | tail -n 1 || true)
COMMIT_FIRST_MS=null
COMMIT_LAST_MS=null
if [[ -n "$first_line" ]]; then
  COMMIT_FIRST_MS=$(($(log_ms "$first_line") - T1))
  COMMIT_LAST_MS=$(($(log_ms "$last_line") - T1))
fi
MAINTENANCE_MEMBERS=$(grep -F -- '-> Maintenance' "$WORK/controller.log" |
  awk 'match($0, /\] [0-9]+ members of /) { split(substr($0, RSTART + 2), f, " "); n += f[1]; next }
       { n++ } END { print n + 0 }' || true)
UNREACHABLE_HOSTS=$(grep -c -E 'host .* -> Unreachable' "$WORK/controller.log" || true)

# --- back to Active ---------------------------------------------------------------------
deadline=$((SECONDS + RESUME_TIMEOUT))
RESUME_SECONDS=null
while [[ $SECONDS -lt $deadline ]]; do
  alive "while members resumed"
  if [[ $(active_count) -ge "$M" ]]; then
    RESUME_SECONDS=$(calc "($(wall_ms) - $T1) / 1000")
    break
  fi
  sleep "$POLL_ACTIVE"
done
[[ "$RESUME_SECONDS" != null ]] || note "not every member was Active again within ${RESUME_TIMEOUT} s"

# --- report ---------------------------------------------------------------------------
f() { jq -r ".$1" <<<"$FANOUT"; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
EVERY=$(f every_agent_ms)
echo "maintenance-fanout (quality.md P7): $M members in $CLUSTERS clusters on $HOSTS simulated hosts, --all-at-once"
echo "machine: $MACHINE; build: $BUILD; maintenance time $MAINTENANCE_TIME"
echo
echo "| figure | value |"
echo "| --- | --- |"
echo "| API answer of the set (ms) | $API_MS |"
echo "| commands arrived / hosts | $(f commands) / $(f hosts_with_commands) |"
echo "| host's first command after the answer min / p50 / p99 / max (ms) | $(f first_ms_min) / $(f first_ms_p50) / $(f first_ms_p99) / $(f first_ms_max) |"
echo "| host's last command after the answer p50 / p99 (ms) | $(f last_ms_p50) / $(f last_ms_p99) |"
echo "| every agent has its commands after the answer (ms) | $EVERY (P7: <= 1000: $([[ $EVERY -le 1000 ]] && echo yes || echo no)) |"
echo "| controller: first / last Active -> Maintenance after the answer (ms) | $COMMIT_FIRST_MS / $COMMIT_LAST_MS ($MAINTENANCE_MEMBERS members) |"
echo "| hosts found Unreachable meanwhile (heartbeat timeout ${HEARTBEAT_TIMEOUT:-6s}) | $UNREACHABLE_HOSTS |"
echo "| all Active again after the answer (s) | $RESUME_SECONDS |"
echo "| all $M Active after the apply (s) | $ACTIVE_SECONDS |"
echo
jq -c -n --argjson f "$FANOUT" --arg machine "$MACHINE" --arg build "$BUILD" --argjson m "$M" \
  --argjson hosts "$HOSTS" --argjson clusters "$CLUSTERS" --argjson api "$API_MS" \
  --argjson cf "$COMMIT_FIRST_MS" --argjson cl "$COMMIT_LAST_MS" --argjson resume "$RESUME_SECONDS" \
  --argjson active "$ACTIVE_SECONDS" --arg mt "$MAINTENANCE_TIME" --arg lb "$LOAD_BEFORE" --arg la "$LOAD_AFTER" \
  --argjson unreachable "$UNREACHABLE_HOSTS" --arg hbt "${HEARTBEAT_TIMEOUT:-6s}" '
  {bench: "maintenance-fanout", machine: $machine, build: $build, members: $m, hosts: $hosts, clusters: $clusters,
   all_at_once: true, maintenance_time: $mt, api_ms: $api} + $f +
  {complete: ($f.commands >= $m), within_1s: ($f.commands >= $m and $f.every_agent_ms <= 1000),
   heartbeat_timeout: $hbt, hosts_unreachable: $unreachable, controller_first_maintenance_ms: $cf,
   controller_last_maintenance_ms: $cl, all_active_again_seconds: $resume, active_after_apply_seconds: $active,
   load_before: $lb, load_after: $la}'
