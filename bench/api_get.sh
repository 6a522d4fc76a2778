#!/usr/bin/env bash
# api_get: throughput and latency of `GET /api/v1/applications/{app}` on a
# real controller, measured with wrk, against `GET /healthz` on the same
# controller in the same run (a trivial route without auth or store reads) as
# the baseline. quality.md P4. A third run, `GET /api/v1/version` with the
# token (HTTP + token check, no store reads beyond the token), shows how much
# of the difference is authentication and how much the handler.
#
#   bench/api_get.sh [PATH-TO-tranche]        (default build/src/tranche)
#
# Environment: WRK_THREADS (2), WRK_CONNECTIONS (32), WRK_DURATION (10s).
# Builds nothing. Starts `tranche controller --listen 127.0.0.1:0` in a
# temporary data dir, applies a two-cluster manifest, runs wrk against the
# baseline, the version route and then the application route, prints a table and one JSON line
# {"bench":"api_get", ...}, and on any exit stops the controller (SIGTERM)
# and removes the temporary dir.

set -euo pipefail

TRANCHE=${1:-build/src/tranche}
THREADS=${WRK_THREADS:-2}
CONNECTIONS=${WRK_CONNECTIONS:-32}
DURATION=${WRK_DURATION:-10s}

die() {
  echo "api_get: $*" >&2
  exit 1
}

[[ -x "$TRANCHE" ]] || die "no executable tranche binary at $TRANCHE (build it, or pass its path)"
TRANCHE=$(cd "$(dirname "$TRANCHE")" && pwd)/$(basename "$TRANCHE")
command -v wrk >/dev/null || die "wrk is not installed (Debian package wrk)"
command -v curl >/dev/null || die "curl is not installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tranche-api-get.XXXXXX")
CONTROLLER_PID=""

cleanup() {
  local status=$?
  if [[ -n "$CONTROLLER_PID" ]] && kill -0 "$CONTROLLER_PID" 2>/dev/null; then
    kill -TERM "$CONTROLLER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do # up to 10 s for a clean shutdown
      kill -0 "$CONTROLLER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$CONTROLLER_PID" 2>/dev/null; then
      echo "api_get: controller did not stop on SIGTERM within 10 s; killing it" >&2
      kill -KILL "$CONTROLLER_PID" 2>/dev/null || true
    fi
    wait "$CONTROLLER_PID" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$WORK/controller.log" ]]; then
    echo "api_get: last lines of the controller log:" >&2
    tail -n 20 "$WORK/controller.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The machine and build, as quality.md asks every benchmark to state.
MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MACHINE="${MODEL:-unknown CPU}, $(nproc) CPUs"
BUILD=unknown
dir=$(dirname "$TRANCHE")
while [[ "$dir" != "/" ]]; do
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    BUILD=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$dir/CMakeCache.txt")
    if grep -q '^TRANCHE_SANITIZE:BOOL=ON' "$dir/CMakeCache.txt"; then
      BUILD="$BUILD (ASan+UBSan)"
    fi
    break
  fi
  dir=$(dirname "$dir")
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- controller -------------------------------------------------------------
DATA="$WORK/data"
mkdir -p "$DATA"
"$TRANCHE" controller --listen 127.0.0.1:0 --data-dir "$DATA" >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!

URL=""
for _ in $(seq 1 200); do # up to 20 s
  kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited during start-up"
  if [[ -s "$DATA/controller.url" && -s "$DATA/admin.token" ]]; then
    URL=$(head -n 1 "$DATA/controller.url")
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz" || true)" == 200 ]]; then
      break
    fi
  fi
  URL=""
  sleep 0.1
done
[[ -n "$URL" ]] || die "the controller did not become ready within 20 s"
TOKEN=$(head -n 1 "$DATA/admin.token")

# --- the application --------------------------------------------------------
cat >"$WORK/shop.yaml" <<'YAML'
application: shop
description: api_get benchmark
groups:
  - name: backend
    clusters:
      - name: db
        members: {min: 1, max: 1, desired: 1}
        artifact: {version: "15.4", command: ["tranche-hello", "--port", "${PORT_MAIN}"]}
        ports: [main]
clusters:
  - name: web
    dependsOn: [backend]
    members: {min: 2, max: 10, desired: 4}
    artifact: {version: "1.0.0", command: ["tranche-hello", "--port", "${PORT_HTTP}"]}
    ports: [http]
YAML
"$TRANCHE" --server "$URL" --token "$TOKEN" apply -f "$WORK/shop.yaml" >"$WORK/apply.out" 2>&1 ||
  die "apply failed: $(cat "$WORK/apply.out")"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/api/v1/applications/shop")
[[ "$code" == 200 ]] || die "GET /api/v1/applications/shop answered $code, not 200"

# --- wrk --------------------------------------------------------------------
# Prints "rps p50_ms p99_ms requests non2xx socket_errors" for one wrk output.
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v + 0
    }
    /^Requests\/sec:/            { rps = $2 }
    $1 == "50%"                  { p50 = ms($2) }
    $1 == "99%"                  { p99 = ms($2) }
    / requests in /              { requests = $1 }
    /Non-2xx or 3xx responses:/  { non2xx = $NF }
    /Socket errors:/ {
      gsub(/,/, "")
      errors = $4 + $6 + $8 + $10
    }
    END {
      if (rps == "" || p50 == "" || p99 == "") exit 1
      printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, requests, non2xx + 0, errors + 0
    }' "$1"
}

run_wrk() { # name, then wrk arguments
  local name=$1
  shift
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" >"$WORK/wrk-$name.txt" 2>&1 ||
    die "wrk failed for $name: $(cat "$WORK/wrk-$name.txt")"
  parse_wrk "$WORK/wrk-$name.txt" || die "cannot parse wrk output for $name: $(cat "$WORK/wrk-$name.txt")"
}

# A short warm-up, not reported.
wrk -t1 -c4 -d1s -H "Authorization: Bearer $TOKEN" "$URL/api/v1/applications/shop" >/dev/null 2>&1 || true

base=$(run_wrk healthz "$URL/healthz")
auth=$(run_wrk version -H "Authorization: Bearer $TOKEN" "$URL/api/v1/version")
app=$(run_wrk app -H "Authorization: Bearer $TOKEN" "$URL/api/v1/applications/shop")
read -r base_rps base_p50 base_p99 base_requests base_non2xx base_errors <<<"$base"
read -r auth_rps auth_p50 auth_p99 auth_requests auth_non2xx auth_errors <<<"$auth"
read -r app_rps app_p50 app_p99 app_requests app_non2xx app_errors <<<"$app"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "null" }'; }
rps_ratio=$(ratio "$app_rps" "$base_rps")
p50_ratio=$(ratio "$app_p50" "$base_p50")
p99_ratio=$(ratio "$app_p99" "$base_p99")

echo "api_get: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, load generator on the same machine"
echo "machine: $MACHINE; build: $BUILD; loadavg $LOAD_BEFORE -> $LOAD_AFTER"
echo
printf '%-36s %11s %9s %9s %10s %8s %7s\n' "route" "requests/s" "p50 ms" "p99 ms" "requests" "non-2xx" "errors"
printf '%-36s %11.0f %9.3f %9.3f %10d %8d %7d\n' "GET /healthz (baseline)" \
  "$base_rps" "$base_p50" "$base_p99" "$base_requests" "$base_non2xx" "$base_errors"
printf '%-36s %11.0f %9.3f %9.3f %10d %8d %7d\n' "GET /api/v1/version (token check)" \
  "$auth_rps" "$auth_p50" "$auth_p99" "$auth_requests" "$auth_non2xx" "$auth_errors"
printf '%-36s %11.0f %9.3f %9.3f %10d %8d %7d\n' "GET /api/v1/applications/shop" \
  "$app_rps" "$app_p50" "$app_p99" "$app_requests" "$app_non2xx" "$app_errors"
printf '%-36s %11s %9s %9s\n' "ratio app / healthz" "${rps_ratio}x" "${p50_ratio}x" "${p99_ratio}x"
echo

json_string() { # minimal escaping for the machine and build strings
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}
printf '{"bench":"api_get","machine":%s,"build":%s,"wrk":"-t%s -c%s -d%s","app_rps":%.1f,"app_p50_ms":%.3f,"app_p99_ms":%.3f,"healthz_rps":%.1f,"healthz_p50_ms":%.3f,"healthz_p99_ms":%.3f,"version_rps":%.1f,"version_p50_ms":%.3f,"version_p99_ms":%.3f,"rps_ratio":%s,"p50_ratio":%s,"p99_ratio":%s,"app_non2xx":%d,"app_socket_errors":%d,"healthz_non2xx":%d,"healthz_socket_errors":%d,"version_non2xx":%d,"loadavg_before":"%s","loadavg_after":"%s"}\n' \
  "$(json_string "$MACHINE")" "$(json_string "$BUILD")" "$THREADS" "$CONNECTIONS" "$DURATION" \
  "$app_rps" "$app_p50" "$app_p99" "$base_rps" "$base_p50" "$base_p99" "$auth_rps" "$auth_p50" "$auth_p99" \
  "$rps_ratio" "$p50_ratio" "$p99_ratio" "$app_non2xx" "$app_errors" "$base_non2xx" "$base_errors" "$auth_non2xx" \
  "$LOAD_BEFORE" "$LOAD_AFTER"

if ((app_non2xx > 0 || base_non2xx > 0 || auth_non2xx > 0)); then
  die "some responses were not 2xx: the figures are not valid"
fi
