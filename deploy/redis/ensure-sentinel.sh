#!/usr/bin/env bash
# Make sure Debian's `redis-sentinel` is installed and print the path of its binary
# (tests/deploy/ and deploy/local/cluster.sh run private Sentinels from it).
# Installs only the package; it never starts or enables the system redis-sentinel service
# (the project runs its Sentinels itself, each from its own config file under a private
# directory). Exits non-zero with the reason when the package cannot be installed, so a
# test that needs it fails loudly instead of skipping.
set -euo pipefail

find_binary() {
  command -v redis-sentinel 2>/dev/null || { [ -x /usr/bin/redis-sentinel ] && echo /usr/bin/redis-sentinel; }
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
  echo "ensure-sentinel: redis-sentinel is missing and this is not root: run 'sudo apt-get install -y redis-sentinel'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-sentinel: redis-sentinel is missing and this machine has no apt-get: install Redis 7's Sentinel" >&2
  exit 1
fi
echo "ensure-sentinel: installing Debian's redis-sentinel" >&2
export DEBIAN_FRONTEND=noninteractive
# Another installer may hold the dpkg lock (parallel test runs): wait for it, bounded.
apt_get() { "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get install -y -q --no-install-recommends redis-sentinel >&2 \
  || { apt_get update -qq >&2 && apt_get install -y -q --no-install-recommends redis-sentinel >&2; }
path=$(find_binary) || { echo "ensure-sentinel: installed, but no redis-sentinel binary found" >&2; exit 1; }
echo "$path"
