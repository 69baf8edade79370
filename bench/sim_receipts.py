"""Issue 11 benchmark: the carrier simulator's CPU per delivery receipt it posts.

`python -m bench.sim_receipts [--messages 20000] [--concurrency 64] [--carrier telnyx]`

Runs `python -m server carrier-sim` as its own process with its webhooks pointed at a
sink in this process that answers 200 at once, then sends `--messages` texts through our
real carrier client twice: with the simulator's status webhooks off (what accepting a
send costs it) and on (accept + a `sent` and a `delivered` receipt each, signed and
posted). The simulator's CPU (user + system from /proc) of the second run minus the first,
over the receipts, is its cost per receipt: load-independent enough on a busy box, and
what `bench.sends --delivered` pays beside the web processes for 2 receipts a text.
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
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web
import ujson

from bench.procs import exit_on_sigterm
from bench.resources import cpu_seconds

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"


class Sink(tornado.web.RequestHandler):
    received = 0

    def post(self, _: str) -> None:
        Sink.received += 1
        self.finish("ok")

    def log_exception(self, *args: Any) -> None:
        return


async def control(http: Any, base: str, path: str, body: Any = None) -> Any:
    response = await http.fetch(base + path, method="POST" if body is not None else "GET",
                                body=ujson.dumps(body) if body is not None else None)
    return ujson.loads(response.body)


async def send_all(settings: Any, provider: str, count: int, concurrency: int) -> int:
    from server.carriers import client_for
    client = client_for(provider, settings)
    queue = list(range(count))
    sent = 0

    async def lane() -> None:
        nonlocal sent
        while queue:
            i = queue.pop()
            result = await client.send(from_number="+18445550001",
                                       to=f"+1415{2000000 + i:07d}", body=f"Hello {i}")
            sent += result.outcome == "sent"
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return sent


async def wait_delivered(http: Any, base: str, expected: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        summary = await control(http, base, "/control/received?limit=0")
        if summary["pending_webhooks"] == 0 and \
                summary["counters"].get("webhooks_delivered", 0) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise RuntimeError("simulator did not deliver its webhooks in time")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.carriers import http as carrier_http
    from server.platform.settings import Settings
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    sink_port = sockets[0].getsockname()[1]
    sink = tornado.httpserver.HTTPServer(tornado.web.Application(
        [(r"/(.*)", Sink)], log_function=lambda h: None))
    sink.add_sockets(sockets)
    base = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "carrier-sim", "--port", str(args.port),
         "--callback-url", f"http://127.0.0.1:{sink_port}"],
        env=dict(os.environ, YWM_ENV="test", YWM_LOG_LEVEL="WARNING"), cwd=ROOT)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=50)
    try:
        for _ in range(600):
            try:
                await control(http, base, "/control/config")
                break
            except (OSError, tornado.httpclient.HTTPClientError):
                await asyncio.sleep(0.1)
        settings = Settings.from_env({"YWM_ENV": "test"}).replace(
            public_url=f"http://127.0.0.1:{sink_port}",
            telnyx_api_base=f"{base}/telnyx/v2", twilio_api_base=f"{base}/twilio")
        report: dict[str, Any] = {"messages": args.messages, "carrier": args.carrier,
                                  "concurrency": args.concurrency}
        await control(http, base, "/control/config", {"status_webhooks": False})
        await send_all(settings, args.carrier, 200, args.concurrency)  # warm pools
        before = cpu_seconds([proc.pid])
        sent = await send_all(settings, args.carrier, args.messages, args.concurrency)
        accept_cpu = cpu_seconds([proc.pid]) - before
        await control(http, base, "/control/reset", {})
        await control(http, base, "/control/config", {"status_webhooks": True,
                                                      "status_delay_ms": 0})
        before, started = cpu_seconds([proc.pid]), time.monotonic()
        sent_on = await send_all(settings, args.carrier, args.messages, args.concurrency)
        await wait_delivered(http, base, 2 * sent_on, args.timeout)
        wall = time.monotonic() - started
        both_cpu = cpu_seconds([proc.pid]) - before
        receipts = 2 * sent_on
        report.update({
            "sent": sent, "receipts": receipts, "sink_received": Sink.received,
            "sim_accept_cpu_ms_per_send": round(accept_cpu / max(1, sent) * 1000, 3),
            "sim_cpu_ms_per_receipt": round((both_cpu - accept_cpu * sent_on / max(1, sent))
                                            / max(1, receipts) * 1000, 3),
            "receipts_per_s_wall": round(receipts / wall, 1)})
        return report
    finally:
        await carrier_http.close()
        http.close()
        proc.terminate()
        proc.wait(timeout=10)
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--carrier", choices=("telnyx", "twilio"), default="telnyx")
    parser.add_argument("--port", type=int, default=8796)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"sim_receipts-{args.carrier}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
