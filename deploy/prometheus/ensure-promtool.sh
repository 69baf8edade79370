#!/usr/bin/env bash
# Make sure promtool is installed and print its path: Debian ships it in the prometheus
# package (about 100 MB installed; no smaller package has it).
exec "$(dirname "$0")/../local/ensure-package.sh" prometheus promtool
