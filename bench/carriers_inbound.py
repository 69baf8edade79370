"""Issue 4 benchmark: sustained signed, durable inbound webhooks/s on all cores, with p99.

`python -m bench.carriers_inbound [--duration 20] [--connections 32] [--churches 20]
[--otel off|sink]`

A private database (migrated, dropped at the end) and Redis DB; `--churches` churches with
one Telnyx number each; `--processes` web processes (default: cores) bound to one port
with SO_REUSEPORT, exactly as production runs them. Webhooks are pre-signed Telnyx
`message.received` events, each sent once (unique event ids), from `--handsets` distinct
phones, so the run mixes new-member creation with conversation upserts. wrk drives the
load; every request does the full path: Ed25519 verify, one transaction (dedupe row,
number → church, member, conversation upsert, message, event row), commit, PUBLISH.

`--otel sink` turns tracing on in the web processes (YWM_OTEL_ENDPOINT) and points it at
a stand-in collector in this process that decodes each OTLP/HTTP export, counts its
spans and drops them: the web processes then pay for spans, their batching and export
(protobuf encoding and HTTP posts), which the CPU columns measure against `--otel off`.
"""
from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import psycopg2
import ujson

from bench.procs import exit_on_sigterm, stop_processes
from bench.resources import (cpu_seconds, drop_database, fresh_database,
                             release_redis_db, reserve_redis_db, url_for_database)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"


async def _seed(database_url: str, churches: int) -> list[str]:
    from db.engine import Database
    from db.queries import churches as churches_q
    from db.queries import numbers as numbers_q
    db = await Database.connect(database_url)
    phones = []
    async with db.transaction() as conn:
        for index in range(churches):
            church = await churches_q.insert_church(conn, f"Bench church {index}")
            phone = f"+1844555{index:04d}"
            await numbers_q.insert_number(conn, {
                "church_id": church["id"], "phone": phone, "provider": "telnyx",
                "messaging_profile_id": None, "mps": 10, "provider_handles_opt_out": False,
                "status": "linked"})
            phones.append(phone)
    await db.close()
    return phones


def _write_webhooks(path: pathlib.Path, count: int, numbers: list[str], handsets: int) -> None:
    from server.carriers.telnyx import sign as telnyx_sign
    from server.platform.settings import DEV_TELNYX_PRIVATE_KEY
    timestamp = str(int(time.time()) + 60)  # valid for the whole run (300 s window)
    with path.open("w") as out:
        for i in range(count):
            payload = {"record_type": "message", "id": str(uuid.uuid4()),
                       "direction": "inbound", "type": "SMS",
                       "from": {"phone_number": f"+1415{2000000 + i % handsets:07d}"},
                       "to": [{"phone_number": numbers[i % len(numbers)],
                               "status": "webhook_delivered"}],
                       "text": f"See you Sunday, message {i}", "media": []}
            body = ujson.dumps({"data": {"record_type": "event",
                                         "event_type": "message.received",
                                         "id": str(uuid.uuid4()),
                                         "occurred_at": "2026-01-01T00:00:00Z",
                                         "payload": payload}, "meta": {"attempt": 1}})
            sig = telnyx_sign(DEV_TELNYX_PRIVATE_KEY, timestamp, body.encode())
            out.write(f"{sig}\t{timestamp}\t{body}\n")


def _start_web(env: dict[str, str], port: int, processes: int) -> list[subprocess.Popen]:
    ywm = str(ROOT / ".venv" / "bin" / "ywm")
    procs = [subprocess.Popen([ywm, "web", "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(processes)]
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return procs
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("web processes did not come up")


def _wrk(port: int, webhooks: pathlib.Path, threads: int, connections: int,
         duration: int) -> dict[str, float]:
    env = dict(os.environ, WRK_WEBHOOKS=str(webhooks), WRK_THREADS=str(threads))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "webhooks.lua"), f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    return json.loads(line[len("WRK_JSON "):])


def _backend_pids(database_url: str) -> list[int]:
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def _count(database_url: str) -> dict[str, int]:
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        counts = {}
        for table in ("inbound_dedupe", "conversation_messages", "members", "conversations",
                      "events"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts


class _OtlpSink(http.server.BaseHTTPRequestHandler):
    """A collector that accepts OTLP/HTTP trace exports, counts their spans, keeps none."""
    spans = 0
    exports = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest.FromString(body)
        _OtlpSink.exports += 1
        _OtlpSink.spans += sum(len(scope.spans) for resource in request.resource_spans
                               for scope in resource.scope_spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _start_sink() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--churches", type=int, default=20)
    parser.add_argument("--handsets", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--webhooks", type=int, default=60000,
                        help="pre-signed events (each sent at most once)")
    parser.add_argument("--otel", choices=("off", "sink"), default="off",
                        help="tracing in the web processes: off, or on and exported to a "
                             "collector stand-in that drops the spans")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    database_url = fresh_database(url_for_database(f"ywm_bench_carriers_{os.getpid()}"))
    redis_url, redis_lock = reserve_redis_db()
    procs: list[subprocess.Popen] = []
    sink = None
    try:
        numbers = asyncio.run(_seed(database_url, args.churches))
        webhooks = OUT / "telnyx_webhooks.tsv"
        _write_webhooks(webhooks, args.webhooks, numbers, args.handsets)
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
                   YWM_ENV="test", YWM_LOG_LEVEL="WARNING", YWM_OTEL_ENDPOINT="")
        if args.otel == "sink":
            sink, env["YWM_OTEL_ENDPOINT"] = _start_sink()
        procs = _start_web(env, args.port, args.processes)
        # Warm-up: fills the pools (so every backend exists before we read CPU times).
        warmup = OUT / "telnyx_warmup.tsv"
        _write_webhooks(warmup, 3000, numbers, args.handsets)
        _wrk(args.port, warmup, 2, args.connections, 3)
        web_pids = [p.pid for p in procs]
        pg_pids = _backend_pids(database_url)
        web_before, pg_before = cpu_seconds(web_pids), cpu_seconds(pg_pids)
        result = _wrk(args.port, webhooks, 2, args.connections, args.duration)
        web_cpu, pg_cpu = cpu_seconds(web_pids) - web_before, cpu_seconds(pg_pids) - pg_before
        counts = _count(database_url)
        stop_processes(procs)  # on exit, each web process exports the spans it still holds
        procs = []
        rate = result["requests"] / (result["duration_us"] / 1e6)
        report = {"processes": args.processes, "connections": args.connections,
                  "churches": args.churches, "rate_per_s": round(rate, 1),
                  "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
                  "max_ms": result["max_us"] / 1000, "requests": result["requests"],
                  "non_2xx": result["non_2xx"], "errors": result["connect_errors"]
                  + result["read_errors"] + result["write_errors"] + result["timeouts"],
                  "web_cpu_ms_per_webhook": round(web_cpu / result["requests"] * 1000, 2),
                  "pg_cpu_ms_per_webhook": round(pg_cpu / result["requests"] * 1000, 2),
                  "rows": counts, "otel": args.otel,
                  "spans_exported": _OtlpSink.spans if sink else None}
        print(json.dumps(report))
        name = "carriers_inbound.json" if args.otel == "off" else \
            f"carriers_inbound-otel-{args.otel}.json"
        (OUT / name).write_text(json.dumps(report, indent=2))
        return 0
    finally:
        stop_processes(procs)
        if sink is not None:
            sink.shutdown()
        drop_database(database_url)
        release_redis_db(redis_url, redis_lock)


if __name__ == "__main__":
    sys.exit(main())
