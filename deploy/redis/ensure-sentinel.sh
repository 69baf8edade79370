#!/usr/bin/env bash
# Make sure Debian's redis-sentinel is installed; print the path of its binary
# (tests/deploy/ and deploy/local/cluster.sh run private Sentinels from it).
exec "$(dirname "$0")/../local/ensure-package.sh" redis-sentinel redis-sentinel
