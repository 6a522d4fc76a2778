#!/usr/bin/env bash
# fault-campaign: quality.md "Reliability", "Fault campaign" (issue 14). The
# long form of the e2e test FaultCampaign.BudgetsHoldUnderSeededFaults
# (tests/e2e/fault_campaign_test.cc): COUNT seeded faults (SIGKILL of the
# controller or an agent, SIGSTOP/SIGCONT of an agent, a host's veth cut and
# restored) during scaling, rolling updates, maintenance and autohealing
# changes on the real controller, agents and tranche-hello members, each host
# in a network namespace of its own, while the budgets are checked on the
# event log at every committed decision.
#
#   bench/fault-campaign/run.sh
#   SEED=1417334799 COUNT=120 bench/fault-campaign/run.sh    # replay a run
#
# Environment:
#   COUNT (120)              faults in the campaign
#   SEED (random)            the schedule's seed; a run prints it
#   TRANCHE_BUILD_DIR (build) the build tree holding tests/e2e/test_e2e_fault_campaign
#   LOG                      where the test's whole output goes (default: a
#                            temporary file, named at the end)
#
# Needs root (ip netns, veth pairs). Builds nothing: build the test binary
# first (cmake --build build --target test_e2e_fault_campaign). Runs it under
# a shared /tmp/tranche-build.lock, so that nobody rebuilds the tranche
# binary under a running campaign; with -o, so that no process the campaign
# starts inherits the lock (one left behind would hold it for good).
#
# Prints the campaign's table, then one JSON line
# {"bench":"fault-campaign","seed":...,"faults":...,"kills":...,"checks":...,"violations":0,...}.
# Exit status 1 when the campaign saw a violation or did not come to rest.

set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
  echo "fault-campaign: $*" >&2
  exit 1
}

build=${TRANCHE_BUILD_DIR:-build}
binary=$build/tests/e2e/test_e2e_fault_campaign
[[ -x "$binary" ]] || die "no $binary (cmake --build $build --target test_e2e_fault_campaign)"
[[ $(id -u) -eq 0 ]] || die "needs root for network namespaces"

count=${COUNT:-120}
log=${LOG:-$(mktemp /tmp/fault-campaign-XXXXXX.log)}
env_args=(TRANCHE_FAULT_COUNT="$count")
if [[ -n "${SEED:-}" ]]; then
  env_args+=(TRANCHE_FAULT_SEED="$SEED")
fi

status=0
env "${env_args[@]}" flock -s -o /tmp/tranche-build.lock "$binary" --gtest_filter='FaultCampaign.*' >"$log" 2>&1 ||
  status=$?

# The campaign's own table and JSON line, and any failure the test reported.
sed -n '/^== fault campaign/,/^  violations/p' "$log"
grep -E '^(\[  SKIPPED|\[  FAILED|.*Failure$)' "$log" || true
grep '^{"bench":"fault-campaign"' "$log" || die "the campaign printed no figures (exit $status); its output: $log"
echo "fault-campaign: the whole output is in $log" >&2
exit $((status == 0 ? 0 : 1))
