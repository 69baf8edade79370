#!/usr/bin/env bash
# Make sure `promtool` is installed: Debian ships it in the `prometheus` package (about
# 100 MB installed with its web-console assets; there is no smaller package with promtool).
# Only the package is installed; the Prometheus service is never started by this script.
# Exits non-zero with the reason when it cannot install, so the rule tests fail, not skip.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-promtool: promtool is missing and this is not root: run 'sudo apt-get install -y prometheus'" >&2
  exit 1
fi
echo "ensure-promtool: installing Debian's prometheus package for promtool" >&2
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get install -y --no-install-recommends prometheus >/dev/null \
  || { apt_get update -qq && apt_get install -y --no-install-recommends prometheus >/dev/null; }
command -v promtool >/dev/null || { echo "ensure-promtool: install finished but promtool is absent" >&2; exit 1; }
