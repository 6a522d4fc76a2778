# The binaries and tools of the simulated-fleet benchmarks, sourced once
# the script has defined die(): TRANCHE is its first argument (default
# build-bench/src/tranche) and SIMULATOR its second (default: the agent
# simulator of the same build tree), both made absolute; jq and curl must
# be installed. Call as `find_binaries "$@"`.

find_binaries() {
  TRANCHE=${1:-build-bench/src/tranche}
  [[ -x "$TRANCHE" ]] || die "no executable tranche binary at $TRANCHE (build it, or pass its path)"
  TRANCHE=$(cd "$(dirname "$TRANCHE")" && pwd)/$(basename "$TRANCHE")
  SIMULATOR=${2:-$(dirname "$(dirname "$TRANCHE")")/bench/agents/tranche-agent-simulator}
  [[ -x "$SIMULATOR" ]] || die "no executable simulator at $SIMULATOR (build tranche-agent-simulator, or pass its path)"
  command -v jq >/dev/null || die "jq is not installed"
  command -v curl >/dev/null || die "curl is not installed"
}
