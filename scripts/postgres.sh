#!/usr/bin/env bash
# Single PostgreSQL 15 server on loopback, for tests, benchmarks and local use of STORE_POSTGRESQL_URL.
# Uses Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin); installs it with apt-get if it is missing.
#
#   scripts/postgres.sh start    # prints the URL (postgres://postgres@127.0.0.1:PORT/ferretdb) as the last stdout line
#   scripts/postgres.sh url      # prints the URL of the running server
#   scripts/postgres.sh status   # exit 0 if running, 1 if not
#   scripts/postgres.sh stop     # fast shutdown (then SIGKILL after POSTGRES_STOP_TIMEOUT s) and remove the state dir
#
# Env: POSTGRES_PORT (default: a random free port), POSTGRES_START_TIMEOUT (60 s), POSTGRES_STOP_TIMEOUT (30 s),
#      POSTGRES_STATE_DIR (${TMPDIR:-/tmp}/order-gateway-postgres), POSTGRES_BIN (/usr/lib/postgresql/15/bin),
#      POSTGRES_OS_USER (postgres: the account the server runs as when this script runs as root).
#
# The server listens on 127.0.0.1 only (no Unix socket) and trusts every loopback connection: it is for
# tests and development, not for data that matters. Settings changed from PostgreSQL's defaults (and why):
#   max_connections = 200   each gateway's FerretDB opens up to 50 connections (its pool_max_conns default);
#                           the default 100 is too few for the test suite's gateways side by side
#   jit = off               JIT compilation starts on queries the planner thinks are expensive, such as a scan
#                           of a large collection, and adds tens to hundreds of milliseconds to that query
#   listen_addresses, port, unix_socket_directories = '', and logging to the state dir (logging_collector off)
# fsync and synchronous_commit keep their defaults (on): a commit is on disk when the gateway is told so.
set -euo pipefail

PG_BIN="${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
STATE_DIR="${POSTGRES_STATE_DIR:-${TMPDIR:-/tmp}/order-gateway-postgres}"
START_TIMEOUT="${POSTGRES_START_TIMEOUT:-60}"
STOP_TIMEOUT="${POSTGRES_STOP_TIMEOUT:-30}"
OS_USER="${POSTGRES_OS_USER:-postgres}"
DATA="$STATE_DIR/data" LOGS="$STATE_DIR/logs" URL_FILE="$STATE_DIR/url"
LOG="$LOGS/server.log"
DATABASE=ferretdb

die() { echo "postgres.sh: $*" >&2; exit 1; }
say() { echo "postgres.sh: $*" >&2; }

# as_server CMD...: run CMD as the account that owns the server's files. PostgreSQL refuses to run as
# root, so as root that is $OS_USER; any other user runs it as itself.
as_server() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u "$OS_USER" -- "$@")
  else
    "$@"
  fi
}

ensure_postgres() {
  [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]] && return 0
  command -v apt-get >/dev/null 2>&1 \
    || die "PostgreSQL not found in $PG_BIN and apt-get is not available: install PostgreSQL 15 and set POSTGRES_BIN to its bin folder"
  [[ $EUID -eq 0 ]] \
    || die "PostgreSQL not found in $PG_BIN and installing it needs root: run apt-get install -y postgresql as root, or set POSTGRES_BIN"
  say "PostgreSQL not found in $PG_BIN; installing it with apt-get install -y postgresql ..."
  local log; log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >"$log" 2>&1; then
    say "apt-get install failed; running apt-get update and trying again ..."
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >>"$log" 2>&1; then
      tail -n 30 "$log" >&2; rm -f "$log"; die "could not install PostgreSQL with apt-get (see the output above)"
    fi
  fi
  rm -f "$log"
  [[ -x "$PG_BIN/initdb" ]] \
    || die "apt-get installed PostgreSQL, but not in $PG_BIN (found: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')); set POSTGRES_BIN"
}

running_pid() {  # prints the postmaster's pid if it is alive
  local pid; pid=$(head -1 "$DATA/postmaster.pid" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q postgres && echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[[ "$EPHEMERAL_LOW" =~ ^[0-9]+$ && "$EPHEMERAL_LOW" -gt 11000 ]] || EPHEMERAL_LOW=32768
free_port() {
  local p
  for _ in $(seq 200); do
    # Below the kernel's ephemeral range: a port in it may be the local end of some client's
    # connection, which no probe sees and which makes the bind fail ("Address already in use").
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    ! port_busy "$p" && { echo "$p"; return; }
  done
  die "no free loopback port found"
}

start() {
  local pid
  if pid=$(running_pid) && [[ -s "$URL_FILE" ]]; then
    say "already running (pid $pid)"; cat "$URL_FILE"; return 0
  fi
  ensure_postgres
  if [[ $EUID -eq 0 ]]; then
    id -u "$OS_USER" >/dev/null 2>&1 || die "PostgreSQL does not run as root, and there is no '$OS_USER' account to run it as (set POSTGRES_OS_USER)"
  fi
  local port="${POSTGRES_PORT:-$(free_port)}"
  port_busy "$port" && die "port $port is already in use"
  [[ -n "${pid:-}" ]] && die "a server (pid $pid) runs on $DATA but its URL is missing; run: $0 stop"
  rm -rf "$DATA" "$LOGS" "$URL_FILE"
  mkdir -p "$STATE_DIR" "$LOGS"
  if [[ $EUID -eq 0 ]]; then
    chown "$OS_USER:" "$STATE_DIR" "$LOGS"
    as_server test -w "$STATE_DIR" || die "$OS_USER cannot write to $STATE_DIR (a parent folder is closed to it?); set POSTGRES_STATE_DIR"
  fi

  # UTF8 and the C locale: FerretDB refuses other encodings and most locales.
  as_server "$PG_BIN/initdb" -D "$DATA" -U postgres -E UTF8 --no-locale --auth=trust >"$LOGS/initdb.log" 2>&1 \
    || { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
  # Loopback TCP only, without a password (see the header).
  as_server tee "$DATA/pg_hba.conf" >/dev/null <<EOF
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  trust
EOF
  as_server tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# scripts/postgres.sh (see its header for why)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 200
jit = off
logging_collector = off
log_line_prefix = '%m [%p] '
EOF

  local t0=$SECONDS
  # setsid: the server gets its own session, so it outlives the shell (and process group) that started it.
  local as=(); [[ $EUID -eq 0 ]] && as=(runuser -u "$OS_USER" --)
  if ! (cd / && setsid -w "${as[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT" start) >"$LOGS/pg_ctl.log" 2>&1; then
    say "server not ready within ${START_TIMEOUT}s. Last 50 lines of $LOG:"
    tail -n 50 "$LOG" >&2 2>/dev/null || true
    cat "$LOGS/pg_ctl.log" >&2
    if pid=$(running_pid); then kill -KILL "$pid" 2>/dev/null || true; fi
    exit 1
  fi
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DATABASE" 2>>"$LOGS/createdb.log" \
    || { cat "$LOGS/createdb.log" >&2; die "createdb $DATABASE failed"; }
  local url="postgres://postgres@127.0.0.1:$port/$DATABASE"
  echo "$url" >"$URL_FILE"
  local ver; ver=$("$PG_BIN/postgres" --version | awk '{print $3}')
  echo "postgresql ${ver} started at 127.0.0.1:$port (pid $(running_pid)) in $((SECONDS - t0))s; logs: $LOGS" >&2
  echo "$url"
}

stop() {
  local pid
  if pid=$(running_pid); then
    if ! as_server "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1; then
      say "server did not stop in ${STOP_TIMEOUT}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -rf "$DATA" "$LOGS" "$URL_FILE"
  rmdir "$STATE_DIR" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if pid=$(running_pid); then echo "running: $(cat "$URL_FILE" 2>/dev/null || echo starting) (pid $pid)"; else echo "not running"; exit 1; fi ;;
  url)
    running_pid >/dev/null && [[ -s "$URL_FILE" ]] || die "no running server (run: $0 start)"
    cat "$URL_FILE" ;;
  *) echo "usage: $0 {start|stop|status|url}" >&2; exit 2 ;;
esac
