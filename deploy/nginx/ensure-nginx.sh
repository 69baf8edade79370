#!/usr/bin/env bash
# Make sure Debian's nginx is installed (tests and deploy/local/cluster.sh); print its path.
exec "$(dirname "$0")/../local/ensure-package.sh" nginx nginx
