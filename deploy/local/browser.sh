#!/usr/bin/env bash
# Install what the browser tests (tests/webapp/) need: Debian's chromium and its matching
# chromedriver from apt, the selenium Python bindings into .venv, and axe-core.
# Idempotent: does nothing when everything is there. Selenium is always pointed at
# /usr/bin/chromium and /usr/bin/chromedriver, so it never downloads a browser of its own.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-"$here/.venv/bin/python"}

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "browser: chromium is missing; as root run: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  echo "browser: installing Debian chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  $as_root apt-get update -qq
  $as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if ! "$python" -c "import selenium" 2>/dev/null; then
  echo "browser: installing selenium into $(dirname "$(dirname "$python")")"
  "$python" -m pip install -q --disable-pip-version-check "selenium>=4.20,<5"
fi
# axe-core (the accessibility engine the browser tests run on every screen) from the npm
# registry, unpacked as a test fixture; never loaded from a CDN. Pinned: a new axe version
# adds rules, which is a change to review, not a surprise in CI.
AXE_VERSION=4.10.3
axe="$here/tests/webapp/fixtures/axe.min.js"
if [ ! -s "$axe" ] || ! grep -q "axe v$AXE_VERSION" "$axe"; then
  echo "browser: fetching axe-core $AXE_VERSION"
  command -v npm >/dev/null || { echo "browser: npm is missing (apt-get install npm)" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz")
  mkdir -p "$(dirname "$axe")"
  cp "$tmp/package/axe.min.js" "$axe"
  rm -rf "$tmp"
fi
echo "browser: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1), axe-core $AXE_VERSION"
