#!/usr/bin/env bash
# zero-downtime: P6 (quality.md). A live sample application behind HAProxy
# under continuous load while a rolling replace moves its MEMBERS members
# from 1.0.0 to 2.0.0; twice, each time on a fresh HAProxy, controller and
# deployment: first with the load-balancer integration (each member drained
# before it stops), then the control run with `--no-lb-drain` (members are
# stopped while HAProxy still sends them requests). P6 asks for 0 failed
# requests in the first run; the second is expected to show failures (it
# may not: the window for losing a request is short).
#
#   bench/zero-downtime/run.sh
#
# Environment: MEMBERS (10); TRANCHE_BUILD_DIR (build, as scripts/demo).
# The load is scripts/lib/haproxy-demo.sh's: tranche-loadgen with 4
# keep-alive connections at 50 requests/s each and 20 requests/s on new
# connections, a 2 s timeout per request, from 3 s before the update to 3 s
# after the rollout ended and every member is UP in HAProxy again.
#
# Prints both runs' tables, a side-by-side summary, then one JSON line
# {"bench":"zero-downtime","members":N,...,"with_drain":{...},"without_drain":{...}}
# whose run objects are tranche-loadgen's figures plus the rollout's.
set -euo pipefail
cd "$(dirname "$0")/../.."

members=${MEMBERS:-10}

# shellcheck source=scripts/lib/haproxy-demo.sh
source scripts/lib/haproxy-demo.sh
demo_setup

run() {
  demo_start "$@"
  demo_deploy "$members"
  demo_measure 2.0.0
  demo_stop
}

run
with_table=$(demo_report "with draining: rolling replace of $members members behind HAProxy")
with_json=$(demo_result_json)
run --no-lb-drain
without_table=$(demo_report "without draining (--no-lb-drain): rolling replace of $members members behind HAProxy")
without_json=$(demo_result_json)

# figure JSON KEY: the number after the first "KEY": in one of the objects
# above (the run's own figures come before the nested ones of the same name).
figure() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }
# The p50 and p99 inside "latency_ms".
latency() { sed -n "s/.*\"latency_ms\":{\"p50\":\([0-9.]*\),\"p99\":\([0-9.]*\).*/\1 \/ \2/p" <<<"$1"; }

echo "$with_table"
echo "$without_table"
echo
echo "== zero-downtime (P6): $members members"
printf '  %-24s%16s%18s\n' "" "with draining" "--no-lb-drain"
for key in sent ok failed; do
  printf '  %-24s%16s%18s\n' "requests $key" "$(figure "$with_json" "$key")" "$(figure "$without_json" "$key")"
done
printf '  %-24s%16s%18s\n' "latency p50 / p99 (ms)" "$(latency "$with_json")" "$(latency "$without_json")"
printf '  %-24s%16s%18s\n' "rollout (s)" "$(figure "$with_json" rollout_s)" "$(figure "$without_json" rollout_s)"
with_failed=$(figure "$with_json" failed)
without_failed=$(figure "$without_json" failed)
verdict=$([ "$with_failed" = 0 ] && echo pass || echo FAIL)
echo "  P6: $verdict (0 failed requests with draining: $with_failed failed; without draining: $without_failed failed)"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | sed 's/"/\\"/g')
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$demo_build_dir/CMakeCache.txt")
echo "{\"bench\":\"zero-downtime\",\"members\":$members,\"cpu\":\"$cpu\",\"cpus\":$(nproc),\"build_type\":\"$build_type\",\"p6\":\"$verdict\",\"with_drain\":$with_json,\"without_drain\":$without_json}"
