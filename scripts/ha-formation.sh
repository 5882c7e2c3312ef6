#!/usr/bin/env bash
# A pg_auto_failover formation on one machine, for the failover drill and `soak --failover`:
# a monitor and two PostgreSQL nodes (primary and secondary), each on its own port, run as
# the `postgres` user. Needs the Debian packages postgresql-15-auto-failover and
# pg-auto-failover-cli (`.ci/run` installs them).
#
#   scripts/ha-formation.sh up        # create (first time) and start; waits for primary + secondary
#   scripts/ha-formation.sh url       # the multi-host URL applications use (target_session_attrs=read-write)
#   scripts/ha-formation.sh failover  # ask the monitor for a failover; waits until it is done
#   scripts/ha-formation.sh state     # pg_autoctl show state
#   scripts/ha-formation.sh down      # stop every process and delete the formation's files
#
# HA_DIR (default /tmp/accountctl-ha) holds the data directories; HA_PORT (default 5460) is
# the monitor's port, the nodes take the next two. HA_DB (default accountctl) is the database.
set -Eeuo pipefail

# A step that fails says which one and shows the formation's logs (the create and run logs
# are files in HA_DIR, which `down` deletes): a caller sees why, not an empty stderr.
fail_with_logs() {
  echo "ha-formation.sh: \`$BASH_COMMAND\` failed; the formation's logs:" >&2
  for f in "$HA_DIR"/*.log; do
    [ -f "$f" ] || continue
    echo "== $f" >&2
    tail -n 40 "$f" >&2
  done
}
trap fail_with_logs ERR

HA_DIR="${HA_DIR:-/tmp/accountctl-ha}"
HA_PORT="${HA_PORT:-5460}"
HA_DB="${HA_DB:-accountctl}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
MONITOR_URI="postgres://autoctl_node@127.0.0.1:${HA_PORT}/pg_auto_failover?sslmode=disable"

as_pg() {
  if [ "$(id -un)" = postgres ]; then
    env PATH="$PGBIN:$PATH" "$@"
  else
    runuser -u postgres -- env PATH="$PGBIN:$PATH" XDG_CONFIG_HOME="$HA_DIR/config" XDG_DATA_HOME="$HA_DIR/data" "$@"
  fi
}

need() {
  command -v pg_autoctl >/dev/null 2>&1 || {
    echo "pg_autoctl is not installed (apt-get install pg-auto-failover-cli postgresql-15-auto-failover)" >&2
    exit 3
  }
}

# Starts `pg_autoctl run` for one data directory in the background (its log in HA_DIR).
run_node() {
  local name=$1
  if [ -f "$HA_DIR/$name.pid" ] && kill -0 "$(cat "$HA_DIR/$name.pid")" 2>/dev/null; then
    return
  fi
  as_pg bash -c "nohup pg_autoctl run --pgdata '$HA_DIR/$name' >>'$HA_DIR/$name.log' 2>&1 & echo \$! >'$HA_DIR/$name.pid'"
}

state() {
  as_pg pg_autoctl show state --pgdata "$HA_DIR/monitor" 2>/dev/null
}

# Waits until the formation has one primary and one secondary.
wait_healthy() {
  for _ in $(seq 1 180); do
    local s
    s=$(state || true)
    if grep -qE '\|\s+primary\s+\|\s+primary\s*$' <<<"$s" && grep -qE '\|\s+secondary\s+\|\s+secondary\s*$' <<<"$s"; then
      return 0
    fi
    sleep 1
  done
  echo "the formation did not become healthy:" >&2
  state >&2 || true
  return 1
}

up() {
  need
  mkdir -p "$HA_DIR"
  chown postgres:postgres "$HA_DIR" 2>/dev/null || true
  if [ ! -d "$HA_DIR/monitor" ]; then
    as_pg pg_autoctl create monitor --pgdata "$HA_DIR/monitor" --pgport "$HA_PORT" \
      --hostname 127.0.0.1 --auth trust --no-ssl >>"$HA_DIR/create.log" 2>&1
  fi
  run_node monitor
  for _ in $(seq 1 60); do "$PGBIN/pg_isready" -h 127.0.0.1 -p "$HA_PORT" -q && break; sleep 1; done
  local port=$HA_PORT
  for node in node1 node2; do
    port=$((port + 1))
    if [ ! -d "$HA_DIR/$node" ]; then
      as_pg pg_autoctl create postgres --pgdata "$HA_DIR/$node" --pgport "$port" \
        --hostname 127.0.0.1 --name "$node" --monitor "$MONITOR_URI" --auth trust --no-ssl \
        --dbname "$HA_DB" >>"$HA_DIR/create.log" 2>&1
    fi
    run_node "$node"
    # The secondary clones the primary: create it once the monitor has the first node as
    # its single primary (on a loaded machine that takes a while after it accepts
    # connections).
    if [ "$node" = node1 ]; then
      for _ in $(seq 1 120); do "$PGBIN/pg_isready" -h 127.0.0.1 -p "$port" -q && break; sleep 1; done
      for _ in $(seq 1 120); do
        state 2>/dev/null | grep -qE '\|\s+single\s+\|\s+single\s*$' && break
        sleep 1
      done
    fi
  done
  wait_healthy
  # The nodes trust local TCP connections as postgres (the tests' convention).
  url
}

url() {
  # The engine prints the URL without a user; the nodes trust postgres on loopback.
  as_pg pg_autoctl show uri --pgdata "$HA_DIR/monitor" --formation default | sed 's|^postgres://|postgres://postgres@|'
}

failover() {
  need
  as_pg pg_autoctl perform failover --pgdata "$HA_DIR/monitor" >>"$HA_DIR/failover.log" 2>&1
  wait_healthy
}

down() {
  for name in node2 node1 monitor; do
    if [ -d "$HA_DIR/$name" ]; then
      as_pg pg_autoctl stop --pgdata "$HA_DIR/$name" >/dev/null 2>&1 || true
    fi
  done
  for name in node2 node1 monitor; do
    if [ -f "$HA_DIR/$name.pid" ]; then
      pid=$(cat "$HA_DIR/$name.pid")
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$HA_DIR"
}

case "${1:-}" in
  up) up ;;
  url) url ;;
  failover) failover ;;
  state) state ;;
  down) down ;;
  *) echo "usage: $0 up|url|failover|state|down" >&2; exit 2 ;;
esac
