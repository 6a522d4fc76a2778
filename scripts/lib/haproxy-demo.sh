# shellcheck shell=bash
# The zero-downtime demo's pieces, sourced by scripts/demo and
# bench/zero-downtime/run.sh: HAProxy on loopback, `tranche controller --dev`
# talking to it, examples/zero-downtime.yaml deployed behind it, and changes
# (a rolling replace, a maintenance replace) under tranche-loadgen's load.
#
# The caller sets `set -euo pipefail`, cds to the repository root, calls
# demo_setup once, then for each run: demo_start [--no-lb-drain],
# demo_deploy N, then either demo_measure VERSION (the demo: one rolling
# replace with 3 s of load around it) or demo_load_start ARGS..., changes
# (demo_rollout VERSION, demo_maintenance_replace) and demo_phase NAME
# between them, demo_load_stop; then demo_stop. demo_setup installs a trap
# that stops everything started and removes the scratch dir on exit, also
# on Ctrl-C.
#
# Every process is started in its own session (setsid), so that Ctrl-C in
# the terminal reaches only this script, which then stops them in order:
# the application first (its members leave HAProxy and end), then the
# controller and its agent, then HAProxy.

demo_build_dir=${TRANCHE_BUILD_DIR:-build}
# The demo's load: light, so that the demo runs anywhere. The bench passes
# its own to demo_load_start.
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

# A change is over for the traffic once backend web has exactly N servers,
# every one UP: none left draining or in maintenance.
demo_servers_settled() {
  curl -s "http://127.0.0.1:$stats_port/stats;csv" |
    awk -F, -v want="$1" '$1 == "web" && $2 != "BACKEND" { all++; if ($18 ~ /^UP/ || $18 == "no check") up++ }
      END { exit !(all == want && up == want) }'
}

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
  rollout_seconds="" rollout_phase="" maintenance_seconds="" maintenance_result=""
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

# Exactly N members, all Active.
demo_members_settled() {
  local members
  members=$("$tranche" get members demo -o json)
  [ "$(grep -c '"id"' <<<"$members" || true)" = "$1" ] && [ "$(grep -c '"state": "Active"' <<<"$members" || true)" = "$1" ]
}

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

# demo_load_start ARGS...: tranche-loadgen on HAProxy's frontend with ARGS
# (rates, timeout, ...) until demo_load_stop; its phase file starts as
# "steady" (demo_phase).
demo_load_start() {
  rm -f "$run_dir/loadgen.stop"
  echo steady >"$run_dir/loadgen.phase"
  setsid "$loadgen" --url "http://127.0.0.1:$frontend_port/" "$@" --duration 10m \
    --stop-file "$run_dir/loadgen.stop" --phase-file "$run_dir/loadgen.phase" --json >"$run_dir/loadgen.out" 2>&1 &
  loadgen_pid=$!
}

# demo_phase NAME: the requests tranche-loadgen begins from now on count under
# NAME (it reads the file every 100 ms; a rename, so it never reads half).
demo_phase() {
  echo "$1" >"$run_dir/loadgen.phase.new"
  mv "$run_dir/loadgen.phase.new" "$run_dir/loadgen.phase"
  sleep 0.2 # two of its polls: the phase has switched when this returns
}

# demo_load_stop: stops tranche-loadgen (the requests in flight finish) and
# sets loadgen_json to its figures; its table stays in $run_dir/loadgen.out.
demo_load_stop() {
  touch "$run_dir/loadgen.stop"
  wait "$loadgen_pid" || true
  loadgen_pid=""
  # shellcheck disable=SC2034 # read by the caller
  loadgen_json=$(grep '^{"bench":"loadgen"' "$run_dir/loadgen.out" | tail -1) || {
    echo "demo: tranche-loadgen printed no figures:" >&2
    cat "$run_dir/loadgen.out" >&2
    return 1
  }
}

# demo_rollout VERSION: demo/web rolls to VERSION while `rollout status
# --watch` shows it; returns once the rollout ended and HAProxy's backend
# has as many servers as before, all UP. Sets rollout_seconds and
# rollout_phase.
demo_rollout() {
  local version=$1 members began ended rc=0
  members=$(demo_servers_up)
  echo
  echo "\$ tranche update demo/web --version $version"
  began=$(demo_now)
  "$tranche" update demo/web --version "$version"
  echo "\$ tranche rollout status demo --watch"
  "$tranche" rollout status demo --watch || rc=$?
  ended=$(demo_now)
  rollout_seconds=$(demo_elapsed "$began" "$ended")
  rollout_phase=$([ "$rc" = 0 ] && echo Succeeded || echo "not Succeeded (rollout status exited $rc)")
  demo_wait 60 "$members servers UP in HAProxy after the rollout" demo_servers_settled "$members" || true
}

# Every node of demo has maintenance off again (the application's value, set
# by the command, returns to off by itself once every member is replaced).
demo_maintenance_off() {
  local app
  app=$("$tranche" describe demo -o json | tr -d ' \n') || return 1
  grep -q '"maintenance":{"effective":"off"' <<<"$app" && ! grep -q '"maintenance":{"effective":"replace"' <<<"$app"
}

# demo_maintenance_replace: `tranche set maintenance replace demo`; returns
# once its value is off again (every member replaced), there are as many
# members as before, all Active, and HAProxy's backend has them all UP and
# no other. Sets maintenance_seconds and maintenance_result.
demo_maintenance_replace() {
  local members began ended
  members=$(demo_servers_up)
  echo
  echo "\$ tranche set maintenance replace demo"
  began=$(demo_now)
  "$tranche" set maintenance replace demo
  maintenance_result=completed
  demo_wait 300 "maintenance replace of demo to complete" demo_maintenance_off || maintenance_result="not completed"
  demo_wait 60 "$members Active members after maintenance" demo_members_settled "$members" || maintenance_result="not settled"
  demo_wait 60 "$members servers UP in HAProxy after maintenance" demo_servers_settled "$members" || maintenance_result="not settled"
  ended=$(demo_now)
  maintenance_seconds=$(demo_elapsed "$began" "$ended")
  echo "maintenance replace: $maintenance_result after ${maintenance_seconds}s"
}

# demo_measure VERSION: the demo's measurement: its light load from 3 s
# before demo/web rolls to VERSION until 3 s after (phases steady,
# rolling-replace, steady). Sets rollout_seconds, rollout_phase and
# loadgen_json.
demo_measure() {
  demo_load_start "${demo_loadgen_args[@]}"
  # A measured stretch of v1 before the update (a window of the by-version
  # table, not a wait for some state).
  sleep 3
  demo_phase rolling-replace
  demo_rollout "$1"
  demo_phase steady
  # And one of v2 after it.
  sleep 3
  demo_load_stop
}

# demo_report TITLE: loadgen's table and the changes' durations.
demo_report() {
  echo
  echo "== $1"
  grep -v '^{"bench":"loadgen"' "$run_dir/loadgen.out"
  printf '  %-22s%12s\n' "rollout duration" "${rollout_seconds}s"
  printf '  %-22s%12s\n' "rollout" "$rollout_phase"
  if [ -n "${maintenance_seconds:-}" ]; then
    printf '  %-22s%12s\n' "maintenance duration" "${maintenance_seconds}s"
    printf '  %-22s%12s\n' "maintenance replace" "$maintenance_result"
  fi
}
