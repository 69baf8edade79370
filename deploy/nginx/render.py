"""Render deploy/nginx/ywm.conf for a given set of boxes, and a standalone nginx.conf.

The template's {{name}} placeholders are filled from keyword values; a line holding a
list placeholder ({{upstream}}, {{trusted_proxy}}, {{unlimited_client}}) is repeated once
per value and dropped when the list is empty. Any placeholder left unfilled, or any value
that could break out of its directive, is an error: a half-rendered config must never load.

Tests and deploy/local/cluster.sh run NGINX from a private prefix directory:

    python3 deploy/nginx/render.py --prefix var/nginx --https-listen 127.0.0.1:8443 \\
        --http-listen 127.0.0.1:8080 --upstream 127.0.0.1:8001 --upstream 127.0.0.2:8001
    nginx -p var/nginx -e var/nginx/error.log -c var/nginx/nginx.conf -g 'daemon off;'

On a real machine render only the site file into Debian's /etc/nginx/conf.d/ (--site-only).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
from typing import Iterable, Sequence

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATE = HERE / "ywm.conf"
MAKE_CERT = HERE / "make-cert.sh"
REPO = HERE.parent.parent

LIST_PLACEHOLDERS = ("upstream", "trusted_proxy", "unlimited_client")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# A value lands inside one directive: no spaces, quotes, braces or semicolons.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/\[\]\-]+$")


class RenderError(ValueError):
    """The template and the values given do not fit together."""


def _check(name: str, value: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise RenderError(f"{name}={value!r} is not a plain address, name or path")
    return value


def render_template(template: str, values: dict[str, str],
                    lists: dict[str, Sequence[str]]) -> str:
    """Fill `template`; every placeholder it names must be given, and only those."""
    out: list[str] = []
    used: set[str] = set()
    for line in template.splitlines(keepends=True):
        names = set(_PLACEHOLDER.findall(line))
        repeated = names & set(LIST_PLACEHOLDERS)
        if len(repeated) > 1:
            raise RenderError(f"one line repeats two lists: {line.strip()}")
        copies: list[dict[str, str]] = [{}]
        if repeated:
            (list_name,) = repeated
            if list_name not in lists:
                raise RenderError(f"no values given for {{{{{list_name}}}}}")
            used.add(list_name)
            copies = [{list_name: _check(list_name, v)} for v in lists[list_name]]
        for extra in copies:
            scope = {**values, **extra}
            missing = names - set(scope)
            if missing:
                raise RenderError(f"no value for {sorted(missing)} in: {line.strip()}")
            used.update(names - set(LIST_PLACEHOLDERS))
            out.append(_PLACEHOLDER.sub(lambda m: scope[m.group(1)], line))
    unused = (set(values) | set(lists)) - used
    if unused:
        raise RenderError(f"the template has no placeholder for {sorted(unused)}")
    return "".join(out)


def render_site(*, upstreams: Sequence[str], https_listen: str, http_listen: str,
                certificate: str, certificate_key: str, cache_dir: str, access_log: str,
                server_name: str = "localhost", trusted_proxies: Iterable[str] = (),
                unlimited_clients: Iterable[str] = (),
                template: str | None = None) -> str:
    """ywm.conf for these boxes (`upstreams`: host:port of each box's web port)."""
    if not upstreams:
        raise RenderError("at least one upstream (a box's web address) is needed")
    values = {"https_listen": https_listen, "http_listen": http_listen,
              "https_port": https_listen.rsplit(":", 1)[-1], "server_name": server_name,
              "certificate": certificate, "certificate_key": certificate_key,
              "cache_dir": cache_dir, "access_log": access_log}
    for name, value in values.items():
        _check(name, value)
    lists = {"upstream": list(upstreams), "trusted_proxy": list(trusted_proxies),
             "unlimited_client": list(unlimited_clients)}
    return render_template(template if template is not None else TEMPLATE.read_text(),
                           values, lists)


def render_main(prefix: pathlib.Path, site: pathlib.Path, worker_processes: int = 1) -> str:
    """A whole nginx.conf whose every file (pid, logs, temp, cache) lives under `prefix`."""
    # Run as root (a container, CI), workers would drop to `nobody` and could not write
    # the private temp directories; locally they keep the caller's user instead.
    user = "user root;\n" if os.geteuid() == 0 else ""
    tmp = prefix / "tmp"
    return (
        "# Standalone config written by deploy/nginx/render.py; start with -g 'daemon off;'.\n"
        f"{user}worker_processes {worker_processes};\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events {\n    worker_connections 4096;\n}\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        f"    client_body_temp_path {tmp / 'body'};\n"
        f"    proxy_temp_path {tmp / 'proxy'};\n"
        f"    fastcgi_temp_path {tmp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {tmp / 'uwsgi'};\n"
        f"    scgi_temp_path {tmp / 'scgi'};\n"
        f"    include {site};\n"
        "}\n")


def ensure_certificate(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The local self-signed pair in `directory`, made by make-cert.sh when absent."""
    subprocess.run([str(MAKE_CERT), str(directory)], check=True, timeout=60)
    return directory / "ywm-local.crt", directory / "ywm-local.key"


def write_prefix(prefix: pathlib.Path, *, upstreams: Sequence[str], https_listen: str,
                 http_listen: str, certificate: pathlib.Path | None = None,
                 certificate_key: pathlib.Path | None = None,
                 trusted_proxies: Iterable[str] = (), unlimited_clients: Iterable[str] = (),
                 worker_processes: int = 1) -> pathlib.Path:
    """Write ywm.conf and nginx.conf under `prefix` (made absolute); returns nginx.conf."""
    prefix = prefix.resolve()
    for sub in ("tmp", "cache", "logs"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    if certificate is None or certificate_key is None:
        certificate, certificate_key = ensure_certificate(REPO / "var" / "tls")
    site = prefix / "ywm.conf"
    site.write_text(render_site(
        upstreams=upstreams, https_listen=https_listen, http_listen=http_listen,
        certificate=str(certificate.resolve()), certificate_key=str(certificate_key.resolve()),
        cache_dir=str(prefix / "cache"), access_log=str(prefix / "logs" / "access.log"),
        trusted_proxies=trusted_proxies, unlimited_clients=unlimited_clients))
    main = prefix / "nginx.conf"
    main.write_text(render_main(prefix, site, worker_processes))
    return main


def nginx_command(prefix: pathlib.Path, nginx: str = "nginx") -> list[str]:
    """The foreground command for a prefix written by `write_prefix`."""
    prefix = prefix.resolve()
    return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"),
            "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", action="append", required=True,
                        help="host:port of one box's web port (repeat per box)")
    parser.add_argument("--https-listen", default="127.0.0.1:8443")
    parser.add_argument("--http-listen", default="127.0.0.1:8080")
    parser.add_argument("--trusted-proxy", action="append", default=[],
                        help="a load balancer in front of NGINX whose X-Forwarded-For counts")
    parser.add_argument("--unlimited-client", action="append", default=[],
                        help="an address the rate-limit zones skip (a load-test harness)")
    parser.add_argument("--certificate", type=pathlib.Path)
    parser.add_argument("--certificate-key", type=pathlib.Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prefix", type=pathlib.Path, default=REPO / "var" / "nginx")
    parser.add_argument("--site-only", action="store_true",
                        help="print only ywm.conf (for /etc/nginx/conf.d/) to stdout")
    args = parser.parse_args(argv)
    if args.site_only:
        certificate = args.certificate or pathlib.Path("/etc/ssl/certs/ywm.crt")
        key = args.certificate_key or pathlib.Path("/etc/ssl/private/ywm.key")
        sys.stdout.write(render_site(
            upstreams=args.upstream, https_listen=args.https_listen,
            http_listen=args.http_listen, certificate=str(certificate),
            certificate_key=str(key), cache_dir="/var/cache/nginx/ywm",
            access_log="/var/log/nginx/ywm.access.log",
            trusted_proxies=args.trusted_proxy, unlimited_clients=args.unlimited_client))
        return 0
    write_prefix(args.prefix, upstreams=args.upstream, https_listen=args.https_listen,
                 http_listen=args.http_listen, certificate=args.certificate,
                 certificate_key=args.certificate_key, trusted_proxies=args.trusted_proxy,
                 unlimited_clients=args.unlimited_client, worker_processes=args.workers)
    print(" ".join(repr(part) if " " in part else part for part in nginx_command(args.prefix)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
