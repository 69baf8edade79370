#!/usr/bin/env bash
# A local cluster of N boxes behind NGINX, with PgBouncer and Redis Sentinel, to start and
# break (ARCHITECTURE.md §6):
#
#   deploy/local/cluster.sh up [--boxes N] [--db NAME]
#   deploy/local/cluster.sh kill-box K | start-box K | restart-box K
#   deploy/local/cluster.sh failover-redis | status | down
#
# server/devtools/cluster.py does the work and says what each command does. State, logs
# and pids live under YWM_CLUSTER_DIR (default var/cluster/); every command acts only on
# what that directory recorded. PostgreSQL is the one DATABASE_URL names (default the
# local one); YWM_* variables (carrier keys included) pass through to every box.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
py="$here/.venv/bin/python"
if [ ! -x "$py" ]; then
  echo "cluster: no virtualenv at $here/.venv: run 'make install' first" >&2
  exit 1
fi
state=${YWM_CLUSTER_DIR:-$here/var/cluster}
# Like `make run`: a development cluster unless the caller says otherwise (an unset
# YWM_ENV is production, which refuses the development secrets in this repository).
export YWM_ENV=${YWM_ENV:-development}
cd "$here"
exec "$py" -m server.devtools.cluster --state-dir "$state" "$@"
