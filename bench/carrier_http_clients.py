"""Issue 9: our sender's CPU per 1,000 carrier sends through aiohttp (what
server/carriers/http.py uses) and through Tornado's CurlAsyncHTTPClient (needs pycurl,
which is not a dependency: `pip install pycurl` first).

`python -m bench.carrier_http_clients [--messages 5000] [--concurrency 50] [--rounds 3]`

Starts `ywm carrier-sim` (status webhooks off), then alternates the two clients on one
event loop: the same Telnyx POST and JSON answer read, after a warm-up round that opens
the pooled connections. Reports CPU ms (this process, user + system) per 1,000 sends.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

import tornado.httpclient
import ujson

from bench.procs import exit_on_sigterm, stop_processes
from server.carriers import http

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADERS = {"Authorization": "Bearer dev-telnyx-key", "Content-Type": "application/json",
           "Accept": "application/json"}


def body(i: int) -> str:
    return ujson.dumps({"from": "+18445550001", "to": f"+1415{2000000 + i:07d}",
                        "text": f"Hello {i}"})


async def cpu_per_1000(send: Callable[[int], Awaitable[Any]], count: int,
                       concurrency: int) -> float:
    async def lanes(n: int) -> None:
        queue = list(range(n))

        async def lane() -> None:
            while queue:
                await send(queue.pop())
        await asyncio.gather(*(lane() for _ in range(concurrency)))
    await lanes(concurrency)  # open the pooled connections
    started = time.process_time()
    await lanes(count)
    return round((time.process_time() - started) / count * 1e6, 1)


async def with_aiohttp(url: str, args: argparse.Namespace) -> float:
    async def send(i: int) -> None:
        answer = await http.request("POST", url, body=body(i), headers=HEADERS)
        ujson.loads(answer.body)
    try:
        return await cpu_per_1000(send, args.messages, args.concurrency)
    finally:
        await http.close()


async def with_curl(url: str, args: argparse.Namespace) -> float:
    from tornado.curl_httpclient import CurlAsyncHTTPClient
    client = CurlAsyncHTTPClient(force_instance=True, max_clients=args.concurrency)

    async def send(i: int) -> None:
        answer = await client.fetch(url, method="POST", body=body(i), headers=HEADERS,
                                    raise_error=False, connect_timeout=http.CONNECT_TIMEOUT,
                                    request_timeout=http.REQUEST_TIMEOUT)
        ujson.loads(answer.body)
    try:
        return await cpu_per_1000(send, args.messages, args.concurrency)
    finally:
        client.close()


async def wait_until_up(base: str) -> None:
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        for _ in range(100):
            try:
                await client.fetch(base + "/control/config")
                return
            except (OSError, tornado.httpclient.HTTPClientError):
                await asyncio.sleep(0.1)
        raise RuntimeError("the simulator did not start")
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8797)
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "ywm"), "carrier-sim", "--port", str(args.port)],
        env=dict(os.environ, YWM_ENV="test", YWM_LOG_LEVEL="WARNING"), cwd=ROOT)
    report: dict[str, list[float]] = {"aiohttp": [], "curl": []}
    try:
        asyncio.run(wait_until_up(base))
        asyncio.run(_config(base))
        url = base + "/telnyx/v2/messages"
        for _ in range(args.rounds):
            report["aiohttp"].append(asyncio.run(with_aiohttp(url, args)))
            report["curl"].append(asyncio.run(with_curl(url, args)))
    finally:
        stop_processes([proc])
    print(json.dumps(report))
    return 0


async def _config(base: str) -> None:
    """Status webhooks off: only the send answers cost the simulator anything."""
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        await client.fetch(base + "/control/config", method="POST",
                           body=ujson.dumps({"status_webhooks": False}))
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
