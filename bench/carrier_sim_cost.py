"""Issue 4 benchmark: the carrier simulator's own CPU cost per 1,000 messages.

`python -m bench.carrier_sim_cost [--messages 5000] [--concurrency 50]`

Runs `ywm carrier-sim` as its own process with its webhooks pointed at a trivial sink
(in this process) that answers 200, sends `--messages` texts per carrier through our real
clients, waits until every status webhook (two per message) has been delivered, and reads
the simulator's CPU time (user + system, /proc/<pid>/stat) before and after. Then the
same for injected inbound texts. Reports CPU ms per 1,000 messages.

Then, per carrier, our own side: the same sends with the simulator's status webhooks
off (so the sink in this process is idle) and this process's CPU time around them: what
one carrier send costs the sender (our client, its HTTP pool, JSON/form encoding).
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

from server.carriers import client_for
from server.carriers import http as carrier_http
from server.platform.settings import Settings
from bench.procs import exit_on_sigterm

ROOT = pathlib.Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
OUT = ROOT / "var" / "bench"


class Sink(tornado.web.RequestHandler):
    def post(self, _: str) -> None:
        self.finish("ok")

    def log_exception(self, *args: Any) -> None:
        return


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def control(http: Any, base: str, path: str, body: Any = None) -> Any:
    response = await http.fetch(base + path, method="POST" if body is not None else "GET",
                                body=ujson.dumps(body) if body is not None else None)
    return ujson.loads(response.body)


async def wait_idle(http: Any, base: str, expected_webhooks: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        summary = await control(http, base, "/control/received?limit=0")
        if summary["pending_webhooks"] == 0 and \
                summary["counters"].get("webhooks_delivered", 0) >= expected_webhooks:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("simulator did not finish its webhooks")


async def send_all(settings: Settings, provider: str, count: int, concurrency: int) -> int:
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


async def client_cost(http: Any, base: str, settings: Settings, provider: str,
                      args: argparse.Namespace) -> dict[str, Any]:
    """This process's CPU per 1,000 sends, with no webhooks coming back to it."""
    await control(http, base, "/control/reset", {})
    await control(http, base, "/control/config", {"status_webhooks": False})
    await send_all(settings, provider, args.concurrency, args.concurrency)  # warm the pool
    before = time.process_time()
    sent = await send_all(settings, provider, args.messages, args.concurrency)
    used = time.process_time() - before
    await control(http, base, "/control/reset", {})
    return {"sent": sent, "cpu_ms_per_1000": round(used / sent * 1e6, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    sink_port = sockets[0].getsockname()[1]
    sink = tornado.httpserver.HTTPServer(tornado.web.Application(
        [(r"/(.*)", Sink)], log_function=lambda h: None))
    sink.add_sockets(sockets)
    base = f"http://127.0.0.1:{args.port}"
    command = args.sim_command or [str(ROOT / ".venv" / "bin" / "ywm"), "carrier-sim",
                                   "--port", str(args.port)]
    proc = subprocess.Popen(
        command + ["--callback-url", f"http://127.0.0.1:{sink_port}"],
        env=dict(os.environ, YWM_ENV="test", YWM_LOG_LEVEL="WARNING"), cwd=ROOT)
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=50)
    try:
        for _ in range(100):
            try:
                await control(http, base, "/control/config")
                break
            except (OSError, tornado.httpclient.HTTPClientError):
                await asyncio.sleep(0.1)
        # Webhooks go to the sink (per-message URLs follow our public_url setting).
        settings = Settings.from_env({"YWM_ENV": "test"}).replace(
            public_url=f"http://127.0.0.1:{sink_port}",
            telnyx_api_base=f"{base}/telnyx/v2", twilio_api_base=f"{base}/twilio")
        report: dict[str, Any] = {"messages": args.messages}
        for provider in ("telnyx", "twilio"):
            await control(http, base, "/control/reset", {})
            before, started = cpu_seconds(proc.pid), time.perf_counter()
            sent = await send_all(settings, provider, args.messages, args.concurrency)
            await wait_idle(http, base, 2 * sent)
            used = cpu_seconds(proc.pid) - before
            report[provider] = {"sent": sent, "cpu_ms_per_1000": round(used / sent * 1e6, 1),
                                "wall_s": round(time.perf_counter() - started, 2)}
        for provider in ("telnyx", "twilio"):
            report[f"client_{provider}"] = await client_cost(http, base, settings, provider,
                                                             args)
        await control(http, base, "/control/reset", {})
        before = cpu_seconds(proc.pid)
        for i in range(args.inbound):
            await control(http, base, "/control/inbound", {
                "provider": "telnyx", "from": f"+1415{3000000 + i:07d}",
                "to": "+18445550001", "text": f"Hi {i}", "wait": i % 50 == 49})
        await wait_idle(http, base, args.inbound)
        used = cpu_seconds(proc.pid) - before
        report["inbound_telnyx"] = {"injected": args.inbound,
                                    "cpu_ms_per_1000": round(used / args.inbound * 1e6, 1)}
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
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--inbound", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--sim-command", nargs="+", default=None,
                        help="run the simulator with this command instead (profiling)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "carrier_sim_cost.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
