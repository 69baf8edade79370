#!/usr/bin/env bash
# Make sure Debian's `nginx` binary is installed (tests and deploy/local/cluster.sh need it).
# Installs only the package; it never starts or enables the system nginx service (the
# project runs nginx itself, with its own prefix, pid and log paths). Exits non-zero with
# the reason when the package cannot be installed, so a test that needs it fails loudly.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-nginx: nginx is missing and this is not root: run 'sudo apt-get install -y nginx'" >&2
  exit 1
fi
echo "ensure-nginx: installing Debian's nginx" >&2
export DEBIAN_FRONTEND=noninteractive
# Another installer may hold the dpkg lock (parallel test runs): wait for it, bounded.
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get install -y --no-install-recommends nginx >/dev/null \
  || { apt_get update -qq && apt_get install -y --no-install-recommends nginx >/dev/null; }
[ -x /usr/sbin/nginx ] || { echo "ensure-nginx: install finished but /usr/sbin/nginx is absent" >&2; exit 1; }
