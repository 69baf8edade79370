#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer for `make run` / `make test`.
# Order: what DATABASE_URL/REDIS_URL name (or the local defaults) if it answers; else the
# machine's own services, started the way this kind of machine starts them; else private
# instances under var/ from the system's binaries; else say exactly what to install.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
var="$here/var"
mkdir -p "$var"

pg_url=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/0}

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

if ! pg_up "$pg_url"; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "services: starting the machine's PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if ! wait_for pg_up "$pg_url"; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bindir" ]; then
      echo "services: PostgreSQL is not running and not installed: apt-get install postgresql" >&2
      exit 1
    fi
    echo "services: starting a private PostgreSQL under var/pg on 127.0.0.1:5432"
    if [ ! -d "$var/pg" ]; then
      "$bindir/initdb" -D "$var/pg" -U postgres --auth=trust >/dev/null
    fi
    "$bindir/pg_ctl" -D "$var/pg" -l "$var/pg.log" -o "-h 127.0.0.1 -p 5432 -k $var" start >/dev/null
    wait_for pg_up "$pg_url" || { echo "services: PostgreSQL did not start (see var/pg.log)" >&2; exit 1; }
  fi
fi

if ! redis_up "$redis_url"; then
  if ! command -v redis-server >/dev/null; then
    echo "services: Redis is not running and not installed: apt-get install redis-server" >&2
    exit 1
  fi
  echo "services: starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$var" --logfile "$var/redis.log" || true
  wait_for redis_up "$redis_url" || { echo "services: Redis did not start (see var/redis.log)" >&2; exit 1; }
fi
echo "services: PostgreSQL and Redis answer"
