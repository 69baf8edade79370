#!/usr/bin/env bash
# ensure-package.sh PACKAGE BINARY [--recommends]
# Make sure Debian's PACKAGE is installed and print the path of BINARY. Only the package is
# installed: any service it ships is never started by us (the project runs nginx,
# PgBouncer, Sentinels and promtool from its own configuration). Installs only when
# missing, refreshes the package lists only if the first attempt fails, and waits
# (bounded) for another installer's dpkg lock. Exits non-zero with the reason when the
# package cannot be installed, so a test that needs it fails loudly instead of skipping.
set -euo pipefail
package=$1 binary=$2
recommends=(--no-install-recommends)
[ "${3:-}" = --recommends ] && recommends=()

find_binary() {
  command -v "$binary" 2>/dev/null && return 0
  local dir
  for dir in /usr/sbin /usr/bin /sbin; do
    [ -x "$dir/$binary" ] && { echo "$dir/$binary"; return 0; }
  done
  return 1
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
  echo "ensure-package: $binary is missing and this is not root: run 'sudo apt-get install -y $package'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-package: $binary is missing and this machine has no apt-get: install $package" >&2
  exit 1
fi
echo "ensure-package: installing Debian's $package for $binary" >&2
export DEBIAN_FRONTEND=noninteractive
apt_get() { "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get install -y -q "${recommends[@]}" "$package" >&2 \
  || { apt_get update -qq >&2 && apt_get install -y -q "${recommends[@]}" "$package" >&2; }
path=$(find_binary) || { echo "ensure-package: $package installed, but no $binary found" >&2; exit 1; }
echo "$path"
