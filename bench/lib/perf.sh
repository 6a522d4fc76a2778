# PERF=FILE for the benchmarks: a `perf record` of the controller over the
# part of the run a script profiles, with PERF_OPTS or the script's default.
# Sourced after CONTROLLER_PID and WORK are set; `perf_start DEFAULT_OPTS`
# before that part and `perf_stop` after it (also from a cleanup: it does
# nothing once stopped, or when PERF is unset). Profiling perturbs the
# figures: it says where the time goes, not what goes in a table.

PERF_PID=""

perf_start() {
  [[ -n "${PERF:-}" ]] || return 0
  # shellcheck disable=SC2086
  perf record ${PERF_OPTS:-$1} -p "$CONTROLLER_PID" -o "$PERF" >"$WORK/perf.out" 2>&1 &
  PERF_PID=$!
  sleep 1 # perf attaches to every thread
}

perf_stop() {
  [[ -n "$PERF_PID" ]] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  echo "$(basename "$(dirname "$0")"): perf data in $PERF" >&2
}
