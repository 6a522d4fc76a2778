# The scaffolding the simulated-fleet benchmarks share (failure-detection, api-rate, recovery, reaction,
# maintenance-fanout), sourced at the top level of the script once it has
# set BENCH (its name), TRANCHE, TIMEOUT and CLI_TIMEOUT and defined note()
# and die(): a scratch dir WORK, the processes it started stopped and WORK
# removed on exit (also on Ctrl-C; KEEP=1 keeps WORK), a watchdog ending the
# run after TIMEOUT seconds, MACHINE, BUILD and LOAD_BEFORE for the JSON
# line, and start_controller. The script sets SIM_PID once it starts the
# simulator.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tranche-$BENCH.XXXXXX")
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

(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" &
  sleeper=$!
  wait "$sleeper"
  echo "$BENCH: the whole run took longer than TIMEOUT=${TIMEOUT} s; stopping" >&2
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
    break
  fi
  dir=$(dirname "$dir")
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
alive() { kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited ($1)"; }


# Starts the controller with the given flags on a free loopback port and
# waits until it serves; sets DATA, CONTROLLER_PID, URL and TOKEN.
start_controller() {
  DATA="$WORK/data"
  mkdir -p "$DATA"
  "$TRANCHE" controller --listen 127.0.0.1:0 --data-dir "$DATA" "$@" >"$WORK/controller.log" 2>&1 &
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
}

api() { # METHOD PATH [curl args...]: the body on stdout; fails on a non-2xx answer
  local method=$1 path=$2
  shift 2
  curl -sS --fail-with-body --max-time "$CLI_TIMEOUT" -X "$method" -H "Authorization: Bearer $TOKEN" "$@" \
    "$URL/api/v1$path"
}
