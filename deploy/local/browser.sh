#!/usr/bin/env bash
# Install what the browser tests (tests/webapp/test_browser.py) need: Debian's chromium and
# its matching chromedriver from apt, and the selenium Python bindings into .venv.
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
echo "browser: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"
