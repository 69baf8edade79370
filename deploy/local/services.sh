#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer for `make run` / `make test`.
# Order: what DATABASE_URL/REDIS_URL name (or the local defaults) if it answers; else the
# machine's own PostgreSQL cluster on that port, started the way this kind of machine starts
# it; else private instances under the var directory (YWM_VAR_DIR, default var/) from the
# system's binaries, on the URL's port; else say exactly what to install.
#
# Whatever this script starts is written to <var>/services.started, one line each;
# `services.sh stop` stops exactly those (`make run` calls it when it exits) and nothing
# that was already running before, such as the machine's own PostgreSQL and Redis.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
var=${YWM_VAR_DIR:-$here/var}
case "$var" in /*) ;; *) var="$here/$var" ;; esac
started="$var/services.started"
mkdir -p "$var"

pg_url=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/0}

port_of() { python3 -c 'import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port or sys.argv[2])' "$1" "$2"; }
pg_up() { python3 - "$1" <<'PY' 2>/dev/null
import sys, socket, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=1)
s.close()
PY
}
redis_up() { python3 - "$1" <<'PY' 2>/dev/null
import sys, socket, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=1)
s.sendall(b"PING\r\n"); ok = s.recv(16).startswith(b"+PONG"); s.close()
sys.exit(0 if ok else 1)
PY
}
wait_for() { for _ in $(seq 1 50); do "$@" && return 0; sleep 0.2; done; return 1; }
# PostgreSQL refuses to run as root: a private instance then belongs to the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then runuser -u postgres -- "$@"; else "$@"; fi
}
record() { echo "$*" >>"$started"; }
gone() { ! kill -0 "$1" 2>/dev/null; }

stop_started() {
  [ -f "$started" ] || return 0
  # Newest first, so what was started last stops first.
  tac "$started" | while read -r kind a b; do
    case "$kind" in
      redis)
        pid=$(cat "$a" 2>/dev/null || true)
        # Only that pid, and only while it is still a redis-server (pids are reused).
        if [ -n "$pid" ] && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = redis-server ]; then
          kill "$pid" && wait_for gone "$pid"
          echo "services: stopped the Redis started on port $b"
        fi
        rm -f "$a" ;;
      pg)
        if as_owner "$b/pg_ctl" -D "$a" status >/dev/null 2>&1; then
          as_owner "$b/pg_ctl" -D "$a" stop -m fast >/dev/null
          echo "services: stopped the private PostgreSQL in $a"
        fi ;;
      cluster)
        pg_ctlcluster --skip-systemctl-redirect "$a" "$b" stop \
          && echo "services: stopped the machine's PostgreSQL $a/$b (it was not running)" ;;
    esac
  done
  rm -f "$started"
}

if [ "${1:-}" = stop ]; then
  stop_started
  exit 0
fi

pg_port=$(port_of "$pg_url" 5432)
redis_port=$(port_of "$redis_url" 6379)

if ! pg_up "$pg_url"; then
  # The machine's own cluster, only if one is configured for this port and is down.
  cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$pg_port" '$3 == p && $4 == "down" {print $1, $2; exit}' || true)
  if [ -n "$cluster" ]; then
    echo "services: starting the machine's PostgreSQL $cluster"
    # shellcheck disable=SC2086
    if pg_ctlcluster --skip-systemctl-redirect $cluster start; then
      record cluster $cluster
      wait_for pg_up "$pg_url" || true
    fi
  fi
  if ! pg_up "$pg_url"; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bindir" ]; then
      echo "services: PostgreSQL is not running and not installed: apt-get install postgresql" >&2
      exit 1
    fi
    echo "services: starting a private PostgreSQL under $var/pg on 127.0.0.1:$pg_port"
    if [ ! -d "$var/pg" ]; then
      mkdir -p "$var/pg"
      if [ "$(id -u)" = 0 ]; then chown postgres "$var/pg"; fi
      as_owner "$bindir/initdb" -D "$var/pg" -U postgres --auth=trust >/dev/null
    fi
    as_owner "$bindir/pg_ctl" -D "$var/pg" -l "$var/pg/server.log" \
      -o "-h 127.0.0.1 -p $pg_port -k $var/pg" start >/dev/null
    record pg "$var/pg" "$bindir"
    wait_for pg_up "$pg_url" || { echo "services: PostgreSQL did not start (see $var/pg/server.log)" >&2; exit 1; }
  fi
fi

if ! redis_up "$redis_url"; then
  if ! command -v redis-server >/dev/null; then
    echo "services: Redis is not running and not installed: apt-get install redis-server" >&2
    exit 1
  fi
  echo "services: starting Redis on 127.0.0.1:$redis_port (nothing kept on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" \
    --appendonly no --dir "$var" --logfile "$var/redis.log" --pidfile "$var/redis-$redis_port.pid"
  record redis "$var/redis-$redis_port.pid" "$redis_port"
  wait_for redis_up "$redis_url" || { echo "services: Redis did not start (see $var/redis.log)" >&2; exit 1; }
fi
echo "services: PostgreSQL and Redis answer"
