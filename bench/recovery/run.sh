#!/usr/bin/env bash
# recovery: quality.md P5. The controller is SIGKILLed while a rolling
# in-place update of M members runs on HOSTS simulated hosts, and restarted
# at once in place (same port, same data dir), as a supervisor would. P5:
# serving and resuming the rollout < 2 s after the restart; every agent
# reconciled < 30 s with no host falsely Unreachable; and (issue 11) the
# rollout finishes with every member updated exactly once.
#
#   bench/recovery/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Defaults: build-bench/src/tranche and the simulator of the same build tree.
# Environment:
#   HOSTS (10000), MEMBERS_PER_HOST (10), CLUSTER_SIZE (10000)
#   B (10%)                 maxUnavailable of each cluster: the batch
#   T (1s)                  how long each simulated update takes
#   KILL_AT (30)            SIGKILL once this % of the members are updated
#   HEARTBEAT (2s)          the controller's --heartbeat-interval (timeout: its default, 3 x)
#   SIM_THREADS (2)         simulator io threads
#   ACTIVE_TIMEOUT          deadline for every member Active (120 s + M/20 s)
#   ROLLOUT_TIMEOUT         deadline for the rollout after the restart (300 s + M/50 s)
#   KEEP (0)                1: keep the work dir and say where
#
# "Resuming" is the restarted controller's first member sent Updating (from
# its log); the count of members reported updated moves on later, once the
# agents have reconnected and reported what was in flight.
# "Reconciled" is every host connected and Ready again after the restart
# (each host's hello carries its members, which the controller reconciles
# before it answers with its welcome). Updated exactly once: the simulator
# counts the update commands it acted on by command id; a command resent
# under the same id after the restart is counted apart (duplicates), never
# acted on twice. Prints a table and one JSON line {"bench":"recovery",...}.

set -euo pipefail

die() {
  echo "recovery: $*" >&2
  exit 1
}
note() { echo "recovery: $*" >&2; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
wall_ms() { date +%s%3N; }

# shellcheck source=bench/lib/binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/binaries.sh"
find_binaries "$@"

HOSTS=${HOSTS:-10000}
MEMBERS_PER_HOST=${MEMBERS_PER_HOST:-10}
CLUSTER_SIZE=${CLUSTER_SIZE:-10000}
B=${B:-10%}
T=${T:-1s}
KILL_AT=${KILL_AT:-30}
HEARTBEAT=${HEARTBEAT:-2s}
SIM_THREADS=${SIM_THREADS:-2}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
for v in HOSTS MEMBERS_PER_HOST CLUSTER_SIZE KILL_AT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive number, got '${!v}'"
done
[[ "$KILL_AT" -lt 100 ]] || die "KILL_AT must be below 100 (a % of the members updated)"
M=$((HOSTS * MEMBERS_PER_HOST))
CLUSTERS=$(((M + CLUSTER_SIZE - 1) / CLUSTER_SIZE))
ACTIVE_TIMEOUT=${ACTIVE_TIMEOUT:-$((120 + M / 20))}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-$((300 + M / 50))}
TIMEOUT=${TIMEOUT:-$((300 + 2 * ACTIVE_TIMEOUT + ROLLOUT_TIMEOUT))}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH=recovery
# shellcheck source=bench/lib/simulated-fleet.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/simulated-fleet.sh"

start_controller --heartbeat-interval "$HEARTBEAT"
PORT=${URL##*:}

"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" \
  --members-per-host "$MEMBERS_PER_HOST" --slots $((MEMBERS_PER_HOST + 10)) --threads "$SIM_THREADS" \
  --update-time "$T" --duration 24h --progress 30s --stats-file "$WORK/sim-stats.json" \
  >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
SIM_PID=$!
# Hosts connected and Ready, or -1 when the controller did not answer. Asked
# twice a second while the restarted controller reconciles, so counted with
# grep, not jq: parsing 10,000 hosts (2.2 MB) costs jq ~90 ms of CPU a call,
# ~10 % of the machine in the seconds P5 measures; grep needs a quarter of
# that. A count of each is enough: when both reach HOSTS, every host is both.
ready_hosts() {
  local body connected ready
  body=$(api GET /hosts 2>/dev/null) || {
    echo -1
    return
  }
  connected=$(grep -o '"connected":true' <<<"$body" | wc -l)
  ready=$(grep -o '"state":"Ready"' <<<"$body" | wc -l)
  echo $((connected < ready ? connected : ready))
}
deadline=$((SECONDS + 30 + 3 * HOSTS / 500))
until [[ $(ready_hosts) -ge "$HOSTS" ]]; do
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited"
  alive "while hosts connected"
  [[ $SECONDS -lt $deadline ]] || die "not every host connected in time"
  sleep 1
done
note "$HOSTS hosts connected"

APP=simrec
manifest() { # VERSION
  echo "application: $APP"
  echo "description: recovery benchmark, $M members on $HOSTS simulated hosts"
  echo "clusters:"
  for ((c = 0; c < CLUSTERS; c++)); do
    local n=$((c == CLUSTERS - 1 ? M - c * CLUSTER_SIZE : CLUSTER_SIZE))
    cat <<YAML
  - name: c$c
    members: {min: 1, max: $n, desired: $n}
    artifact: {version: "$1", command: ["sim"]}
    ports: [main]
    update: {method: in-place, strategy: rolling, maxUnavailable: "$B", minReadySeconds: 0,
             progressDeadlineSeconds: 86400, maxFailures: 0, onFailure: pause}
    operational: {autoscaling: "off"}
    placement: {hostLabels: {sim: "1"}, slots: 1}
YAML
  done
}
apply() { # VERSION
  manifest "$1" >"$WORK/manifest-$1.yaml"
  api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest-$1.yaml" \
    >"$WORK/apply-$1.json" || die "the apply of $1 failed: $(cat "$WORK/apply-$1.json")"
}
apply 1.0.0
deadline=$((SECONDS + ACTIVE_TIMEOUT))
while :; do
  alive "while members started"
  active=$(api GET "/members?app=$APP&state=Active" 2>/dev/null | jq '.items | length' 2>/dev/null || echo -1)
  [[ "$active" -ge "$M" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $active of $M members Active within ${ACTIVE_TIMEOUT} s"
  note "$active of $M members Active"
  sleep 5
done
note "all $M members Active"
sleep 5 # a few quiet heartbeats

# --- the rollout, and the kill in its middle ----------------------------------
updated() { # members on the target revision, from the rollout view; -1 when no answer
  api GET "/applications/$APP/rollout" 2>/dev/null | jq '[.clusters[]?.updated] | add // 0' 2>/dev/null || echo -1
}
apply 2.0.0
ROLLOUT_ID=$(jq -r '.rollout | if type == "object" then .id else . end' "$WORK/apply-2.0.0.json")
[[ "$ROLLOUT_ID" =~ ^[0-9]+$ ]] || die "the apply of 2.0.0 started no rollout: $(cat "$WORK/apply-2.0.0.json")"
KILL_WHEN=$((M * KILL_AT / 100))
while :; do
  alive "during the rollout"
  u=$(updated)
  [[ "$u" -ge "$KILL_WHEN" ]] && break
  sleep 0.2
done
UPDATED_AT_KILL=$u
UPDATES_AT_KILL=$(jq '.updates' "$WORK/sim-stats.json")
kill -KILL "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null || true
T_KILL=$(wall_ms)
mv "$WORK/controller.log" "$WORK/controller-killed.log"
"$TRANCHE" controller --listen "127.0.0.1:$PORT" --data-dir "$DATA" --heartbeat-interval "$HEARTBEAT" \
  >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!
note "killed with $UPDATED_AT_KILL of $M members updated; restarted on port $PORT"

# Serving: the first answer of the application's rollout view.
SERVING_MS=null
for _ in $(seq 1 600); do
  alive "while it started again"
  if api GET "/applications/$APP/rollout" >/dev/null 2>&1; then
    SERVING_MS=$(($(wall_ms) - T_KILL))
    break
  fi
  sleep 0.05
done
[[ "$SERVING_MS" != null ]] || die "the restarted controller did not answer within 30 s"
note "serving ${SERVING_MS} ms after the kill"

# A member reported updated after the restart (the view's count moves on).
RESUMED_MS=null
RECONCILED_MS=null
deadline=$((SECONDS + ROLLOUT_TIMEOUT))
PHASE=""
while [[ $SECONDS -lt $deadline ]]; do
  alive "while the rollout resumed"
  view=$(api GET "/applications/$APP/rollout" 2>/dev/null || echo '{}')
  PHASE=$(jq -r '.phase // ""' <<<"$view")
  u=$(jq '[.clusters[]?.updated] | add // 0' <<<"$view")
  if [[ "$RESUMED_MS" == null && "$u" -gt "$UPDATED_AT_KILL" ]]; then
    RESUMED_MS=$(($(wall_ms) - T_KILL))
    note "the rollout moved on ${RESUMED_MS} ms after the kill ($u updated)"
  fi
  if [[ "$RECONCILED_MS" == null && $(ready_hosts) -ge "$HOSTS" ]]; then
    RECONCILED_MS=$(($(wall_ms) - T_KILL))
    note "every host connected and Ready ${RECONCILED_MS} ms after the kill"
  fi
  [[ "$PHASE" == Succeeded && "$RECONCILED_MS" != null ]] && break
  [[ "$PHASE" =~ ^(Failed|Aborted|Paused|Superseded)$ ]] && die "the rollout ended $PHASE: $(jq -r .reason <<<"$view")"
  sleep 0.5
done
[[ "$PHASE" == Succeeded ]] || die "the rollout was not Succeeded within ${ROLLOUT_TIMEOUT} s of the restart (phase $PHASE)"
ROLLOUT_MS=$(($(wall_ms) - T_KILL))
# Driving again: the restarted controller's first member sent Updating (its
# log's local-time ms stamps; the updated count above moves only once agents
# have reconnected and reported the updates that were in flight).
first_updating=$(grep -m 1 -F -- '-> Updating' "$WORK/controller.log" || true)
DRIVING_MS=null
if [[ -n "$first_updating" ]]; then
  DRIVING_MS=$(($(date -d "$(sed -E 's/^\[([^]]+)\].*/\1/' <<<"$first_updating")" +%s%3N) - T_KILL))
fi
sleep 1.2 # the stats file is rewritten every second
S=$(cat "$WORK/sim-stats.json")
UPDATES=$(jq .updates <<<"$S")
DUPLICATES=$(jq .update_duplicates <<<"$S")
REFUSED=$(jq .updates_refused <<<"$S")
UNREACHABLE_HOSTS=$(grep -c -E 'host .* -> Unreachable' "$WORK/controller.log" || true)
ONCE=$([[ "$UPDATES" -eq "$M" ]] && echo true || echo false)
within() { [[ "$1" != null && "$1" -le "$2" ]] && echo yes || echo no; }

echo "recovery (quality.md P5): SIGKILL at $UPDATED_AT_KILL of $M members updated ($CLUSTERS clusters, maxUnavailable $B, T=$T), $HOSTS simulated hosts"
echo "machine: $MACHINE; build: $BUILD"
echo
echo "| figure | value | P5 |"
echo "| --- | --- | --- |"
echo "| API answers after the kill (ms) | $SERVING_MS | < 2000: $(within "$SERVING_MS" 2000) |"
echo "| first member sent Updating by the restarted controller, after the kill (ms) | $DRIVING_MS | < 2000: $(within "$DRIVING_MS" 2000) |"
echo "| a member more reported updated, after the kill (ms) | $RESUMED_MS | – |"
echo "| every host connected and Ready after the kill (ms) | $RECONCILED_MS | < 30000: $(within "$RECONCILED_MS" 30000) |"
echo "| hosts found Unreachable by the restarted controller | $UNREACHABLE_HOSTS | 0 |"
echo "| rollout Succeeded after the kill (s) | $(calc "$ROLLOUT_MS / 1000") | – |"
echo "| updates acted on / members (resent ids, refused) | $UPDATES / $M ($DUPLICATES, $REFUSED) | exactly once: $ONCE |"
echo
jq -c -n --arg machine "$MACHINE" --arg build "$BUILD" --argjson m "$M" --argjson hosts "$HOSTS" \
  --argjson clusters "$CLUSTERS" --arg b "$B" --arg t "$T" --argjson at "$UPDATED_AT_KILL" \
  --argjson at_sim "$UPDATES_AT_KILL" --argjson serving "$SERVING_MS" --argjson resumed "$RESUMED_MS" \
  --argjson driving "$DRIVING_MS" \
  --argjson reconciled "$RECONCILED_MS" --argjson unreachable "$UNREACHABLE_HOSTS" --argjson rollout "$ROLLOUT_MS" \
  --argjson updates "$UPDATES" --argjson dup "$DUPLICATES" --argjson refused "$REFUSED" --argjson once "$ONCE" \
  --arg lb "$LOAD_BEFORE" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{bench: "recovery", machine: $machine, build: $build, members: $m, hosts: $hosts, clusters: $clusters,
    max_unavailable: $b, update_time: $t, updated_at_kill: $at, sim_updates_at_kill: $at_sim,
    serving_ms: $serving, driving_ms: $driving, resumed_ms: $resumed, reconciled_ms: $reconciled, hosts_unreachable: $unreachable,
    rollout_done_ms: $rollout, updates: $updates, update_duplicates: $dup, updates_refused: $refused,
    updated_exactly_once: $once, load_before: $lb, load_after: $la}'
