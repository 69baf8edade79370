#!/usr/bin/env bash
# Make sure Debian's PgBouncer is installed; print the path of its binary.
# `make test` calls this on a fresh machine: install only when missing, and refresh the
# package lists only if the first attempt fails without them.
set -euo pipefail

find_binary() {
  command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }
}

if path=$(find_binary); then
  echo "$path"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "pgbouncer: not installed and no root to install it: apt-get install pgbouncer" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "pgbouncer: not installed and this machine has no apt-get: install PgBouncer 1.18+" >&2
  exit 1
fi

echo "pgbouncer: installing Debian's package" >&2
export DEBIAN_FRONTEND=noninteractive
# The package may start its own service (/etc/pgbouncer, port 6432) where policy-rc.d allows:
# harmless, ours runs from its own configuration on its own port.
if ! "${sudo[@]}" apt-get install -y -q pgbouncer >&2; then
  "${sudo[@]}" apt-get update -q >&2
  "${sudo[@]}" apt-get install -y -q pgbouncer >&2
fi
path=$(find_binary) || { echo "pgbouncer: installed, but no pgbouncer binary found" >&2; exit 1; }
echo "$path"
