#!/usr/bin/env bash
# console: the web console's page weight and time to first render, in
# Debian's headless Chromium. Runs the browser test that measures one load
# of the console (tests/e2e/console_browser_test.cc, PageWeightAndFirstRender:
# a --dev controller with 3 members, the fleet view loaded fresh with a
# token in the tab) RUNS times and prints each run's figures from the
# browser's performance API, then a summary and one JSON line
# {"bench":"console", ...}.
#
#   bench/console/run.sh [BUILD-DIR]          (default build; RUNS=5)
#
# Builds nothing: build test_e2e_console first
# (cmake --build build --target test_e2e_console).
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}
runs=${RUNS:-5}
test_binary=$build/tests/e2e/test_e2e_console
[[ -x $test_binary ]] || { echo "console: no $test_binary (build the target test_e2e_console)" >&2; exit 1; }

lines=()
for ((i = 1; i <= runs; i++)); do
  out=$("$test_binary" --gtest_filter=ConsoleBrowser.PageWeightAndFirstRender 2>&1) || {
    echo "$out" >&2
    exit 1
  }
  line=$(grep -o '{"apiBytes".*"bench":"console_page_load".*}' <<<"$out")
  echo "run $i: $line"
  lines+=("$line")
done

printf '%s\n' "${lines[@]}" | python3 -c '
import json, statistics, sys, os
runs = [json.loads(l) for l in sys.stdin if l.strip()]
def col(k): return [r[k] for r in runs]
fcp, total, data = col("firstContentfulPaintMs"), col("totalKiB"), col("fleetDataMs")
print("  %-34s%10s%10s%10s" % ("figure", "median", "min", "max"))
for name, values in (("page load, KiB (page + API)", total), ("first contentful paint, ms", fcp),
                     ("fleet data arrived, ms", data)):
    print("  %-34s%10.1f%10.1f%10.1f" % (name, statistics.median(values), min(values), max(values)))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"bench": "console", "runs": len(runs), "pageKiB": statistics.median(total),
                  "requests": runs[0]["requests"], "firstContentfulPaintMs": statistics.median(fcp),
                  "fleetDataMs": statistics.median(data), "cpu": cpu, "cpus": os.cpu_count(),
                  "browser": "Debian chromium, headless"}))
'
