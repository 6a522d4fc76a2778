# shellcheck shell=bash
# The zero-downtime demo's pieces, sourced by scripts/demo and
# bench/zero-downtime/run.sh: HAProxy on loopback, `tranche controller --dev`
# talking to it, examples/zero-downtime.yaml deployed behind it, and one
# measured rolling replace under tranche-loadgen's load.
#
# The caller sets `set -euo pipefail`, cds to the repository root, calls
# demo_setup once, then for each run: demo_start [--no-lb-drain],
# demo_deploy N, demo_measure VERSION, demo_stop. demo_setup installs a trap
# that stops everything started and removes the scratch dir on exit, also
# on Ctrl-C.
#
# Every process is started in its own session (setsid), so that Ctrl-C in
# the terminal reaches only this script, which then stops them in order:
# the application first (its members leave HAProxy and end), then the
# controller and its agent, then HAProxy.

demo_build_dir=${TRANCHE_BUILD_DIR:-build}
demo_loadgen_args=(--connections 4 --keep-alive-rate 50/s --new-connection-rate 20/s --timeout 2s --interval 1s)

# demo_wait SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, or fails
# the script after SECONDS saying what it waited for.
demo_wait() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: gave up after ${seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

demo_now() { date +%s.%N; }
demo_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# A loopback TCP port nobody listens on (below the ephemeral range, so no
# outgoing connection takes it meanwhile).
demo_free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htln "sport = :$port")" ]; then
      echo "$port"
      return 0
    fi
  done
  echo "demo: no free port found" >&2
  return 1
}

demo_setup() {
  ./scripts/bootstrap
  cmake -S . -B "$demo_build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$demo_build_dir" --target tranche tranche-hello tranche-loadgen

  tranche=$PWD/$demo_build_dir/src/tranche
  loadgen=$PWD/$demo_build_dir/bin/tranche-loadgen
  export PATH=$PWD/$demo_build_dir/bin:$PATH  # members run tranche-hello
  haproxy=${HAPROXY:-/usr/sbin/haproxy}
  demo_work=$(mktemp -d /tmp/tranche-demo-XXXXXX)
  demo_run=0
  controller_pid="" haproxy_pid="" loadgen_pid="" agent_pid=""
  trap demo_cleanup EXIT
  trap 'exit 130' INT TERM
}

demo_cleanup() {
  set +e
  demo_stop
  rm -rf "$demo_work"
}

# demo_stop: stops what demo_start and demo_measure started; idempotent.
demo_stop() {
  if [ -n "$loadgen_pid" ]; then
    kill -TERM "$loadgen_pid" 2>/dev/null || true
    wait "$loadgen_pid" 2>/dev/null || true
    loadgen_pid=""
  fi
  if [ -n "$controller_pid" ] && kill -0 "$controller_pid" 2>/dev/null; then
    "$tranche" delete demo >/dev/null 2>&1 || true
    demo_wait 60 "the members of demo to end" demo_no_members || true
    kill -TERM "$controller_pid" 2>/dev/null || true
    wait "$controller_pid" 2>/dev/null || true
  fi
  controller_pid=""
  if [ -n "$agent_pid" ]; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    demo_wait 20 "the agent to exit" demo_gone "$agent_pid" || true
    agent_pid=""
  fi
  if [ -n "$haproxy_pid" ]; then
    kill -TERM "$haproxy_pid" 2>/dev/null || true
    wait "$haproxy_pid" 2>/dev/null || true
    haproxy_pid=""
  fi
}

demo_gone() { ! kill -0 "$1" 2>/dev/null; }

demo_no_members() { [ "$("$tranche" get members demo -o json 2>/dev/null | grep -c '"id"')" = 0 ]; }

# How many servers of HAProxy's backend `web` take traffic: UP (checked) or
# "no check" (up, checks off); DRAIN and MAINT ones do not count.
demo_servers_up() {
  curl -s "http://127.0.0.1:$stats_port/stats;csv" |
    awk -F, '$1 == "web" && $2 != "BACKEND" && ($18 ~ /^UP/ || $18 == "no check") { n++ } END { print n + 0 }'
}

demo_servers_up_is() { [ "$(demo_servers_up)" = "$1" ]; }

demo_haproxy_config() {
  cat <<EOF
# Written by scripts/lib/haproxy-demo.sh. Backend web has no servers: the
# controller adds one per Active member through the admin socket. No
# redispatch, no retry-on and no retries, so that the run without draining
# shows every request it loses (a refused connect is a 503 at once).
# retries 0 also keeps HAProxy 2.6.12 alive: it segfaults when a server is
# deleted while a request waits out the turn-around delay to retry a refused
# connect to it (7 crashes in 8 tries here with the default retries 3, none
# in 8 with retries 0), which is what the run without draining does.
global
  stats socket $run_dir/haproxy.sock level admin
  maxconn 4096

defaults
  mode http
  retries 0
  timeout connect 1s
  timeout client 30s
  timeout server 10s
  timeout http-keep-alive 30s

frontend demo
  bind 127.0.0.1:$frontend_port
  default_backend web

backend web
  balance roundrobin

listen stats
  bind 127.0.0.1:$stats_port
  stats enable
  stats uri /stats
EOF
}

demo_accepting() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

demo_start_haproxy() {
  for _ in 1 2 3; do
    frontend_port=$(demo_free_port)
    stats_port=$(demo_free_port)
    [ "$frontend_port" != "$stats_port" ] || continue
    demo_haproxy_config >"$run_dir/haproxy.cfg"
    "$haproxy" -c -q -f "$run_dir/haproxy.cfg"
    setsid "$haproxy" -db -f "$run_dir/haproxy.cfg" >"$run_dir/haproxy.log" 2>&1 &
    haproxy_pid=$!
    if demo_wait 10 "HAProxy to listen" demo_haproxy_ready; then
      return 0
    fi
    # Most likely a port taken meanwhile: try other ones.
    kill -TERM "$haproxy_pid" 2>/dev/null
    wait "$haproxy_pid" 2>/dev/null
    haproxy_pid=""
  done
  cat "$run_dir/haproxy.log" >&2
  return 1
}

demo_haproxy_ready() {
  kill -0 "$haproxy_pid" 2>/dev/null && [ -S "$run_dir/haproxy.sock" ] && demo_accepting "$frontend_port" &&
    demo_accepting "$stats_port"
}

demo_controller_ready() {
  kill -0 "$controller_pid" 2>/dev/null || {
    cat "$run_dir/controller.log" >&2
    exit 1
  }
  [ -s "$data/controller.url" ]
}

# demo_start [--no-lb-drain]: HAProxy and a fresh controller (own data dir).
demo_start() {
  demo_run=$((demo_run + 1))
  run_dir=$demo_work/run$demo_run
  data=$run_dir/tranche-data
  mkdir -p "$run_dir"
  demo_start_haproxy
  echo "HAProxy on http://127.0.0.1:$frontend_port/ (stats on :$stats_port, admin socket $run_dir/haproxy.sock)"

  setsid "$tranche" controller --dev --listen 127.0.0.1:0 --data-dir "$data" \
    --haproxy-socket "$run_dir/haproxy.sock" "$@" >"$run_dir/controller.log" 2>&1 &
  controller_pid=$!
  demo_wait 30 "the controller to start" demo_controller_ready
  export TRANCHE_SERVER
  TRANCHE_SERVER=$(cat "$data/controller.url")
  export TRANCHE_TOKEN_FILE=$data/admin.token
  demo_wait 30 "the local agent" test -s "$data/agent/agent.pid"
  agent_pid=$(cat "$data/agent/agent.pid")
  echo "controller at $TRANCHE_SERVER (data in $data) $*"
}

demo_active() { [ "$("$tranche" get members demo -o json | grep -c '"state": "Active"' || true)" -ge "$1" ]; }

# demo_deploy N: examples/zero-downtime.yaml with N members, all Active and
# UP in HAProxy.
demo_deploy() {
  local members=$1
  sed "s/desired: 6}/desired: $members}/" examples/zero-downtime.yaml >"$run_dir/demo.yaml"
  grep -q "desired: $members}" "$run_dir/demo.yaml"
  echo
  echo "\$ tranche apply -f examples/zero-downtime.yaml   # members.desired: $members"
  "$tranche" apply -f "$run_dir/demo.yaml"
  echo "waiting for $members Active members, each UP in HAProxy's backend web..."
  demo_wait 120 "$members Active members" demo_active "$members"
  demo_wait 60 "$members servers UP in HAProxy" demo_servers_up_is "$members"
  "$tranche" get members demo
}

# demo_measure VERSION: tranche-loadgen against HAProxy while demo/web rolls
# to VERSION. Sets rollout_seconds, rollout_phase and loadgen_json, and
# leaves loadgen's table in $run_dir/loadgen.out.
demo_measure() {
  local version=$1 members
  members=$(demo_servers_up)
  rm -f "$run_dir/loadgen.stop"
  setsid "$loadgen" --url "http://127.0.0.1:$frontend_port/" "${demo_loadgen_args[@]}" --duration 10m \
    --stop-file "$run_dir/loadgen.stop" --json >"$run_dir/loadgen.out" 2>&1 &
  loadgen_pid=$!
  # A measured stretch of v1 before the update (a window of the by-version
  # table, not a wait for some state).
  sleep 3

  echo
  echo "\$ tranche update demo/web --version $version"
  local began ended rc=0
  began=$(demo_now)
  "$tranche" update demo/web --version "$version"
  echo "\$ tranche rollout status demo --watch"
  "$tranche" rollout status demo --watch || rc=$?
  ended=$(demo_now)
  rollout_seconds=$(demo_elapsed "$began" "$ended")
  rollout_phase=$([ "$rc" = 0 ] && echo Succeeded || echo "not Succeeded (rollout status exited $rc)")
  demo_wait 60 "$members servers UP in HAProxy after the rollout" demo_servers_up_is "$members" || true
  # And one of v2 after it.
  sleep 3
  touch "$run_dir/loadgen.stop"
  wait "$loadgen_pid" || true
  loadgen_pid=""
  loadgen_json=$(grep '^{"bench":"loadgen"' "$run_dir/loadgen.out" | tail -1) || {
    echo "demo: tranche-loadgen printed no figures:" >&2
    cat "$run_dir/loadgen.out" >&2
    return 1
  }
}

# demo_report TITLE: loadgen's table and the rollout's duration.
demo_report() {
  echo
  echo "== $1"
  grep -v '^{"bench":"loadgen"' "$run_dir/loadgen.out"
  printf '  %-22s%12s\n' "rollout duration" "${rollout_seconds}s"
  printf '  %-22s%12s\n' "rollout" "$rollout_phase"
}

# demo_result_json: the run's figures as one JSON object: loadgen's line
# (without its "bench" key) plus the rollout's.
demo_result_json() {
  local phase=Succeeded
  [ "$rollout_phase" = Succeeded ] || phase=Failed
  echo "{\"rollout_s\":$rollout_seconds,\"rollout\":\"$phase\",${loadgen_json#\{\"bench\":\"loadgen\",}"
}
