#!/usr/bin/env bash
# zero-downtime: P6 (quality.md). A live sample application behind HAProxy
# under continuous load of >= 2,000 requests/s (keep-alive, new connections
# and 1 s requests in flight) while its MEMBERS members change; twice, each
# time on a fresh HAProxy, controller and deployment:
#
#  1. with the load-balancer integration (each member drained before it
#     stops): steady, a rolling replace 1.0.0 -> 2.0.0, steady, a maintenance
#     replace (`tranche set maintenance replace demo`), steady;
#  2. the control run with `--no-lb-drain` (members are stopped while HAProxy
#     still sends them requests): steady, the rolling replace, steady.
#
# P6 passes when run 1 has 0 failed requests, both changes completed, the
# load reached 2,000 requests/s, and the p99 latency of the requests begun
# during each change is at most 2 x the p99 of those begun in the steady
# stretches (all three together: the same load, nothing changing). Slow
# requests are counted (a failed one fails P6) but left out of the p99s:
# their 1 s is the server's delay. Run 2 is expected to show failures (it
# may not: the window for losing a request is short).
#
#   bench/zero-downtime/run.sh
#
# Environment: MEMBERS (10); STEADY_SECONDS (10, each steady stretch);
# TRANCHE_BUILD_DIR (build, as scripts/demo).
#
# Prints both runs' tables, a summary with the verdict, then one JSON line
# {"bench":"zero-downtime","members":N,...,"p6":"pass"|"FAIL",
#  "rps":x,"steady_p99_ms":x,"rolling":{...},"maintenance":{...},"control":{...},
#  "with_drain":{...},"without_drain":{...}}
# whose run objects are tranche-loadgen's figures plus the changes'.
set -euo pipefail
cd "$(dirname "$0")/../.."

members=${MEMBERS:-10}
steady_seconds=${STEADY_SECONDS:-10}
# 38 keep-alive connections at 50/s, 200/s on new connections and 20/s of
# 1 s requests, each on its own connection (so about 20 in flight at any
# time): 2,120 requests/s asked, to stay above 2,000 when the pacing slips.
bench_loadgen_args=(--connections 38 --keep-alive-rate 50/s --new-connection-rate 200/s
  --slow-rate 20/s --slow-path '/slow?ms=1000' --timeout 3s --interval 1s)

# shellcheck source=scripts/lib/haproxy-demo.sh
source scripts/lib/haproxy-demo.sh
demo_setup

# run_changes [--no-lb-drain]: one deployment, the load, the changes; then
# everything of the run is stopped (the next one starts afresh).
run_changes() {
  demo_start "$@"
  demo_deploy "$members"
  demo_load_start "${bench_loadgen_args[@]}"
  sleep "$steady_seconds" # a measured steady stretch, not a wait for some state
  demo_phase rolling-replace
  demo_rollout 2.0.0
  demo_phase steady
  sleep "$steady_seconds"
  if [ $# -eq 0 ]; then
    demo_phase maintenance-replace
    demo_maintenance_replace
    demo_phase steady
    sleep "$steady_seconds"
  fi
  demo_load_stop
  demo_stop
}

# run_json: the run's figures as one JSON object: loadgen's line (without
# its "bench" key) plus the changes'.
run_json() {
  local rollout=Succeeded maintenance=""
  [ "$rollout_phase" = Succeeded ] || rollout=Failed
  if [ -n "$maintenance_seconds" ]; then
    maintenance=",\"maintenance_s\":$maintenance_seconds,\"maintenance\":\"$maintenance_result\""
  fi
  echo "{\"rollout_s\":$rollout_seconds,\"rollout\":\"$rollout\"$maintenance,${loadgen_json#\{\"bench\":\"loadgen\",}"
}

run_changes
with_table=$(demo_report "with draining: rolling replace and maintenance replace of $members members behind HAProxy")
with_json=$(run_json)
run_changes --no-lb-drain
without_table=$(demo_report "without draining (--no-lb-drain): rolling replace of $members members behind HAProxy")
without_json=$(run_json)

# figure JSON KEY: the number after the first "KEY": (the run's own figures
# come before the nested ones of the same name).
figure() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }
# phase_figure JSON PHASE KEY: KEY of the (flat) object of PHASE in "phases".
phase_figure() {
  local phase
  phase=$(grep -o '"phases":{.*' <<<"$1" | grep -o "\"$2\":{[^}]*}") || {
    echo 0
    return
  }
  figure "$phase" "$3"
}
# ratio A B: A / B with two decimals (null when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "null" }'; }
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

steady_p99=$(phase_figure "$with_json" steady p99_ms)
rps=$(figure "$with_json" rps)
rolling_p99=$(phase_figure "$with_json" rolling-replace p99_ms)
maintenance_p99=$(phase_figure "$with_json" maintenance-replace p99_ms)
rolling_ratio=$(ratio "$rolling_p99" "$steady_p99")
maintenance_ratio=$(ratio "$maintenance_p99" "$steady_p99")
with_failed=$(figure "$with_json" failed)
control_failed=$(figure "$without_json" failed)

echo "$with_table"
echo "$without_table"
echo
echo "== zero-downtime (P6): $members members, $(figure "$with_json" sent) requests at $rps requests/s with draining"
printf '  %-22s%10s%9s%9s%9s%10s%8s%12s\n' "phase (with draining)" "time (s)" "sent" "req/s" "failed" "p99 (ms)" "ratio" "slow failed"
for phase in steady rolling-replace maintenance-replace; do
  p99=$(phase_figure "$with_json" "$phase" p99_ms)
  printf '  %-22s%10s%9s%9s%9s%10s%8s%12s\n' "$phase" "$(phase_figure "$with_json" "$phase" duration_s)" \
    "$(phase_figure "$with_json" "$phase" sent)" "$(phase_figure "$with_json" "$phase" rps)" \
    "$(phase_figure "$with_json" "$phase" failed)" "$p99" "$(ratio "$p99" "$steady_p99")" \
    "$(phase_figure "$with_json" "$phase" slow_failed)/$(phase_figure "$with_json" "$phase" slow_sent)"
done
# word JSON KEY: the string value of the first "KEY":"...".
word() { grep -o "\"$2\":\"[^\"]*\"" <<<"$1" | head -1 | cut -d'"' -f4; }
echo "  rolling replace: $(word "$with_json" rollout) in $(figure "$with_json" rollout_s) s;" \
  "maintenance replace: $(word "$with_json" maintenance) in $(figure "$with_json" maintenance_s) s"
echo "  control run (--no-lb-drain): $(figure "$without_json" sent) requests, $control_failed failed" \
  "(rolling replace: $(phase_figure "$without_json" rolling-replace failed) of $(phase_figure "$without_json" rolling-replace sent))"

verdict=pass
reasons=()
[ "$with_failed" = 0 ] || reasons+=("$with_failed failed requests with draining")
at_most 2000 "$rps" || reasons+=("$rps requests/s, under 2,000")
at_most "$rolling_p99" "$(awk -v s="$steady_p99" 'BEGIN { print 2 * s }')" ||
  reasons+=("rolling-replace p99 $rolling_p99 ms > 2 x steady $steady_p99 ms")
at_most "$maintenance_p99" "$(awk -v s="$steady_p99" 'BEGIN { print 2 * s }')" ||
  reasons+=("maintenance-replace p99 $maintenance_p99 ms > 2 x steady $steady_p99 ms")
[ "$(word "$with_json" rollout)" = Succeeded ] || reasons+=("the rollout did not succeed")
[ "$(word "$with_json" maintenance)" = completed ] || reasons+=("the maintenance replace did not complete")
[ ${#reasons[@]} -eq 0 ] || verdict=FAIL
if [ "$verdict" = pass ]; then
  echo "  P6: pass (0 failed with draining at $rps requests/s; p99 ratios $rolling_ratio and $maintenance_ratio <= 2)"
else
  echo "  P6: FAIL ($(printf '%s; ' "${reasons[@]}" | sed 's/; $//'))"
fi
echo "  control: $([ "$control_failed" != 0 ] && echo "shows failures ($control_failed)" || echo "no failure on this run (it may not show any)")"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | sed 's/"/\\"/g')
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$demo_build_dir/CMakeCache.txt")
change_json() {
  echo "{\"failed\":$(phase_figure "$with_json" "$1" failed),\"p99_ms\":$(phase_figure "$with_json" "$1" p99_ms),\"p99_ratio\":$2}"
}
echo "{\"bench\":\"zero-downtime\",\"members\":$members,\"cpu\":\"$cpu\",\"cpus\":$(nproc),\"build_type\":\"$build_type\",\"p6\":\"$verdict\",\"rps\":$rps,\"failed\":$with_failed,\"steady_p99_ms\":$steady_p99,\"rolling\":$(change_json rolling-replace "$rolling_ratio"),\"maintenance\":$(change_json maintenance-replace "$maintenance_ratio"),\"control\":{\"failed\":$control_failed},\"with_drain\":$with_json,\"without_drain\":$without_json}"
