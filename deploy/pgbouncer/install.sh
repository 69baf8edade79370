#!/usr/bin/env bash
# Make sure Debian's PgBouncer is installed; print the path of its binary.
exec "$(dirname "$0")/../local/ensure-package.sh" pgbouncer pgbouncer --recommends
