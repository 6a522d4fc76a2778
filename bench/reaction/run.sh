#!/usr/bin/env bash
# reaction: how soon the fleet acts on an operator's write. An application
# of MEMBERS members (in-place updates, maxUnavailable 1) runs on as many
# simulated hosts; it is applied again with a new version ROUNDS times, and
# each time the figure is the ms from the apply's answer (as curl returns)
# to the first "Active -> Updating" in the controller's log (its local-time
# ms stamps; same machine, same clock). Negative: the fleet acted before
# the answer reached the client.
#
#   bench/reaction/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Environment: MEMBERS (10), ROUNDS (10), KEEP (0: 1 keeps the work dir).
# Prints a table and one JSON line {"bench":"reaction",...}.

set -euo pipefail

die() {
  echo "reaction: $*" >&2
  exit 1
}
note() { echo "reaction: $*" >&2; }

# shellcheck source=bench/lib/binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/binaries.sh"
find_binaries "$@"
MEMBERS=${MEMBERS:-10}
ROUNDS=${ROUNDS:-10}
for v in MEMBERS ROUNDS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive number, got '${!v}'"
done
TIMEOUT=$((60 + ROUNDS * (10 + MEMBERS)))
CLI_TIMEOUT=20

BENCH=reaction
# shellcheck source=bench/lib/simulated-fleet.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/simulated-fleet.sh"

start_controller
"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$MEMBERS" --members-per-host 1 \
  --slots 2 --update-time 0.2s --duration 1h >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
SIM_PID=$!

wait_for() { # WHAT COMMAND...: polls the command every 0.1 s for 30 s
  local what=$1
  shift
  for _ in $(seq 1 300); do
    "$@" && return 0
    alive "$what"
    sleep 0.1
  done
  die "$what: not within 30 s"
}
hosts_ready() { [[ $(api GET /hosts | jq '[.items[] | select(.state == "Ready")] | length') -ge "$MEMBERS" ]]; }
all_active() { [[ $(api GET "/members?app=react&state=Active" | jq '.items | length') -ge "$MEMBERS" ]]; }
rollout_done() { [[ $(api GET /applications/react/rollout | jq -r .phase) == Succeeded ]]; }
manifest() { # VERSION
  cat <<YAML
application: react
clusters:
  - name: web
    members: {desired: $MEMBERS}
    artifact: {version: "$1", command: ["sim"]}
    placement: {hostLabels: {sim: "1"}, slots: 1}
    update: {method: in-place, maxUnavailable: 1, minReadySeconds: 0}
YAML
}
apply() { manifest "$1" | api POST /applications -H "Content-Type: application/yaml" --data-binary @- >/dev/null; }
updating_lines() { grep -c -- '-> Updating' "$WORK/controller.log" || true; }

wait_for "hosts connecting" hosts_ready
apply 0
wait_for "members starting" all_active

REACTIONS=()
for ((i = 1; i <= ROUNDS; i++)); do
  before=$(updating_lines)
  apply "$i"
  answered=$(date +%s%3N)
  wait_for "round $i's first update" eval '[[ $(updating_lines) -gt $before ]]'
  stamp=$(grep -- '-> Updating' "$WORK/controller.log" | sed -n "$((before + 1))p" | sed -E 's/^\[([^]]+)\].*/\1/')
  REACTIONS+=($(($(date -d "$stamp" +%s%3N) - answered)))
  wait_for "round $i's rollout" rollout_done
done

sorted=$(printf '%s\n' "${REACTIONS[@]}" | sort -n)
median=$(awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$sorted")
max=$(tail -n 1 <<<"$sorted")
echo "reaction: $ROUNDS applies of an application of $MEMBERS members on as many simulated hosts"
echo "machine: $MACHINE; build: $BUILD"
echo
echo "| figure | value |"
echo "| --- | --- |"
echo "| apply's answer -> first member Updating, each round (ms) | ${REACTIONS[*]} |"
echo "| median / max (ms) | $median / $max |"
echo
jq -cn --arg machine "$MACHINE" --arg build "$BUILD" --argjson members "$MEMBERS" \
  --argjson median "$median" --argjson max "$max" --argjson each "[$(IFS=,; echo "${REACTIONS[*]}")]" \
  '{bench: "reaction", machine: $machine, build: $build, members: $members, reaction_ms: $each,
    reaction_ms_median: $median, reaction_ms_max: $max}'
