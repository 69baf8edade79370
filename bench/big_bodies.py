"""Issue 10 benchmark: oversized bodies against an unauthenticated route, and the web
process's memory.

`python -m bench.big_bodies [--clients 50] [--mib 20] [--path /webhooks/telnyx]`

Starts one `ywm web` process (private database and Redis DB, dropped at the end), reads
its resident set size (`VmRSS` in /proc), then sends `--clients` POSTs at once, each
declaring a `--mib` MiB body (`Expect: 100-continue`) and streaming it in 64 KiB
writes if the server asks for it. Prints the statuses, how many body bytes the clients managed to write, and
the process's RSS before and after and its peak (`VmHWM`). A route that buffered the
bodies would grow by about clients × size; one that refuses before reading stays flat.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import redis

from bench.carriers_inbound import _create_db, _drop_db, _take_redis_db
from bench.procs import exit_on_sigterm, stop_processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def _one(port: int, path: str, size: int) -> tuple[int, int]:
    """(status, body bytes written) of one oversized POST; status 0 if none came.

    Sent with `Expect: 100-continue`, as curl and most clients send large bodies: the
    body follows only after the server's "100 Continue"; a final answer instead means
    the server refused without reading it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
                      "Expect: 100-continue\r\n\r\n").encode())
        line = await asyncio.wait_for(reader.readline(), 60)
        if line.split()[1:2] == [b"100"]:
            await reader.readline()  # the blank line after "100 Continue"
            chunk = b"x" * CHUNK
            while sent < size:
                writer.write(chunk[:size - sent])
                await writer.drain()
                sent += min(CHUNK, size - sent)
            line = await asyncio.wait_for(reader.readline(), 60)
    except (ConnectionError, asyncio.TimeoutError):
        line = b""
    finally:
        writer.close()
    parts = line.split()
    return (int(parts[1]) if len(parts) > 1 else 0), sent


async def _burst(port: int, path: str, clients: int, size: int) -> list[tuple[int, int]]:
    return list(await asyncio.gather(*(_one(port, path, size) for _ in range(clients))))


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the web process did not start")


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--path", default="/webhooks/telnyx")
    parser.add_argument("--port", type=int, default=8871)
    args = parser.parse_args(argv)
    database_url = _create_db()
    redis_url, claim = _take_redis_db()
    proc = None
    try:
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
                   YWM_ENV="test", YWM_LOG_LEVEL="WARNING")
        proc = subprocess.Popen([sys.executable, "-m", "server", "web", "--port",
                                 str(args.port)], env=env, cwd=ROOT)
        _wait_ready(args.port)
        before = _memory_kib(proc.pid)
        started = time.monotonic()
        results = asyncio.run(_burst(args.port, args.path, args.clients,
                                     args.mib * 1024 * 1024))
        elapsed = time.monotonic() - started
        after = _memory_kib(proc.pid)
        report = {
            "clients": args.clients, "declared_mib": args.mib, "path": args.path,
            "statuses": dict(collections.Counter(status for status, _ in results)),
            "body_bytes_written_max": max(sent for _, sent in results),
            "rss_before_kib": before["VmRSS"], "rss_after_kib": after["VmRSS"],
            "rss_peak_kib": after["VmHWM"], "seconds": round(elapsed, 2)}
        print(json.dumps(report, indent=2))
    finally:
        if proc is not None:
            stop_processes([proc])
        _drop_db(database_url)
        redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/0").delete(claim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
