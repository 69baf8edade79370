#!/usr/bin/env bash
# A self-signed TLS certificate for local use (tests, deploy/local/cluster.sh, make run
# behind NGINX): `make-cert.sh [DIR]` writes DIR/ywm-local.crt and DIR/ywm-local.key
# (default DIR: var/tls). Valid for localhost and 127.0.0.1. Kept while it has more than a
# day left, so reruns are cheap. Never use it on a public host: get a real certificate.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$here/var/tls}
crt="$dir/ywm-local.crt"
key="$dir/ywm-local.key"
mkdir -p "$dir"
if [ -s "$crt" ] && [ -s "$key" ] && openssl x509 -checkend 86400 -noout -in "$crt" >/dev/null 2>&1; then
  exit 0
fi
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -sha256 \
  -keyout "$key.new" -out "$crt.new" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1
chmod 644 "$crt.new"
mv "$key.new" "$key"
mv "$crt.new" "$crt"
