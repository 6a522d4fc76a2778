#!/usr/bin/env bash
# rollout: the orchestration overhead of a rolling in-place update
# (quality.md P2). One controller, HOSTS simulated hosts
# (tranche-agent-simulator), one cluster of C members whose every update
# takes exactly T; the cluster moves in batches of B (maxUnavailable). The
# figure is the wall time from the apply's answer to the rollout's
# Succeeded, against the ideal ceil(C/B) x T and P2's bound 1.05 x ideal + 1 s.
#
#   bench/rollout/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Defaults: build-bench/src/tranche, and the simulator of the same build
# tree (BUILD/bench/agents/tranche-agent-simulator). Environment:
#   C (1000)               members of the cluster
#   HOSTS (100)            simulated hosts, one WebSocket each
#   B (10%)                maxUnavailable: a percentage of C or a number
#   T (1s)                 the simulator's --update-time (e.g. 1s, 500ms)
#   ROLLOUTS (3)           rollouts measured one after the other on the same
#                          fleet (versions 2.0.0, 3.0.0, ...); medians reported
#   HEALTH (tcp)           tcp: the cluster declares a tcp health check, and the
#                          simulator sends "healthy" with each result, as the
#                          agent does when its first probe passes; none: no
#                          check, the controller learns health from heartbeats
#   HEARTBEAT (2s)         the controller's --heartbeat-interval
#   HEARTBEAT_TIMEOUT      the controller's --heartbeat-timeout (its default: 6s;
#                          it must be longer than HEARTBEAT)
#   SLOTS                  slots per simulated host (default: 2 x ceil(C/HOSTS), at least 10)
#   SIM_THREADS (2)        simulator io threads
#   API_THREADS            the controller's apiThreads setting (its default: 4),
#                          passed in a --config file when set
#   POLL_MS                rollout poll interval (100; 1000 when C >= 10000: the
#                          view reads every member); the end time is the
#                          rollout's own finishedAt, so the poll interval only
#                          decides when the script notices
#   BASELINE_SECONDS (5)   the controller's CPU measured this long with the
#                          fleet settled, before the first rollout
#   ACTIVE_TIMEOUT         deadline for all C members Active (120 s + C/20 s)
#   ROLLOUT_TIMEOUT        deadline per rollout (120 s + 5 x ideal + C/20 s: a
#                          store on a busy disk costs several ms per member)
#   STALL_SECONDS (60)     a rollout whose progress (members updated, Active)
#                          has not moved for this long fails at once, naming
#                          the members that hold it up
#   TIMEOUT                deadline for the whole script (sum of the above + 120 s)
#   CLI_TIMEOUT (20)       seconds any one HTTP call may take
#   KEEP (0)               1: keep the work dir (logs, manifests) and say where
#   PERF                   a file: `perf record` of the controller over the
#                          first rollout, from just before its apply to its
#                          Succeeded, with PERF_OPTS (-F 299 --call-graph
#                          dwarf,16384); it perturbs the figures: for where
#                          the time goes, not for the table
#
# On any exit (also Ctrl-C, or the TIMEOUT watchdog) the simulator and the
# controller are stopped (SIGTERM, SIGKILL after 10 s) and the work dir is
# removed. Exit status 1 when a rollout does not reach Succeeded. Prints a
# table and one JSON line {"bench":"rollout",...}.

set -euo pipefail

die() {
  echo "rollout: $*" >&2
  exit 1
}
note() { echo "rollout: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }

# shellcheck source=bench/lib/binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/binaries.sh"
# shellcheck source=bench/lib/perf.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/perf.sh"
find_binaries "$@"

C=${C:-1000}
HOSTS=${HOSTS:-100}
B=${B:-10%}
T=${T:-1s}
ROLLOUTS=${ROLLOUTS:-3}
HEALTH=${HEALTH:-tcp}
HEARTBEAT=${HEARTBEAT:-2s}
TIMEOUT_ARGS=()
[[ -n "${HEARTBEAT_TIMEOUT:-}" ]] && TIMEOUT_ARGS=(--heartbeat-timeout "$HEARTBEAT_TIMEOUT")
SIM_THREADS=${SIM_THREADS:-2}
BASELINE_SECONDS=${BASELINE_SECONDS:-5}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
[[ "$C" =~ ^[0-9]+$ && "$C" -ge 1 ]] || die "C must be a positive number, got '$C'"
[[ "$HOSTS" =~ ^[0-9]+$ && "$HOSTS" -ge 1 ]] || die "HOSTS must be a positive number, got '$HOSTS'"
[[ "$ROLLOUTS" =~ ^[0-9]+$ && "$ROLLOUTS" -ge 1 ]] || die "ROLLOUTS must be a positive number"
[[ "$HEALTH" == tcp || "$HEALTH" == none ]] || die "HEALTH must be tcp or none, got '$HEALTH'"
SLOTS=${SLOTS:-$((2 * ((C + HOSTS - 1) / HOSTS)))}
[[ "$SLOTS" -ge 10 ]] || SLOTS=10
POLL_MS=${POLL_MS:-$((C >= 10000 ? 1000 : 100))}
POLL=$(calc "$POLL_MS / 1000")

# T in seconds, and the batch size the controller resolves: maxUnavailable
# as a percentage rounds down (at least 1 member is refused by the manifest
# check, so a too small B fails at apply).
case "$T" in
  *ms) T_SECONDS=$(calc "${T%ms} / 1000") ;;
  *s) T_SECONDS=$(calc "${T%s}") ;;
  *) T_SECONDS=$(calc "$T") ;;
esac
if [[ "$B" == *% ]]; then
  B_PERCENT=${B%\%}
  BATCH=$(awk -v c="$C" -v p="$B_PERCENT" 'BEGIN { printf "%d", c * p / 100 }')
  B_YAML="\"$B\""
else
  BATCH=$B
  B_YAML=$B
fi
[[ "$BATCH" -ge 1 ]] || die "B=$B resolves to 0 members of $C: an in-place rollout could not move"
BATCHES=$(((C + BATCH - 1) / BATCH))
IDEAL=$(calc "$BATCHES * $T_SECONDS")
BOUND=$(calc "1.05 * $IDEAL + 1")
ACTIVE_TIMEOUT=${ACTIVE_TIMEOUT:-$((120 + C / 20))}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-$(awk -v i="$IDEAL" -v c="$C" 'BEGIN { printf "%d", 120 + 5 * i + c / 20 }')}
STALL_SECONDS=${STALL_SECONDS:-60}
TIMEOUT=${TIMEOUT:-$((120 + ACTIVE_TIMEOUT + ROLLOUTS * ROLLOUT_TIMEOUT + BASELINE_SECONDS))}
CLK_TCK=$(getconf CLK_TCK)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [[ "$FD_LIMIT" != unlimited && $((HOSTS + 256)) -gt "$FD_LIMIT" ]]; then
  die "HOSTS=$HOSTS needs more than $FD_LIMIT file descriptors per process (ulimit -Hn); raise the hard limit"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tranche-rollout.XXXXXX")
CONTROLLER_PID=""
SIM_PID=""
WATCHDOG_PID=""

stop_process() { # PID NAME
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do # up to 10 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "$2 did not stop on SIGTERM within 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - INT TERM
  if [[ -n "$WATCHDOG_PID" ]]; then
    kill -TERM "$WATCHDOG_PID" 2>/dev/null || true
    wait "$WATCHDOG_PID" 2>/dev/null || true
  fi
  stop_process "$SIM_PID" simulator
  stop_process "$CONTROLLER_PID" controller
  if [[ $status -ne 0 ]]; then
    for f in controller.log simulator.err; do
      if [[ -f "$WORK/$f" ]]; then
        note "last lines of $f:"
        tail -n 15 "$WORK/$f" >&2 || true
      fi
    done
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then
    note "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The whole run is bounded: the watchdog ends the script (and so, through
# the EXIT trap, everything it started) after TIMEOUT seconds.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" &
  sleeper=$!
  wait "$sleeper"
  echo "rollout: the whole run took longer than TIMEOUT=${TIMEOUT} s; stopping" >&2
  kill -TERM $$
) &
WATCHDOG_PID=$!

MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MACHINE="${MODEL:-unknown CPU}, $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
BUILD=unknown
dir=$(dirname "$TRANCHE")
while [[ "$dir" != / ]]; do
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    BUILD=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$dir/CMakeCache.txt")
    grep -q '^TRANCHE_SANITIZE:BOOL=ON' "$dir/CMakeCache.txt" && BUILD="$BUILD (ASan+UBSan)"
    break
  fi
  dir=$(dirname "$dir")
done
FS=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
compilers() { pgrep -c cc1plus 2>/dev/null || true; }
COMPILERS_BEFORE=$(compilers)

cpu_ticks() { # utime + stime of a process, in clock ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
thread_sched() { # "tid cpu_ns runqueue_wait_ns" for every thread of a process (/proc/.../schedstat)
  local t
  for t in /proc/"$1"/task/*; do
    [[ -r "$t/schedstat" ]] || continue
    echo "$(basename "$t") $(cut -d' ' -f1-2 "$t/schedstat")"
  done 2>/dev/null
}
status_kib() { # PID FIELD: a "kB" figure of /proc/PID/status
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
alive() { kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited ($1)"; }

# --- controller ---------------------------------------------------------------
DATA="$WORK/data"
mkdir -p "$DATA"
CONFIG_ARGS=()
if [[ -n "${API_THREADS:-}" ]]; then
  echo "apiThreads: $API_THREADS" >"$WORK/controller.yaml"
  CONFIG_ARGS=(--config "$WORK/controller.yaml")
fi
"$TRANCHE" controller --listen 127.0.0.1:0 --data-dir "$DATA" --heartbeat-interval "$HEARTBEAT" "${TIMEOUT_ARGS[@]}" "${CONFIG_ARGS[@]}" \
  >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!
URL=""
for _ in $(seq 1 200); do # up to 20 s
  kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited during start-up"
  if [[ -s "$DATA/controller.url" && -s "$DATA/admin.token" && -s "$DATA/join.token" ]]; then
    URL=$(head -n 1 "$DATA/controller.url")
    curl -sf -o /dev/null "$URL/readyz" 2>/dev/null && break
  fi
  URL=""
  sleep 0.1
done
[[ -n "$URL" ]] || die "the controller did not become ready within 20 s"
TOKEN=$(head -n 1 "$DATA/admin.token")
api() { # METHOD PATH [curl args...]: the body on stdout; fails on a non-2xx answer
  local method=$1 path=$2
  shift 2
  curl -sS --fail-with-body --max-time "$CLI_TIMEOUT" -X "$method" -H "Authorization: Bearer $TOKEN" "$@" \
    "$URL/api/v1$path"
}

# --- simulated hosts ----------------------------------------------------------
# The update trace (agent_breakdown) from a simulator that writes one; an
# older build's figures just lack that split.
TRACE_ARGS=()
if "$SIMULATOR" --help 2>/dev/null | grep -q -- --update-trace; then
  TRACE_ARGS=(--update-trace "$WORK/updates.trace")
fi
"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" \
  --members-per-host $(((C + HOSTS - 1) / HOSTS)) --slots "$SLOTS" --update-time "$T" \
  --threads "$SIM_THREADS" --duration 24h --progress 10s --stats-file "$WORK/sim-stats.json" \
  "${TRACE_ARGS[@]}" >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
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

# --- the application, version 1 -------------------------------------------------
APP=simroll
manifest() { # VERSION: the manifest, only the artifact version changes
  local health=""
  [[ "$HEALTH" == tcp ]] && health="    health: {tcp: {port: main}, intervalSeconds: 1}"
  cat <<YAML
application: $APP
description: rollout benchmark, $C members on $HOSTS simulated hosts
clusters:
  - name: web
    members: {min: 1, max: $C, desired: $C}
    artifact: {version: "$1", command: ["sim"]}
    ports: [main]
$health
    update:
      method: in-place
      strategy: rolling
      maxUnavailable: $B_YAML
      minReadySeconds: 0
      pauseBetweenBatchesSeconds: 0
      progressDeadlineSeconds: 86400
      maxFailures: 0
      onFailure: pause
    operational: {autoscaling: "off"}
    placement: {hostLabels: {sim: "1"}, slots: 1}
YAML
}
apply() { # VERSION: applies it; the answer's JSON on stdout
  manifest "$1" >"$WORK/manifest-$1.yaml"
  api POST /applications -H "Content-Type: application/yaml" --data-binary "@$WORK/manifest-$1.yaml"
}
active_count() { # members of the app that are Active, or -1 when the controller did not answer
  api GET "/members?app=$APP&state=Active" 2>/dev/null | jq '.items | length' 2>/dev/null || echo -1
}

T_APPLY1=$(now)
apply 1.0.0 >"$WORK/apply-1.json" || die "the first apply failed: $(cat "$WORK/apply-1.json")"
deadline=$((SECONDS + ACTIVE_TIMEOUT))
POLL_ACTIVE=$((C >= 20000 ? 5 : 1))
while :; do
  alive "while members started"
  active=$(active_count)
  [[ "$active" -ge "$C" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $active of $C members Active within ${ACTIVE_TIMEOUT} s"
  note "$active of $C members Active"
  sleep "$POLL_ACTIVE"
done
ACTIVE_SECONDS=$(calc "$(now) - $T_APPLY1")
note "all $C members Active after ${ACTIVE_SECONDS} s"

# The settled fleet's own cost, as a baseline for the rollout's.
sleep 1
b0=$(cpu_ticks "$CONTROLLER_PID")
w0=$(now)
sleep "$BASELINE_SECONDS"
b1=$(cpu_ticks "$CONTROLLER_PID")
w1=$(now)
BASELINE_CPU=$(calc "($b1 - $b0) / $CLK_TCK / ($w1 - $w0) * 100")

# --- the rollouts -----------------------------------------------------------------
epoch_of() { # an RFC 3339 UTC timestamp in epoch seconds (ms)
  date -d "$1" +%s.%N 2>/dev/null || echo ""
}

# The median of a[1..n] (-1 for none), for the awk programs below.
AWK_MEDIAN='
    function median(a, n,   i, j, x, s) {
      if (n == 0) return -1
      for (i = 1; i <= n; i++) s[i] = a[i]
      for (i = 2; i <= n; i++) { x = s[i]; for (j = i - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
      return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }'

# Per batch, from the controller's member log lines (ms timestamps):
# when the batch's first members went Updating, its last ones, the last update
# result (Updating -> Starting), the last Starting -> Active, and the gap to
# the next batch. Updates and Actives are logged one line per group ("N
# members of APP/CLUSTER Active -> Updating: rollout R: in-place update
# ...", "N members of APP/CLUSTER Starting -> Active: ..."), or per member
# for a group of one. Batches do not overlap in a rolling in-place
# rollout: the k-th BATCH updates of the rollout are batch k, and a result or
# an Active belongs to the batch under way (until the next rollout's updates).
# Each batch's start and last result handled, in Unix seconds, go to
# $WORK/batches-ROLLOUT_ID for agent_breakdown.
batch_breakdown() { # ROLLOUT_ID: prints "batches dispatch_med dispatch_max result_med result_span_med activate_med gap_med period_med"
  local day0
  day0=$(date -d "$(sed -n '1s/^\[\([0-9-]*\) .*/\1/p' "$WORK/controller.log")" +%s)
  awk -v id="$1" -v u="$BATCH" -v t="$T_SECONDS" -v day0_epoch="$day0" -v starts="$WORK/batches-$1" "$AWK_MEDIAN"'
    function secs(line,   d, tm, p) {
      # "[YYYY-MM-DD HH:MM:SS.mmm] ..."; a change of date adds a day
      d = substr(line, 2, 10)
      tm = substr(line, 13, 12)
      split(tm, p, ":")
      if (day0 == "") { day0 = d }
      if (d != day0 && d != lastday) { days++; lastday = d }
      return days * 86400 + p[1] * 3600 + p[2] * 60 + p[3]
    }
    / -> Updating: rollout [0-9]+: in-place update / {
      if (index($0, "-> Updating: rollout " id ": in-place update") == 0) { over = nb > 0; next }  # the next rollout
      if (index($0, "] member ") > 0) { n = 1 }
      else if (match($0, /\] [0-9]+ members of /)) { n = substr($0, RSTART + 2, RLENGTH - 13) + 0 }
      else next
      ts = secs($0)
      b = int(n_upd / u); n_upd += n
      if (!(b in first)) { first[b] = ts; nb = b + 1 }
      lastupd[b] = ts
      next
    }
    /\] [0-9]+ members of [^ ]+ Starting -> Active: / {
      if (nb > 0 && !over && ((nb - 1) in result)) active[nb - 1] = secs($0)
      next
    }
    / member [^ ]+ [A-Za-z]+ -> [A-Za-z]+: / {
      if (nb == 0 || over || (i = index($0, "] member ")) == 0) next
      split(substr($0, i + 9), f, " ")
      from = f[2]; to = f[4]; sub(/:$/, "", to)
      b = nb - 1
      if (from == "Updating" && to == "Starting") {
        ts = secs($0); result[b] = ts
        if (!(b in rfirst)) rfirst[b] = ts
      } else if (from == "Starting" && to == "Active" && (b in result)) {
        active[b] = secs($0)
      }
    }
    END {
      if (nb == 0) { print "0 -1 -1 -1 -1 -1 -1 -1"; exit }
      dmax = 0
      for (b = 0; b < nb; b++) {
        printf("%.3f %.3f\n", day0_epoch + first[b], (b in result) ? day0_epoch + result[b] : -1) > starts
        disp[b + 1] = lastupd[b] - first[b]
        if (disp[b + 1] > dmax) dmax = disp[b + 1]
        res[b + 1] = (b in result) ? result[b] - first[b] - t : -1
        rspan[b + 1] = (b in result) ? result[b] - rfirst[b] : -1
        act[b + 1] = (b in active && b in result) ? active[b] - result[b] : -1
        if (b + 1 < nb) { gap[b + 1] = first[b + 1] - active[b]; per[b + 1] = first[b + 1] - first[b] }
      }
      printf "%d %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", nb, median(disp, nb), dmax, median(res, nb),
        median(rspan, nb), median(act, nb), median(gap, nb - 1), median(per, nb - 1)
    }' "$WORK/controller.log"
}

# A stuck rollout: which members hold it up, and what the controller logged
# about them.
diagnose() { # TARGET_REVISION
  local members stuck id
  members=$(api GET "/members?app=$APP" 2>/dev/null || echo '{"items":[]}')
  stuck=$(jq -r --argjson target "$1" '[.items[] | select(.state != "Active" or .revision != $target)] as $s
    | "\($s | length) member(s) not Active on revision \($target), by state and revision: \($s
    | group_by([.state, .revision]) | map("\(.[0].state) r\(.[0].revision) \(length)") | join(", "))"' \
    <<<"$members" 2>/dev/null || echo "members not readable")
  note "$stuck"
  for id in $(jq -r --argjson target "$1" '[.items[] | select(.state != "Active" or .revision != $target)
      | select(.state != "Active")][:3][] | .id' <<<"$members" 2>/dev/null); do
    note "  $id: $(jq -c --arg id "$id" '.items[] | select(.id == $id) | {state, revision, host}' <<<"$members")"
    grep -F "member $id " "$WORK/controller.log" | tail -n 3 | sed 's/^/rollout:     /' >&2 || true
  done
}

declare -a WALLS=() RATIOS=() CPUS=()
RESULTS_JSON="[]"
for ((r = 1; r <= ROLLOUTS; r++)); do
  version="$((r + 1)).0.0"
  alive "before rollout $r"
  c0=$(cpu_ticks "$CONTROLLER_PID")
  s0=$(cpu_ticks "$SIM_PID")
  thread_sched "$CONTROLLER_PID" >"$WORK/threads-$r.0"
  if [[ $r -eq 1 ]]; then
    perf_start "-F 299 --call-graph dwarf,16384"
  fi
  T_REQ=$(now)
  apply "$version" >"$WORK/apply-$version.json" || die "apply of $version failed: $(cat "$WORK/apply-$version.json")"
  T0=$(now)
  APPLY_SECONDS=$(calc "$T0 - $T_REQ")
  rollout_id=$(jq -r '.rollout | if type == "object" then .id else . end' "$WORK/apply-$version.json")
  [[ "$rollout_id" =~ ^[0-9]+$ ]] || die "the apply of $version started no rollout: $(cat "$WORK/apply-$version.json")"
  deadline=$((SECONDS + ROLLOUT_TIMEOUT))
  next_note=$((SECONDS + 5))
  phase=""
  progress=""
  moved=$SECONDS
  while :; do
    alive "during rollout $r"
    view=$(api GET "/applications/$APP/rollout" 2>/dev/null || echo '{}')
    t_seen=$(now)
    # One jq a poll, not three: they were 3.7 % of both CPUs over a rollout
    # of 100,000 members (perf record -a), load on the machine measured.
    IFS='|' read -r view_id phase now_progress < <(jq -r \
      '[(.id // 0 | tostring), (.phase // ""), ([.clusters[]? | {updated, available, total}] | tojson)] | join("|")' \
      <<<"$view" 2>/dev/null || echo '0||')
    if [[ "$view_id" == "$rollout_id" ]]; then
      case "$phase" in
        Succeeded) break ;;
        Progressing | "") ;;
        *) die "rollout $rollout_id ended in phase $phase: $(jq -r '.reason' <<<"$view")" ;;
      esac
    fi
    if [[ "$now_progress" != "$progress" ]]; then
      progress=$now_progress
      moved=$SECONDS
    fi
    if [[ $SECONDS -ge $deadline || $((SECONDS - moved)) -ge $STALL_SECONDS ]]; then
      diagnose "$(jq -r '.targetRevision // 0' <<<"$view")"
      [[ $SECONDS -lt $deadline ]] || die "rollout $rollout_id not Succeeded within ${ROLLOUT_TIMEOUT} s (phase ${phase:-?}: $progress)"
      die "rollout $rollout_id stalled: no progress for ${STALL_SECONDS} s (phase ${phase:-?}: $progress)"
    fi
    if [[ $SECONDS -ge $next_note ]]; then
      note "rollout $r: $(jq -r '[.clusters[]? | "\(.updated)/\(.total) updated, \(.available) Active"] | join("; ")' <<<"$view" 2>/dev/null)"
      next_note=$((SECONDS + 5))
    fi
    sleep "$POLL"
  done
  perf_stop
  c1=$(cpu_ticks "$CONTROLLER_PID")
  s1=$(cpu_ticks "$SIM_PID")
  thread_sched "$CONTROLLER_PID" >"$WORK/threads-$r.1"
  finished=$(epoch_of "$(jq -r '.finishedAt' <<<"$view")")
  [[ -n "$finished" ]] || finished=$t_seen
  WALL=$(calc "$finished - $T0")
  WALL_SEEN=$(calc "$t_seen - $T0")
  ELAPSED_R=$(jq -r '.elapsedSeconds' <<<"$view")
  RATIO=$(calc "$WALL / $IDEAL")
  CPU=$(calc "($c1 - $c0) / $CLK_TCK / ($finished - $T0) * 100")
  SIM_CPU=$(calc "($s1 - $s0) / $CLK_TCK / ($finished - $T0) * 100")
  # The busiest controller thread over the rollout, and how long it waited
  # for a CPU (runnable, not running): a thread near 100 % of one core is
  # serial work (the tick); a large wait says the machine's other load
  # starved it.
  read -r TOP_TID TOP_CPU TOP_WAIT < <(join <(sort "$WORK/threads-$r.0") <(sort "$WORK/threads-$r.1") |
    awk -v w="$(calc "$finished - $T0")" \
      '{ c = ($4 - $2) / 1e7 / w; q = ($5 - $3) / 1e7 / w; if (c >= best) { best = c; wait = q; tid = $1 } }
       END { printf "%s %.1f %.1f\n", tid, best, wait }')
  read -r NB D_MED D_MAX RES_MED RSPAN_MED ACT_MED GAP_MED PER_MED < <(batch_breakdown "$rollout_id")
  HOLDS=$(awk -v w="$WALL" -v b="$BOUND" 'BEGIN { print (w <= b) ? "true" : "false" }')
  note "rollout $r ($version): ${WALL} s (ideal ${IDEAL} s, bound ${BOUND} s, holds: $HOLDS); controller CPU ${CPU} %"
  WALLS+=("$WALL")
  RATIOS+=("$RATIO")
  CPUS+=("$CPU")
  RESULTS_JSON=$(jq -c --argjson r "$r" --arg version "$version" --argjson id "$rollout_id" --argjson wall "$WALL" \
    --argjson seen "$WALL_SEEN" --argjson elapsed "$ELAPSED_R" --argjson ratio "$RATIO" --argjson holds "$HOLDS" \
    --argjson apply "$APPLY_SECONDS" --argjson cpu "$CPU" --argjson sim_cpu "$SIM_CPU" \
    --arg top_tid "$TOP_TID" --argjson top_cpu "$TOP_CPU" --argjson top_wait "$TOP_WAIT" --argjson nb "$NB" --argjson d_med "$D_MED" \
    --argjson d_max "$D_MAX" --argjson res_med "$RES_MED" --argjson rspan_med "$RSPAN_MED" --argjson act_med "$ACT_MED" --argjson gap_med "$GAP_MED" \
    --argjson per_med "$PER_MED" \
    '. + [{rollout: $r, version: $version, id: $id, wall_seconds: $wall, wall_seen_seconds: $seen,
           controller_elapsed_seconds: $elapsed, overhead_ratio: $ratio, bound_holds: $holds,
           apply_seconds: $apply, controller_cpu_percent: $cpu, simulator_cpu_percent: $sim_cpu,
           busiest_thread: $top_tid, busiest_thread_cpu_percent: $top_cpu,
           busiest_thread_runqueue_wait_percent: $top_wait, batches_in_log: $nb,
           batch_dispatch_seconds_median: $d_med, batch_dispatch_seconds_max: $d_max,
           batch_result_after_t_seconds_median: $res_med,
           batch_result_span_seconds_median: $rspan_med, batch_activate_seconds_median: $act_med,
           batch_gap_seconds_median: $gap_med, batch_period_seconds_median: $per_med}]' <<<"$RESULTS_JSON")
done

RSS=$(mib "$(status_kib "$CONTROLLER_PID" VmRSS)")
RSS_PEAK=$(mib "$(status_kib "$CONTROLLER_PID" VmHWM)")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
COMPILERS_AFTER=$(compilers)
UNREACHABLE=$(grep -c 'Ready -> Unreachable' "$WORK/controller.log" || true)
stop_process "$SIM_PID" simulator
SIM_PID=""
SIM_JSON=$(grep '^{"bench"' "$WORK/simulator.out" | tail -n 1 || true)

# Per batch, from the simulator's update trace (each update's command
# arrival and result departure, Unix ms) against the batch starts and last
# results handled of batch_breakdown: when the batch's first and last
# commands reached their agents, when its last result left (less T), and how
# long the controller took to handle that last result once it left.
# Medians over the rollout's batches; an update belongs to the last batch
# started before its command arrived.
agent_breakdown() { # ROLLOUT_ID: prints "first_command_med last_command_med last_result_left_med handled_after_med"
  [[ -s "$WORK/updates.trace" && -s "$WORK/batches-$1" ]] || { echo "-1 -1 -1 -1"; return; }
  awk -v t="$T_SECONDS" "$AWK_MEDIAN"'
    FNR == NR { start[nb] = $1; handled[nb] = $2; nb++; next }
    {
      arrived = $1 / 1000; left = $2 / 1000
      if (arrived < start[0]) next
      for (b = nb - 1; b > 0 && start[b] > arrived; b--) {}
      if (!(b in afirst) || arrived < afirst[b]) afirst[b] = arrived
      if (!(b in alast) || arrived > alast[b]) alast[b] = arrived
      if (!(b in llast) || left > llast[b]) llast[b] = left
    }
    END {
      n = 0
      for (b = 0; b < nb; b++) {
        if (!(b in afirst)) continue
        n++
        f[n] = afirst[b] - start[b]; l[n] = alast[b] - start[b]; r[n] = llast[b] - start[b] - t
        h[n] = handled[b] > 0 ? handled[b] - llast[b] : -1
      }
      printf "%.3f %.3f %.3f %.3f\n", median(f, n), median(l, n), median(r, n), median(h, n)
    }' "$WORK/batches-$1" "$WORK/updates.trace"
}
for ((i = 0; i < ROLLOUTS; i++)); do
  id=$(jq -r ".[$i].id" <<<"$RESULTS_JSON")
  read -r CMD_FIRST CMD_LAST LEFT_LAST HANDLED_AFTER < <(agent_breakdown "$id")
  RESULTS_JSON=$(jq -c --argjson i "$i" --argjson f "$CMD_FIRST" --argjson l "$CMD_LAST" --argjson r "$LEFT_LAST" \
    --argjson h "$HANDLED_AFTER" '.[$i] += {batch_first_command_at_agent_seconds_median: $f,
      batch_last_command_at_agent_seconds_median: $l, batch_last_result_left_after_t_seconds_median: $r,
      batch_last_result_handled_after_left_seconds_median: $h}' <<<"$RESULTS_JSON")
done
sim() { [[ -n "$SIM_JSON" ]] && jq -r ".$1 // \"n/a\"" <<<"$SIM_JSON" || echo n/a; }

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
WALL_MED=$(median "${WALLS[@]}")
RATIO_MED=$(median "${RATIOS[@]}")
CPU_MED=$(median "${CPUS[@]}")
HOLDS_MED=$(awk -v w="$WALL_MED" -v b="$BOUND" 'BEGIN { print (w <= b) ? "true" : "false" }')

cat <<EOF
rollout benchmark (quality.md P2): one controller, $HOSTS simulated hosts, one cluster of $C members
machine: $MACHINE; build: $BUILD; store on $FS; heartbeat interval $HEARTBEAT; health: $HEALTH; apiThreads ${API_THREADS:-default (4)}
load average $LOAD_BEFORE -> $LOAD_AFTER; compilers running $COMPILERS_BEFORE -> $COMPILERS_AFTER

| figure | value |
| --- | --- |
| members C / hosts | $C / $HOSTS |
| batch B (maxUnavailable $B) | $BATCH members |
| update time T | $T_SECONDS s |
| batches ceil(C/B) | $BATCHES |
| ideal = batches x T | $IDEAL s |
| P2 bound 1.05 x ideal + 1 s | $BOUND s |
| wall, apply answer -> Succeeded (median of $ROLLOUTS) | $WALL_MED s |
| overhead ratio wall / ideal (median) | $RATIO_MED |
| P2 bound holds (median) | $HOLDS_MED |
| controller CPU during the rollout, % of one core (median) | $CPU_MED (settled fleet: $BASELINE_CPU) |
| controller RSS at the end, peak (MiB) | $RSS, $RSS_PEAK |
| all members Active after the first apply (s) | $ACTIVE_SECONDS |
| simulator: updates done, late against T p99 / max (ms) | $(sim updates_done), $(sim update_lag_ms_p99) / $(sim update_lag_ms_max) |
| simulator: duplicate update ids / refused / reconnects | $(sim update_duplicates) / $(sim updates_refused) / $(sim reconnects) |
| hosts marked Unreachable | $UNREACHABLE |

| rollout | wall (s) | seen by poll (s) | controller elapsed (s) | ratio | holds | apply (s) | CPU % | busiest thread: CPU % / waiting for a CPU % | batch: dispatch med/max (s) | commands at agents first/last med (s) | last result leaves - T / handled after it left med (s) | result - T med (s) | results first to last med (s) | to Active med (s) | gap to next med (s) | period med (s) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
EOF
jq -r '.[] | "| \(.rollout) (\(.version)) | \(.wall_seconds) | \(.wall_seen_seconds) | \(.controller_elapsed_seconds * 1000 | round / 1000) | \(.overhead_ratio) | \(.bound_holds) | \(.apply_seconds) | \(.controller_cpu_percent) | \(.busiest_thread_cpu_percent) / \(.busiest_thread_runqueue_wait_percent) | \(.batch_dispatch_seconds_median) / \(.batch_dispatch_seconds_max) | \(.batch_first_command_at_agent_seconds_median) / \(.batch_last_command_at_agent_seconds_median) | \(.batch_last_result_left_after_t_seconds_median) / \(.batch_last_result_handled_after_left_seconds_median) | \(.batch_result_after_t_seconds_median) | \(.batch_result_span_seconds_median) | \(.batch_activate_seconds_median) | \(.batch_gap_seconds_median) | \(.batch_period_seconds_median) |"' <<<"$RESULTS_JSON"
echo
jq -cn --arg machine "$MACHINE" --arg build "$BUILD" --arg fs "$FS" --argjson c "$C" --argjson hosts "$HOSTS" \
  --arg b "$B" --argjson batch "$BATCH" --argjson t "$T_SECONDS" --argjson batches "$BATCHES" \
  --argjson ideal "$IDEAL" --argjson bound "$BOUND" --argjson wall "$WALL_MED" --argjson ratio "$RATIO_MED" \
  --argjson holds "$HOLDS_MED" --argjson cpu "$CPU_MED" --argjson baseline "$BASELINE_CPU" --argjson rss "$RSS" \
  --argjson rss_peak "$RSS_PEAK" --argjson active "$ACTIVE_SECONDS" --arg health "$HEALTH" --arg hb "$HEARTBEAT" \
  --arg api_threads "${API_THREADS:-}" \
  --argjson rollouts "$RESULTS_JSON" --arg updates_done "$(sim updates_done)" \
  --arg update_lag_max "$(sim update_lag_ms_max)" --arg duplicates "$(sim update_duplicates)" \
  --arg reconnects "$(sim reconnects)" --argjson unreachable "$UNREACHABLE" \
  --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
  --argjson cc_before "${COMPILERS_BEFORE:-0}" --argjson cc_after "${COMPILERS_AFTER:-0}" \
  '{bench: "rollout", members: $c, hosts: $hosts, b: $b, batch: $batch, t_seconds: $t, batches: $batches,
    ideal_seconds: $ideal, wall_seconds: $wall, overhead_ratio: $ratio, bound_seconds: $bound, bound_holds: $holds,
    controller_cpu_percent: $cpu, controller_cpu_percent_settled: $baseline, rss_mib: $rss, rss_peak_mib: $rss_peak,
    machine: $machine, build: $build, store_fs: $fs, health: $health, heartbeat_interval: $hb,
    api_threads: (if $api_threads == "" then null else ($api_threads | tonumber) end),
    active_seconds: $active, rollouts: $rollouts,
    simulator_updates_done: ($updates_done | tonumber? // null),
    simulator_update_lag_ms_max: ($update_lag_max | tonumber? // null),
    simulator_update_duplicates: ($duplicates | tonumber? // null),
    simulator_reconnects: ($reconnects | tonumber? // null), hosts_unreachable: $unreachable,
    loadavg_before: $load_before, loadavg_after: $load_after, compilers_before: $cc_before,
    compilers_after: $cc_after}'
