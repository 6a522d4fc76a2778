#!/usr/bin/env bash
# api-rate: quality.md P4 (API under load). The p99 of `GET
# /applications/{app}` and `GET /members?app=&cluster=` at a FIXED request
# rate while HOSTS simulated hosts heartbeat, measured by tranche-api-rate
# (open loop: each request's latency runs from when it was due, so a slow
# answer cannot lower the rate and hide itself as wrk's closed loop does).
# One controller, HOSTS simulated hosts (tranche-agent-simulator) holding
# MEMBERS_PER_HOST members each, in clusters of CLUSTER_SIZE; the requests
# alternate between the application and one cluster's members.
#
#   bench/api-rate/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator [PATH-TO-tranche-api-rate]]]
#
# Defaults: build-bench/src/tranche and the simulator and generator of the
# same build tree. Environment:
#   HOSTS (10000), MEMBERS_PER_HOST (10), CLUSTER_SIZE (100)
#   RATE (2000)             requests per second, both paths together
#   DURATION (30s), WARMUP (5s)   of the load; the warm-up is not counted
#   CONNECTIONS (64)        the generator's connections at most
#   MEMBERS_LIMIT           when set, the members request asks for one page
#                           of that many (`&limit=N`); unset: the whole cluster
#   ACCEPT_ENCODING (gzip)  the requests' Accept-Encoding, as browsers and
#                           `curl --compressed` send it; empty: none (every
#                           answer uncompressed, as before the controller
#                           compressed large views)
#   HEARTBEAT (2s)          the controller's --heartbeat-interval
#   SIM_THREADS (2)         simulator io threads
#   ACTIVE_TIMEOUT          deadline for every member Active (120 s + members/20 s)
#   KEEP (0)                1: keep the work dir and say where
#
# Prints a table and one JSON line {"bench":"api-rate",...}.

set -euo pipefail

die() {
  echo "api-rate: $*" >&2
  exit 1
}
note() { echo "api-rate: $*" >&2; }

TRANCHE=${1:-build-bench/src/tranche}
[[ -x "$TRANCHE" ]] || die "no executable tranche binary at $TRANCHE (build it, or pass its path)"
TRANCHE=$(cd "$(dirname "$TRANCHE")" && pwd)/$(basename "$TRANCHE")
BUILD_DIR=$(dirname "$(dirname "$TRANCHE")")
SIMULATOR=${2:-$BUILD_DIR/bench/agents/tranche-agent-simulator}
GENERATOR=${3:-$BUILD_DIR/bench/api-rate/tranche-api-rate}
[[ -x "$SIMULATOR" ]] || die "no executable simulator at $SIMULATOR (build tranche-agent-simulator, or pass its path)"
[[ -x "$GENERATOR" ]] || die "no executable generator at $GENERATOR (build tranche-api-rate, or pass its path)"
command -v jq >/dev/null || die "jq is not installed"
command -v curl >/dev/null || die "curl is not installed"

HOSTS=${HOSTS:-10000}
MEMBERS_PER_HOST=${MEMBERS_PER_HOST:-10}
CLUSTER_SIZE=${CLUSTER_SIZE:-100}
RATE=${RATE:-2000}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
CONNECTIONS=${CONNECTIONS:-64}
ACCEPT_ENCODING=${ACCEPT_ENCODING-gzip}
HEARTBEAT=${HEARTBEAT:-2s}
SIM_THREADS=${SIM_THREADS:-2}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
for v in HOSTS MEMBERS_PER_HOST CLUSTER_SIZE RATE; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive number, got '${!v}'"
done
M=$((HOSTS * MEMBERS_PER_HOST))
CLUSTERS=$(((M + CLUSTER_SIZE - 1) / CLUSTER_SIZE))
ACTIVE_TIMEOUT=${ACTIVE_TIMEOUT:-$((120 + M / 20))}
TIMEOUT=${TIMEOUT:-$((300 + ACTIVE_TIMEOUT))}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH=api-rate
# shellcheck source=bench/lib/simulated-fleet.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/simulated-fleet.sh"

start_controller --heartbeat-interval "$HEARTBEAT"

"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" \
  --members-per-host "$MEMBERS_PER_HOST" --slots $((MEMBERS_PER_HOST + 10)) --threads "$SIM_THREADS" \
  --duration 24h --progress 30s >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
SIM_PID=$!
deadline=$((SECONDS + 30 + 3 * HOSTS / 500))
while :; do
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited"
  alive "while hosts connected"
  connected=$(api GET /hosts 2>/dev/null | jq '[.items[] | select(.connected and .state == "Ready")] | length' \
    2>/dev/null || echo 0)
  [[ "$connected" -ge "$HOSTS" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $connected of $HOSTS hosts connected in time"
  sleep 1
done
note "$HOSTS hosts connected"

APP=simapi
{
  echo "application: $APP"
  echo "description: API-under-load benchmark, $M members on $HOSTS simulated hosts"
  echo "clusters:"
  for ((c = 0; c < CLUSTERS; c++)); do
    n=$((c == CLUSTERS - 1 ? M - c * CLUSTER_SIZE : CLUSTER_SIZE))
    cat <<YAML
  - name: c$c
    members: {min: 1, max: $n, desired: $n}
    artifact: {version: "1.0.0", command: ["sim"]}
    ports: [main]
    update: {minReadySeconds: 0}
    operational: {autoscaling: "off"}
    placement: {hostLabels: {sim: "1"}, slots: 1}
YAML
  done
} >"$WORK/manifest.yaml"
api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest.yaml" >"$WORK/apply.json" ||
  die "apply failed: $(cat "$WORK/apply.json")"
deadline=$((SECONDS + ACTIVE_TIMEOUT))
while :; do
  alive "while members started"
  active=$(api GET "/members?app=$APP&state=Active" 2>/dev/null | jq '.items | length' 2>/dev/null || echo -1)
  [[ "$active" -ge "$M" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $active of $M members Active within ${ACTIVE_TIMEOUT} s"
  note "$active of $M members Active"
  sleep 5
done
note "all $M members Active; steady heartbeats for 10 s before the load"
sleep 10 # a quiet period: the load starts on a settled fleet

CPU_BEFORE=$(awk '{print $14 + $15}' "/proc/$CONTROLLER_PID/stat")
T0=$SECONDS
"$GENERATOR" --url "$URL" --token-file "$DATA/admin.token" --rate "$RATE" --duration "$DURATION" \
  --warmup "$WARMUP" --connections "$CONNECTIONS" ${ACCEPT_ENCODING:+--accept-encoding "$ACCEPT_ENCODING"} \
  --path "/api/v1/applications/$APP" --path "/api/v1/members?app=$APP&cluster=c0${MEMBERS_LIMIT:+&limit=$MEMBERS_LIMIT}" \
  >"$WORK/rate.json" ||
  die "the generator failed"
ELAPSED=$((SECONDS - T0))
CPU_AFTER=$(awk '{print $14 + $15}' "/proc/$CONTROLLER_PID/stat")
alive "during the load"
CPU_PCT=$(awk -v t="$((CPU_AFTER - CPU_BEFORE))" -v hz="$(getconf CLK_TCK)" -v s="$ELAPSED" \
  'BEGIN { printf "%.1f", (s > 0 ? 100 * t / hz / s : 0) }')
UNREACHABLE_HOSTS=$(grep -c -E 'host .* -> Unreachable' "$WORK/controller.log" || true)
R=$(cat "$WORK/rate.json")
p() { jq -r ".paths[$1].$2" <<<"$R"; }
o() { jq -r ".overall.$1" <<<"$R"; }

echo "api-rate (quality.md P4): $RATE req/s for $DURATION (first $WARMUP not counted), $M members on $HOSTS simulated hosts heartbeating every $HEARTBEAT"
echo "machine: $MACHINE; build: $BUILD"
echo
echo "Accept-Encoding: ${ACCEPT_ENCODING:-(none)}"
echo
echo "| path | answers | not 200 | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | body bytes, mean | gzipped |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for i in 0 1; do
  echo "| $(p $i path) | $(p $i count) | $(jq -c ".paths[$i].failures" <<<"$R") | $(p $i p50_ms) | $(p $i p99_ms) | $(p $i p999_ms) | $(p $i max_ms) | $(p $i body_bytes_mean) | $(p $i gzipped) |"
done
echo "| both | $(o count) | $(jq -c .overall.failures <<<"$R") | $(o p50_ms) | $(o p99_ms) | $(o p999_ms) | $(o max_ms) | $(o body_bytes_mean) | $(o gzipped) |"
echo
echo "controller CPU during the load: $CPU_PCT % of one core; hosts found Unreachable: $UNREACHABLE_HOSTS"
jq -c --arg machine "$MACHINE" --arg build "$BUILD" --argjson m "$M" --argjson hosts "$HOSTS" \
  --argjson cpu "$CPU_PCT" --argjson unreachable "$UNREACHABLE_HOSTS" --arg lb "$LOAD_BEFORE" \
  --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{bench: "api-rate", machine: $machine, build: $build, members: $m, hosts: $hosts} + del(.bench) +
   {p99_under_25ms: (.overall.p99_ms < 25), controller_cpu_percent: $cpu, hosts_unreachable: $unreachable,
    load_before: $lb, load_after: $la}' <<<"$R"
