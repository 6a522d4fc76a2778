#!/usr/bin/env bash
# agents: one controller under a simulated fleet (quality.md P0, P1). N
# hosts, each one real WebSocket from tranche-agent-simulator, heartbeating
# every 2 s; an application of N*M members placed on them; then, over a
# steady-state window, the controller's CPU (% of one core) and RSS, the
# heartbeats it handled per second and how long their handling took (its
# /metrics), its store commits, and how long placing all members took.
#
#   bench/agents/run.sh [PATH-TO-tranche [PATH-TO-tranche-agent-simulator]]
#
# Defaults: build/src/tranche, and the simulator of the same build tree
# (BUILD/bench/agents/tranche-agent-simulator). Environment:
#   HOSTS (100)            simulated hosts, one WebSocket each
#   MEMBERS_PER_HOST (10)  M: the application has HOSTS*M members; 0: no
#                          application, only connections and heartbeats
#   CLUSTER_SIZE (1000)    members per cluster; clusters = ceil(HOSTS*M / CLUSTER_SIZE)
#   CONNECT_RATE (500/s)   simulator's new connections per second
#   SIM_THREADS (2)        simulator io threads
#   API_THREADS            the controller's apiThreads setting (its default: 4),
#                          passed in a --config file when set
#   HEARTBEAT_INTERVAL (2s) the controller's --heartbeat-interval, which agents
#                          follow: heartbeats/s = HOSTS / interval; a whole
#                          number and a unit (950ms, not 0.95s)
#   SOURCE_ADDRESSES       the simulator's --source-addresses (host i connects
#                          from 127.0.0.(2 + i % K)); default: one address per
#                          20,000 hosts, 0 (the kernel's choice) up to 20,000
#   STEADY_SECONDS (20)    the steady-state window (CPU, heartbeats, commits)
#   CONNECT_TIMEOUT        deadline for all hosts connected (30 s + 3 x N/rate)
#   PLACE_TIMEOUT (240)    deadline for all members Active, in seconds
#   STALL_SECONDS (60)     give up waiting when all members are placed but the
#                          Active count has not moved for this long
#   CLI_TIMEOUT (20)       seconds any one `tranche` CLI call may take
#   STACKS (0)             when > 0: that many `gdb thread apply all bt`
#                          samples of the controller while it places members
#                          and as many after the steady window, kept in
#                          STACKS_DIR (default ./agents-stacks-HOSTS). gdb
#                          stops the process while it samples: the figures
#                          of such a run are perturbed.
#   KEEP (0)               1: keep the work dir (logs, manifest) and say where
#   PERF                   a file: `perf record` of the controller from just
#                          before the apply until every member is placed,
#                          with PERF_OPTS (-F 199 --call-graph dwarf,16384);
#                          it perturbs the figures: for where the time goes
#
# Bounded: every wait has a deadline; on any exit (also Ctrl-C) the
# simulator and the controller are stopped (SIGTERM, SIGKILL after 10 s) and
# the work dir removed. Prints a table and one JSON line {"bench":"agents",...}.

set -euo pipefail

die() {
  echo "agents: $*" >&2
  exit 1
}
now() { date +%s.%N; }
# shellcheck source=bench/lib/perf.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/perf.sh"
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

TRANCHE=${1:-build/src/tranche}
[[ -x "$TRANCHE" ]] || die "no executable tranche binary at $TRANCHE (build it, or pass its path)"
TRANCHE=$(cd "$(dirname "$TRANCHE")" && pwd)/$(basename "$TRANCHE")
SIMULATOR=${2:-$(dirname "$(dirname "$TRANCHE")")/bench/agents/tranche-agent-simulator}
[[ -x "$SIMULATOR" ]] || die "no executable simulator at $SIMULATOR (ninja tranche-agent-simulator, or pass its path)"
command -v jq >/dev/null || die "jq is not installed"

HOSTS=${HOSTS:-100}
M=${MEMBERS_PER_HOST:-10}
CLUSTER_SIZE=${CLUSTER_SIZE:-1000}
CONNECT_RATE=${CONNECT_RATE:-500/s}
SIM_THREADS=${SIM_THREADS:-2}
STEADY=${STEADY_SECONDS:-20}
HEARTBEAT_INTERVAL=${HEARTBEAT_INTERVAL:-2s}
# One loopback source address has ~28,000 ephemeral ports to the controller.
SOURCE_ADDRESSES=${SOURCE_ADDRESSES:-$(((HOSTS + 19999) / 20000 > 1 ? (HOSTS + 19999) / 20000 : 0))}
RATE_NUM=${CONNECT_RATE%%/*}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-$((30 + 3 * HOSTS / RATE_NUM))}
PLACE_TIMEOUT=${PLACE_TIMEOUT:-240}
STALL_SECONDS=${STALL_SECONDS:-60}
CLI_TIMEOUT=${CLI_TIMEOUT:-20}
STACKS=${STACKS:-0}
STACKS_DIR=${STACKS_DIR:-$PWD/agents-stacks-$HOSTS}
MEMBERS=$((HOSTS * M))
CLK_TCK=$(getconf CLK_TCK)

# One descriptor per connection in each process, plus the store, logs and
# CLI connections. The hard limit is raised where that is allowed (root with
# CAP_SYS_RESOURCE, up to fs.nr_open), else the soft one as far as it goes.
FD_NEEDED=$((HOSTS + 1024))
if [[ "$(ulimit -Hn)" != unlimited && "$(ulimit -Hn)" -lt $FD_NEEDED ]]; then
  ulimit -Hn "$FD_NEEDED" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [[ "$FD_LIMIT" != unlimited && $((HOSTS + 256)) -gt "$FD_LIMIT" ]]; then
  die "HOSTS=$HOSTS needs more than $FD_LIMIT file descriptors per process (ulimit -Hn; raising it was refused: \
run as root with CAP_SYS_RESOURCE, or raise the limit of the shell or container that starts this)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tranche-agents.XXXXXX")
CONTROLLER_PID=""
SIM_PID=""

stop_process() { # PID NAME
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do # up to 10 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "agents: $2 did not stop on SIGTERM within 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  perf_stop
  stop_process "$SIM_PID" simulator
  stop_process "$CONTROLLER_PID" controller
  if [[ $status -ne 0 ]]; then
    for f in controller.log simulator.err; do
      if [[ -f "$WORK/$f" ]]; then
        echo "agents: last lines of $f:" >&2
        tail -n 15 "$WORK/$f" >&2 || true
      fi
    done
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "agents: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The machine and build, as every benchmark states them.
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
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Other work on the machine (the build machine is shared): compilers running.
compilers() { pgrep -c cc1plus 2>/dev/null || true; }
COMPILERS_BEFORE=$(compilers)

cpu_ticks() { # utime + stime of a process, in clock ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
status_kib() { # PID FIELD: a "kB" figure of /proc/PID/status
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
stack_sample() { # NAME: one all-threads backtrace of the controller
  [[ "$STACKS" -gt 0 ]] || return 0
  gdb -p "$CONTROLLER_PID" -batch -ex 'thread apply all bt' >"$STACKS_DIR/$1.txt" 2>/dev/null || true
}

# --- controller ---------------------------------------------------------------
DATA="$WORK/data"
mkdir -p "$DATA"
[[ "$STACKS" -gt 0 ]] && mkdir -p "$STACKS_DIR"
CONFIG_ARGS=()
if [[ -n "${API_THREADS:-}" ]]; then
  echo "apiThreads: $API_THREADS" >"$WORK/controller.yaml"
  CONFIG_ARGS=(--config "$WORK/controller.yaml")
fi
"$TRANCHE" controller --listen 127.0.0.1:0 --data-dir "$DATA" --heartbeat-interval "$HEARTBEAT_INTERVAL" "${CONFIG_ARGS[@]}" \
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
export TRANCHE_SERVER="$URL"
TRANCHE_TOKEN=$(head -n 1 "$DATA/admin.token")
export TRANCHE_TOKEN
# Every CLI call is bounded: a controller that holds its fleet lock for a
# long reconcile pass does not answer, and the script must still end.
cli() { timeout "$CLI_TIMEOUT" "$TRANCHE" "$@"; }

# --- simulated hosts ----------------------------------------------------------
# A long --duration: this script ends the simulator (SIGTERM) after the
# measurement, and it then prints its counters.
"$SIMULATOR" --server "$URL" --join-token-file "$DATA/join.token" --hosts "$HOSTS" --members-per-host "$M" \
  --connect-rate "$CONNECT_RATE" --threads "$SIM_THREADS" --source-addresses "$SOURCE_ADDRESSES" --duration 1h --progress 10s --stats-file "$WORK/sim-stats.json" \
  >"$WORK/simulator.out" 2>"$WORK/simulator.err" &
SIM_PID=$!

T_CONNECT0=$(now)
deadline=$((SECONDS + CONNECT_TIMEOUT))
connected=0
while :; do
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited"
  kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited"
  connected=$(cli get hosts -o json 2>/dev/null |
    jq '[.items[] | select(.connected and .state == "Ready")] | length' 2>/dev/null || echo 0)
  [[ "$connected" -ge "$HOSTS" ]] && break
  [[ $SECONDS -lt $deadline ]] || die "only $connected of $HOSTS hosts connected within ${CONNECT_TIMEOUT} s"
  sleep 1
done
CONNECT_SECONDS=$(elapsed "$T_CONNECT0" "$(now)")
echo "agents: $HOSTS hosts connected after ${CONNECT_SECONDS} s" >&2

# --- the application ------------------------------------------------------------
CLUSTERS=$(((MEMBERS + CLUSTER_SIZE - 1) / CLUSTER_SIZE))
{
  echo "application: simfleet"
  echo "description: agents benchmark, $MEMBERS members on $HOSTS simulated hosts"
  echo "clusters:"
  left=$MEMBERS
  for ((c = 0; c < CLUSTERS; c++)); do
    n=$((left < CLUSTER_SIZE ? left : CLUSTER_SIZE))
    left=$((left - n))
    cat <<YAML
  - name: c$c
    members: {desired: $n}
    artifact: {version: "1.0.0", command: ["sim"]}
    ports: [main]
    placement: {hostLabels: {sim: "1"}}
YAML
  done
} >"$WORK/simfleet.yaml"

count_members() { # prints "placed active", or "-1 -1" when the controller did not answer in time
  local out
  if out=$(cli get members simfleet -o json 2>/dev/null); then
    jq -r '[(.items | length), ([.items[] | select(.state == "Active")] | length)] | @tsv' <<<"$out" 2>/dev/null ||
      echo "-1 -1"
  else
    echo "-1 -1"
  fi
}

if [[ $MEMBERS -gt 0 ]]; then
  perf_start "-F 199 --call-graph dwarf,16384"
fi
T_APPLY=$(now)
if [[ $MEMBERS -gt 0 ]]; then
  cli apply -f "$WORK/simfleet.yaml" >"$WORK/apply.out" 2>&1 || die "apply failed: $(cat "$WORK/apply.out")"
fi
deadline=$((SECONDS + PLACE_TIMEOUT))
PLACEMENT_SECONDS=""
ACTIVE_SECONDS=""
placed=0
active=0
next_stack=$SECONDS
stack_n=0
last_active=-1
last_change=$SECONDS
STALLED=false
# Poll less often when each poll is a big JSON document.
POLL=$((MEMBERS >= 20000 ? 5 : 1))
while [[ $MEMBERS -gt 0 ]]; do
  kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited while placing members"
  read -r n_placed n_active < <(count_members)
  t=$(now)
  if [[ "$n_placed" -lt 0 ]]; then
    echo "agents: t+$(elapsed "$T_APPLY" "$t") s: the controller did not answer within ${CLI_TIMEOUT} s" >&2
  else
    placed=$n_placed
    active=$n_active
  fi
  if [[ -z "$PLACEMENT_SECONDS" && "$placed" -ge "$MEMBERS" ]]; then
    PLACEMENT_SECONDS=$(elapsed "$T_APPLY" "$t")
    perf_stop
  fi
  if [[ "$active" -ge "$MEMBERS" ]]; then
    ACTIVE_SECONDS=$(elapsed "$T_APPLY" "$t")
    break
  fi
  echo "agents: t+$(elapsed "$T_APPLY" "$t") s: $placed placed, $active Active of $MEMBERS" >&2
  if [[ $SECONDS -ge $deadline ]]; then
    echo "agents: not all members Active within ${PLACE_TIMEOUT} s ($placed placed, $active Active)" >&2
    break
  fi
  if [[ "$n_placed" -lt 0 || "$active" != "$last_active" ]]; then
    # Moving, or not answering (busy): either way not a stall.
    last_active=$active
    last_change=$SECONDS
  elif [[ "$placed" -ge "$MEMBERS" && $((SECONDS - last_change)) -ge $STALL_SECONDS ]]; then
    STALLED=true
    echo "agents: stalled: all $placed placed, but only $active Active for ${STALL_SECONDS} s" >&2
    break
  fi
  if [[ "$STACKS" -gt 0 && $stack_n -lt "$STACKS" && $SECONDS -ge $next_stack ]]; then
    stack_n=$((stack_n + 1))
    stack_sample "placing-$stack_n"
    next_stack=$((SECONDS + 5))
  fi
  sleep "$POLL"
done
# The same from the controller's own log, to the millisecond: apply to the
# last "Created -> Starting" (a member placed on a host and its start sent).
log_time() { # the epoch seconds of a controller log line's timestamp
  date -d "$(sed -E 's/^\[([^]]+)\].*/\1/' <<<"$1")" +%s.%N 2>/dev/null || echo ""
}
LOG_PLACED=$(grep -c 'Created -> Starting' "$WORK/controller.log" || true)
PLACE_LOG_SECONDS=""
if [[ "$LOG_PLACED" -gt 0 ]]; then
  last_line=$(grep 'Created -> Starting' "$WORK/controller.log" | tail -n 1)
  t_last=$(log_time "$last_line")
  [[ -n "$t_last" ]] && PLACE_LOG_SECONDS=$(elapsed "$T_APPLY" "$t_last")
fi
if [[ $MEMBERS -eq 0 ]]; then
  PLACEMENT_SECONDS=""
  ACTIVE_SECONDS=""
fi
COMPLETE=$([[ -n "$ACTIVE_SECONDS" || $MEMBERS -eq 0 ]] && echo true || echo false)

# --- steady state ---------------------------------------------------------------
# Nothing polls the controller during the window: it only absorbs heartbeats
# and runs its reconcile ticks.
alive() { kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited ($1)"; }
alive "after placement"
sleep 2
sim_stats() { # the simulator's running totals (rewritten every second): "seconds heartbeats connected"
  jq -r '[.seconds, .heartbeats, .connected] | @tsv' "$WORK/sim-stats.json" 2>/dev/null || echo "0 0 0"
}
# The controller's own figures at both ends of the window: heartbeats
# handled and how long each took (a histogram), store commits.
metrics() { curl -sf --max-time "$CLI_TIMEOUT" "$URL/metrics" >"$1" || : >"$1"; }
metrics "$WORK/metrics-0.txt"
c0=$(cpu_ticks "$CONTROLLER_PID")
s0=$(cpu_ticks "$SIM_PID")
w0=$(now)
read -r hs0 hb0 up0 < <(sim_stats)
sleep "$STEADY"
c1=$(cpu_ticks "$CONTROLLER_PID")
s1=$(cpu_ticks "$SIM_PID")
w1=$(now)
read -r hs1 hb1 up1 < <(sim_stats)
metrics "$WORK/metrics-1.txt"
alive "during the CPU window"
# Heartbeats sent per second in the window, by the simulator's own clock.
HB_WINDOW=$(awk -v a="$hb0" -v b="$hb1" -v t0="$hs0" -v t1="$hs1" \
  'BEGIN { if (t1 > t0) printf "%.0f", (b - a) / (t1 - t0); else print 0 }')
UP_MIN=$((up0 < up1 ? up0 : up1))
CPU=$(awk -v a="$c0" -v b="$c1" -v t0="$w0" -v t1="$w1" -v hz="$CLK_TCK" \
  'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
SIM_CPU=$(awk -v a="$s0" -v b="$s1" -v t0="$w0" -v t1="$w1" -v hz="$CLK_TCK" \
  'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
# Window = the difference of the two readings. Prints "handled per_second
# p50_bound p99_bound within_5ms_percent commits"; a bound is the upper edge
# of the histogram bucket the quantile falls in ("+Inf" beyond the last, "n/a"
# without heartbeats, "-" when /metrics did not answer).
window_figures() {
  awk -v t0="$w0" -v t1="$w1" '
    { file = (FILENAME == ARGV[1]) ? 1 : 2 }
    /^tranche_heartbeat_handling_seconds_bucket\{/ {
      match($0, /le="[^"]*"/)
      le = substr($0, RSTART + 4, RLENGTH - 5)
      if (file == 1) before[le] = $2; else { after[le] = $2; if (!(le in seen)) { order[++n] = le; seen[le] = 1 } }
    }
    /^tranche_heartbeat_handling_seconds_count / { count[file] = $2 }
    /^tranche_store_commit_duration_seconds_count / { commits[file] = $2 }
    END {
      if (!(1 in count) || !(2 in count)) { print "- - - - - -"; exit }
      handled = count[2] - count[1]
      rate = (t1 > t0) ? handled / (t1 - t0) : 0
      c = commits[2] - commits[1]
      if (handled == 0) { printf "0 0 n/a n/a n/a %d\n", c; exit }
      p50 = "+Inf"; p99 = "+Inf"; within = 0
      for (i = 1; i <= n; i++) {
        d = after[order[i]] - before[order[i]]
        if (p50 == "+Inf" && d >= 0.5 * handled) p50 = order[i]
        if (p99 == "+Inf" && d * 100 >= 99 * handled) p99 = order[i]
        if (order[i] == "0.005") within = d
      }
      printf "%d %.0f %s %s %.2f %d\n", handled, rate, p50, p99, within * 100 / handled, c
    }' "$WORK/metrics-0.txt" "$WORK/metrics-1.txt"
}
read -r HB_HANDLED HB_HANDLED_RATE HB_P50 HB_P99 HB_WITHIN_5MS STORE_COMMITS < <(window_figures)
ms_bound() { # a bucket bound in seconds, in ms
  case "$1" in
  +Inf | n/a | -) echo "$1" ;;
  *) awk -v s="$1" 'BEGIN { printf "%g", s * 1000 }' ;;
  esac
}
HB_P50_MS=$(ms_bound "$HB_P50")
HB_P99_MS=$(ms_bound "$HB_P99")
# quality.md P0: 99 % of the window's heartbeats handled within 5 ms.
if [[ "$HB_WITHIN_5MS" == - || "$HB_WITHIN_5MS" == n/a ]]; then
  P0_VERDICT="not measured"
elif awk -v p="$HB_WITHIN_5MS" 'BEGIN { exit !(p >= 99) }'; then
  P0_VERDICT="met"
else
  P0_VERDICT="not met"
fi
RSS=$(awk -v k="$(status_kib "$CONTROLLER_PID" VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')
RSS_PEAK=$(awk -v k="$(status_kib "$CONTROLLER_PID" VmHWM)" 'BEGIN { printf "%.1f", k / 1024 }')
THREADS=$(status_kib "$CONTROLLER_PID" Threads)
for ((i = 1; i <= STACKS; i++)); do
  stack_sample "steady-$i"
  sleep 1
done
placed_end=0
active_end=0
[[ $MEMBERS -gt 0 ]] && read -r placed_end active_end < <(count_members)
alive "after the CPU window"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
COMPILERS_AFTER=$(compilers)
UNREACHABLE=$(grep -c 'Ready -> Unreachable' "$WORK/controller.log" || true)

# The simulator's own counters.
ALIVE_AT_END=$(kill -0 "$CONTROLLER_PID" 2>/dev/null && echo true || echo false)
stop_process "$SIM_PID" simulator
SIM_PID=""
SIM_JSON=$(grep '^{"bench"' "$WORK/simulator.out" | tail -n 1 || true)
grep -E 'connection lost|delivered again|refused' "$WORK/simulator.err" | head -n 10 >&2 || true
echo "agents: the simulator's own counters:" >&2
grep '^|' "$WORK/simulator.out" >&2 || true
sim() { [[ -n "$SIM_JSON" ]] && jq -r ".$1 // \"n/a\"" <<<"$SIM_JSON" || echo n/a; }
HB_RATE=$(sim heartbeats_per_second)
RECONNECTS=$(sim reconnects)
LAG_P99=$(sim heartbeat_lag_ms_p99)

NOT_DONE=$([[ $MEMBERS -eq 0 ]] && echo "n/a (no members)" || echo "not within the deadline")
API_THREADS_SHOWN=${API_THREADS:-default (4)}
# --- report -----------------------------------------------------------------------
cat <<EOF
agents benchmark (quality.md P0, P1): one controller, $HOSTS simulated hosts, $MEMBERS members
machine: $MACHINE; build: $BUILD; controller heartbeat interval $HEARTBEAT_INTERVAL; source addresses: $SOURCE_ADDRESSES (0: one)
load average $LOAD_BEFORE -> $LOAD_AFTER; compilers running $COMPILERS_BEFORE -> $COMPILERS_AFTER

| figure | value |
| --- | --- |
| hosts (WebSockets) | $HOSTS |
| members (M = $M per host, $CLUSTERS cluster(s)) | $MEMBERS |
| all hosts connected after (s) | $CONNECT_SECONDS |
| all members placed after apply (s) | ${PLACEMENT_SECONDS:-$NOT_DONE} |
| last member placed after apply, controller log (s) | ${PLACE_LOG_SECONDS:-n/a} ($LOG_PLACED placed) |
| all members Active after apply (s) | ${ACTIVE_SECONDS:-$NOT_DONE} |
| members placed / Active at the end | $placed_end / $active_end |
| controller CPU, % of one core (${STEADY} s window) | $CPU |
| controller RSS (MiB), peak | $RSS, $RSS_PEAK |
| controller threads (apiThreads) | $THREADS ($API_THREADS_SHOWN) |
| simulator CPU, % of one core (same window) | $SIM_CPU |
| heartbeats/s sent in the window (whole run) | $HB_WINDOW ($HB_RATE) |
| heartbeats handled in the window, per second (controller's /metrics) | $HB_HANDLED, $HB_HANDLED_RATE |
| heartbeat handling (arrival to handled) p50 / p99 bucket bound (ms) | $HB_P50_MS / $HB_P99_MS |
| heartbeats handled within 5 ms (%) | $HB_WITHIN_5MS |
| p99 < 5 ms (quality.md P0) | $P0_VERDICT |
| store commits in the window | $STORE_COMMITS |
| hosts connected during the window (least of start, end) | $UP_MIN |
| simulator heartbeat lag p99 (ms) | $LAG_P99 |
| reconnects / hosts marked Unreachable | $RECONNECTS / $UNREACHABLE |

EOF
if [[ "$ALIVE_AT_END" != true ]]; then
  echo "note: the controller died after the CPU window (see its exit status above); figures up to then stand"
fi
if [[ "$COMPLETE" != true ]]; then
  if [[ "$STALLED" == true ]]; then
    echo "note: not every member became Active (stalled); the CPU window measured the controller with the"
    echo "      members it had, some of them still Starting"
  else
    echo "note: placement did not complete; the CPU window was not steady state"
  fi
fi
jq -cn --arg machine "$MACHINE" --arg build "$BUILD" --argjson hosts "$HOSTS" --argjson m "$M" \
  --argjson members "$MEMBERS" --argjson clusters "$CLUSTERS" --argjson cpu "$CPU" --argjson rss "$RSS" \
  --argjson rss_peak "$RSS_PEAK" --arg placement "${PLACEMENT_SECONDS}" --arg active "${ACTIVE_SECONDS}" \
  --argjson connect "$CONNECT_SECONDS" --argjson complete "$COMPLETE" --argjson stalled "$STALLED" --argjson alive_at_end "$ALIVE_AT_END" --arg api_threads "${API_THREADS:-}" --argjson sim_cpu "$SIM_CPU" \
  --arg hb "$HB_RATE" --argjson hb_window "$HB_WINDOW" --argjson up_min "$UP_MIN" --arg reconnects "$RECONNECTS" --argjson unreachable "$UNREACHABLE" \
  --argjson placed "$placed_end" --argjson active_n "$active_end" --argjson steady "$STEADY" \
  --arg hb_handled "$HB_HANDLED" --arg hb_handled_rate "$HB_HANDLED_RATE" --arg hb_p50 "$HB_P50" --arg hb_p99 "$HB_P99" \
  --arg hb_within "$HB_WITHIN_5MS" --arg p0 "$P0_VERDICT" --arg commits "$STORE_COMMITS" --arg interval "$HEARTBEAT_INTERVAL" \
  --argjson source_addresses "$SOURCE_ADDRESSES" \
  --arg place_log "$PLACE_LOG_SECONDS" --argjson log_placed "$LOG_PLACED" --argjson cc_before "${COMPILERS_BEFORE:-0}" --argjson cc_after "${COMPILERS_AFTER:-0}" --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
  '{bench: "agents", hosts: $hosts, members: $members, cpu_percent_one_core: $cpu, rss_mib: $rss,
    placement_seconds: (if $placement == "" then null else ($placement | tonumber) end),
    machine: $machine, build: $build, members_per_host: $m, clusters: $clusters,
    active_seconds: (if $active == "" then null else ($active | tonumber) end), complete: $complete,
    stalled: $stalled, controller_alive_at_end: $alive_at_end,
    placement_log_seconds: (if $place_log == "" then null else ($place_log | tonumber) end),
    members_placed_log: $log_placed,
    members_placed: (if $placed < 0 then null else $placed end),
    members_active: (if $active_n < 0 then null else $active_n end), connect_seconds: $connect, rss_peak_mib: $rss_peak,
    steady_seconds: $steady, simulator_cpu_percent: $sim_cpu,
    heartbeats_per_second: $hb_window, heartbeats_per_second_run: ($hb | tonumber? // null),
    hosts_connected_in_window: $up_min, heartbeat_interval: $interval,
    heartbeats_handled: ($hb_handled | tonumber? // null), heartbeats_handled_per_second: ($hb_handled_rate | tonumber? // null),
    heartbeat_handling_p50_bound_seconds: ($hb_p50 | tonumber? // $hb_p50), heartbeat_handling_p99_bound_seconds: ($hb_p99 | tonumber? // $hb_p99),
    heartbeats_within_5ms_percent: ($hb_within | tonumber? // null), p0_p99_under_5ms: $p0,
    store_commits_in_window: ($commits | tonumber? // null), source_addresses: $source_addresses,
    api_threads: (if $api_threads == "" then null else ($api_threads | tonumber) end), reconnects: ($reconnects | tonumber? // null),
    hosts_unreachable: $unreachable, loadavg_before: $load_before, loadavg_after: $load_after,
    compilers_before: $cc_before, compilers_after: $cc_after}'
