#!/usr/bin/env bash
# failure-detection: quality.md P3. A host killed (its agent SIGKILLed, or its
# network cut off) must be Unreachable within the heartbeat timeout + one
# interval, and the replacement of each of its members Starting <= 250 ms
# after that. One controller, HOSTS simulated hosts
# (tranche-agent-simulator), one cluster of HOSTS x MEMBERS_PER_HOST members;
# the simulator kills KILL hosts at one instant (SIGUSR1, --kill-hosts) and
# records it; the figures come from the controller's event log (GET /events):
# the killed hosts' HostStateChanged -> Unreachable and the replacements'
# MemberStateChanged -> Starting, all with ms timestamps of one machine clock.
#
#   bench/failure-detection/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Defaults: build-bench/src/tranche, and the simulator of the same build tree.
# Environment:
#   HOSTS (300)              simulated hosts, one WebSocket each
#   MEMBERS_PER_HOST (2)     members per host (one cluster, spread evenly)
#   KILL (10)                hosts killed at one instant
#   KILL_MODE (close)        close: the TCP connection ends without a close
#                            frame (what the kernel does for a SIGKILLed
#                            agent); silent: the connection stays open and
#                            nothing more is sent or answered (a cut network)
#   HEARTBEAT (1s)           the controller's --heartbeat-interval
#   HEARTBEAT_TIMEOUT (3s)   the controller's --heartbeat-timeout
#   ROUNDS (3)               kills measured one after the other (KILL hosts each)
#   SIM_THREADS (2)          simulator io threads
#   CLI_TIMEOUT (20)         seconds any one HTTP call may take
#   TIMEOUT (600)            deadline for the whole script
#   KEEP (0)                 1: keep the work dir and say where
#   DURING_ROLLOUT (0)       1: the kills happen while an in-place rolling
#                            update of the cluster runs (P3's "also while a
#                            rollout runs"): once every member is Active the
#                            cluster moves to 2.0.0, ROLLOUT_BATCH members at
#                            a time (maxUnavailable; default 1 % of the
#                            members), each update taking UPDATE_TIME (2s) at
#                            the simulator; every round checks that the
#                            rollout is still Progressing when it kills
#
# Prints a table and one JSON line {"bench":"failure-detection",...}. Exit
# status 1 when a killed host is never seen Unreachable or a member is never
# replaced within the deadline.

set -euo pipefail

die() {
  echo "failure-detection: $*" >&2
  exit 1
}
note() { echo "failure-detection: $*" >&2; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
seconds_of() { # "2s", "500ms", "1.5" -> seconds
  case "$1" in
    *ms) calc "${1%ms} / 1000" ;;
    *s) calc "${1%s}" ;;
    *) calc "$1" ;;
  esac
}

# shellcheck source=bench/lib/binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/binaries.sh"
find_binaries "$@"

HOSTS=${HOSTS:-300}
MEMBERS_PER_HOST=${MEMBERS_PER_HOST:-2}
KILL=${KILL:-10}
KILL_MODE=${KILL_MODE:-close}
HEARTBEAT=${HEARTBEAT:-1s}
HEARTBEAT_TIMEOUT=${HEARTBEAT_TIMEOUT:-3s}
ROUNDS=${ROUNDS:-3}
SIM_THREADS=${SIM_THREADS:-2}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
TIMEOUT=${TIMEOUT:-600}
DURING_ROLLOUT=${DURING_ROLLOUT:-0}
UPDATE_TIME=${UPDATE_TIME:-2s}
[[ "$HOSTS" =~ ^[0-9]+$ && "$HOSTS" -ge 2 ]] || die "HOSTS must be at least 2, got '$HOSTS'"
[[ "$MEMBERS_PER_HOST" =~ ^[0-9]+$ && "$MEMBERS_PER_HOST" -ge 1 ]] || die "MEMBERS_PER_HOST must be at least 1"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || die "ROUNDS must be at least 1"
[[ "$KILL" =~ ^[0-9]+$ && "$KILL" -ge 1 && $((KILL * ROUNDS)) -lt "$HOSTS" ]] ||
  die "KILL x ROUNDS must be at least 1 and below HOSTS"
[[ "$KILL_MODE" == close || "$KILL_MODE" == silent ]] || die "KILL_MODE is close or silent, got '$KILL_MODE'"
MEMBERS=$((HOSTS * MEMBERS_PER_HOST))
ROLLOUT_BATCH=${ROLLOUT_BATCH:-$(( MEMBERS / 100 > 1 ? MEMBERS / 100 : 1 ))}
[[ "$DURING_ROLLOUT" == 0 || "$DURING_ROLLOUT" == 1 ]] || die "DURING_ROLLOUT is 0 or 1, got '$DURING_ROLLOUT'"
[[ "$ROLLOUT_BATCH" =~ ^[0-9]+$ && "$ROLLOUT_BATCH" -ge 1 ]] || die "ROLLOUT_BATCH must be at least 1"
# Members out of Active at any time besides the killed hosts': the batch in flight.
IN_FLIGHT=$(( DURING_ROLLOUT == 1 ? ROLLOUT_BATCH : 0 ))
# Room for the replacements on the hosts that are left.
SLOTS=$((2 * MEMBERS_PER_HOST + 2))
HB_S=$(seconds_of "$HEARTBEAT")
TIMEOUT_S=$(seconds_of "$HEARTBEAT_TIMEOUT")
BOUND_MS=$(awk -v t="$TIMEOUT_S" -v i="$HB_S" 'BEGIN { printf "%d", (t + i) * 1000 }')

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH=failure-detection
# shellcheck source=bench/lib/simulated-fleet.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/simulated-fleet.sh"

# --- controller ---------------------------------------------------------------
start_controller --heartbeat-interval "$HEARTBEAT" --heartbeat-timeout "$HEARTBEAT_TIMEOUT"

# --- simulated hosts: KILL others die at each SIGUSR1 ---------------------------
"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" \
  --members-per-host "$MEMBERS_PER_HOST" --slots "$SLOTS" --threads "$SIM_THREADS" --duration 24h --progress 30s \
  --update-time "$UPDATE_TIME" \
  --kill-hosts "$KILL" --kill-mode "$KILL_MODE" --kill-file "$WORK/kills.jsonl" \
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

# --- the application ------------------------------------------------------------
APP=simfail
cat >"$WORK/manifest.yaml" <<YAML
application: $APP
description: failure-detection benchmark, $MEMBERS members on $HOSTS simulated hosts
clusters:
  - name: web
    members: {min: 1, max: $MEMBERS, desired: $MEMBERS}
    artifact: {version: "1.0.0", command: ["sim"]}
    ports: [main]
    update: {minReadySeconds: 0}
    operational: {autoscaling: "off"}
    placement: {hostLabels: {sim: "1"}, slots: 1}
YAML
api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest.yaml" >"$WORK/apply.json" ||
  die "apply failed: $(cat "$WORK/apply.json")"
active_count() {
  api GET "/members?app=$APP&state=Active" 2>/dev/null | jq '.items | length' 2>/dev/null || echo -1
}
deadline=$((SECONDS + 120 + MEMBERS / 20))
while :; do
  alive "while members started"
  active=$(active_count)
  [[ "$active" -ge "$MEMBERS" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $active of $MEMBERS members Active in time"
  sleep 1
done
note "all $MEMBERS members Active"

rollout_phase() {
  api GET "/applications/$APP/rollout" 2>/dev/null | jq -r '.phase' 2>/dev/null || echo none
}
if [[ "$DURING_ROLLOUT" == 1 ]]; then
  sed -e 's/version: "1.0.0"/version: "2.0.0"/' \
    -e "s/update: {minReadySeconds: 0}/update: {minReadySeconds: 0, method: in-place, maxUnavailable: $ROLLOUT_BATCH, maxSurge: 0}/" \
    "$WORK/manifest.yaml" >"$WORK/manifest-2.yaml"
  api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest-2.yaml" \
    >"$WORK/apply-2.json" || die "the rollout's apply failed: $(cat "$WORK/apply-2.json")"
  deadline=$((SECONDS + 30))
  until [[ $(rollout_phase) == Progressing ]]; do
    [[ $SECONDS -lt $deadline ]] || die "the rollout did not start: $(rollout_phase)"
    sleep 0.5
  done
  note "rollout to 2.0.0 running, $ROLLOUT_BATCH members at a time, $UPDATE_TIME per update"
fi

# Every event after SEQ (paged), as one JSON array.
events_since() { # SEQ
  local since=$1 page all="[]" n
  while :; do
    page=$(api GET "/events?since=$since&limit=10000") || return 1
    all=$(jq -c --argjson a "$all" '$a + .items' <<<"$page")
    n=$(jq '.items | length' <<<"$page")
    since=$(jq '.last' <<<"$page")
    [[ "$n" -lt 10000 ]] && break
  done
  echo "$all"
}
newest_seq() {
  local since=0 page n
  while :; do
    page=$(api GET "/events?since=$since&limit=10000") || return 1
    n=$(jq '.items | length' <<<"$page")
    since=$(jq '.last' <<<"$page")
    [[ "$n" -lt 10000 ]] && break
  done
  echo "$since"
}

ROUND_JSON="[]"
for round in $(seq 1 "$ROUNDS"); do
  sleep 2 # a few heartbeats of a settled fleet
  SEQ=$(newest_seq)
  PHASE=none
  if [[ "$DURING_ROLLOUT" == 1 ]]; then
    PHASE=$(rollout_phase)
    [[ "$PHASE" == Progressing ]] || die "round $round: the rollout is $PHASE, not Progressing, before the kill"
  fi
  before=$(wc -l <"$WORK/kills.jsonl" 2>/dev/null || echo 0)
  kill -USR1 "$SIM_PID"
  deadline=$((SECONDS + 10))
  while [[ $(wc -l <"$WORK/kills.jsonl") -lt $((before + KILL)) ]]; do
    [[ $SECONDS -lt $deadline ]] || die "the simulator did not kill $KILL hosts"
    sleep 0.05
  done
  tail -n "$KILL" "$WORK/kills.jsonl" | jq -s -c . >"$WORK/kills-$round.json"
  # Wait for every killed host to be Unreachable and every one of its members
  # to have a replacement Starting.
  deadline=$((SECONDS + 60 + ${TIMEOUT_S%.*} * 3))
  while :; do
    alive "after the kill"
    events_since "$SEQ" >"$WORK/events-$round.json"
    result=$(jq -c --slurpfile kills "$WORK/kills-$round.json" '
      def ms: (.[0:19] + "Z" | fromdate) * 1000 + (.[20:23] | tonumber);
      ($kills[0] | map({key: .hostId, value: .killedAtMs}) | from_entries) as $killed |
      [ .[] | select(.type == "HostStateChanged" and .to == "Unreachable" and
                     ($killed[.path | ltrimstr("host/")] != null))
        | {host: (.path | ltrimstr("host/")), at: (.time | ms)} ] as $unreachable |
      [ .[] | select(.type == "MemberStateChanged" and .to == "Unreachable") | {member, at: (.time | ms)} ]
        as $lost |
      [ .[] | select(.type == "MemberStateChanged" and .to == "Starting" and .from == "Created")
        | {member, at: (.time | ms)} ] as $started |
      { killed: ($killed | length),
        detection_ms: [ $unreachable[] | .at - $killed[.host] ],
        lost: ($lost | length),
        started: ($started | length),
        # The i-th replacement answers the i-th member lost (one cluster).
        replace_ms: [ range(0; [($lost | length), ($started | length)] | min) as $i
                      | ($started | sort_by(.at))[$i].at - ($lost | sort_by(.at))[$i].at ],
        unreachable: ($unreachable | length) }' "$WORK/events-$round.json")
    unreachable=$(jq '.unreachable' <<<"$result")
    lost=$(jq '.lost' <<<"$result")
    started=$(jq '.started' <<<"$result")
    if [[ "$unreachable" -ge "$KILL" && "$lost" -ge $((KILL * MEMBERS_PER_HOST)) && "$started" -ge "$lost" ]]; then
      break
    fi
    [[ $SECONDS -lt $deadline ]] ||
      die "round $round: $unreachable of $KILL hosts Unreachable, $started replacements for $lost members lost"
    sleep 0.5
  done
  ROUND_JSON=$(jq -c --argjson r "$result" --arg phase "$PHASE" '. + [$r + {rollout_phase: $phase}]' <<<"$ROUND_JSON")
  note "round $round: $(jq -c '{detection_ms: (.detection_ms | max), replace_ms: (.replace_ms | max)}' <<<"$result")"
  # The replacements are Active again before the next round (but for a
  # rollout's batch in flight).
  deadline=$((SECONDS + 60))
  while [[ $(active_count) -lt $((MEMBERS - IN_FLIGHT)) ]]; do
    [[ $SECONDS -lt $deadline ]] || die "the replacements of round $round did not become Active"
    sleep 0.5
  done
done

# --- report ---------------------------------------------------------------------
SUMMARY=$(jq -c --argjson bound "$BOUND_MS" '
  def q(p): sort | .[((length - 1) * p | floor)];
  (map(.detection_ms) | add) as $d | (map(.replace_ms) | add) as $r |
  { hosts_killed: ($d | length), members_replaced: ($r | length),
    detection_ms_min: ($d | min), detection_ms_p50: ($d | q(0.5)), detection_ms_p99: ($d | q(0.99)),
    detection_ms_max: ($d | max), detection_bound_ms: $bound, detection_within_bound: (($d | max) <= $bound),
    replacement_starting_ms_p50: ($r | q(0.5)), replacement_starting_ms_p99: ($r | q(0.99)),
    replacement_starting_ms_max: ($r | max), replacement_within_250ms: (($r | max) <= 250) }' <<<"$ROUND_JSON")
s() { jq -r ".$1" <<<"$SUMMARY"; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "failure-detection (quality.md P3): $HOSTS simulated hosts, $MEMBERS members, $ROUNDS x $KILL hosts killed ($KILL_MODE)$([[ "$DURING_ROLLOUT" == 1 ]] && echo ", during a rollout ($ROLLOUT_BATCH at a time, $UPDATE_TIME each)")"
echo "machine: $MACHINE; build: $BUILD; heartbeat interval $HEARTBEAT, timeout $HEARTBEAT_TIMEOUT"
echo
echo "| figure | value |"
echo "| --- | --- |"
echo "| hosts killed / members replaced | $(s hosts_killed) / $(s members_replaced) |"
echo "| kill -> host Unreachable min / p50 / p99 / max (ms) | $(s detection_ms_min) / $(s detection_ms_p50) / $(s detection_ms_p99) / $(s detection_ms_max) |"
echo "| bound: heartbeat timeout + 1 interval (ms) | $BOUND_MS ($(s detection_within_bound)) |"
echo "| member Unreachable -> replacement Starting p50 / p99 / max (ms) | $(s replacement_starting_ms_p50) / $(s replacement_starting_ms_p99) / $(s replacement_starting_ms_max) |"
echo "| replacement within 250 ms | $(s replacement_within_250ms) |"
echo
jq -c -n --argjson s "$SUMMARY" --argjson rounds "$ROUND_JSON" --arg machine "$MACHINE" --arg build "$BUILD" \
  --argjson hosts "$HOSTS" --argjson members "$MEMBERS" --argjson kill "$KILL" --arg mode "$KILL_MODE" \
  --arg hb "$HEARTBEAT" --arg hbt "$HEARTBEAT_TIMEOUT" --arg lb "$LOAD_BEFORE" --arg la "$LOAD_AFTER" '
  {bench: "failure-detection", machine: $machine, build: $build, hosts: $hosts, members: $members,
   kill_per_round: $kill, rounds: ($rounds | length), kill_mode: $mode, heartbeat_interval: $hb,
   heartbeat_timeout: $hbt, during_rollout: ($rounds | map(.rollout_phase) | unique)} + $s +
  {load_before: $lb, load_after: $la}'
