"""Issue 12 benchmark: customer webhook fan-out, event log → `ywm worker` → receivers.

Run: `.venv/bin/python -m bench.customer_webhooks --events 10000 --endpoints 10`
(PostgreSQL and Redis up). Uses its own database `ywm_bench_webhooks` and a free Redis DB.
1. one church with `--endpoints` endpoints, each subscribed to `member.opted_out`, all on
   loopback receivers served by this process (a minimal asyncio HTTP/1.1 server that
   answers 200 and counts distinct (endpoint, event id) pairs; every 25th request's
   signature is checked with the snippet published in docs/webhooks.md);
2. `--workers` `ywm worker` processes (`--threads` each) are started and left idle;
3. `--events` member.opted_out events (built once by the real builder) are committed to
   the church's event log in one transaction: t0;
4. done when every endpoint has received every event and PostgreSQL has no delivery left
   pending. Rate = deliveries / (done - t0). Also: the workers' CPU seconds per 1,000
   deliveries, the load average before and after, duplicates received.
Output: Markdown on stdout and var/bench/customer-webhooks.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg2

from bench.procs import exit_on_sigterm, stop_processes
from bench.resources import (cpu_seconds, fresh_database, release_redis_db,
                             reserve_redis_db, url_for_database)

ROOT = pathlib.Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
BENCH_DB = "ywm_bench_webhooks"
VERIFY_EVERY = 25
ID_RE = re.compile(rb'"id":"([^"]+)"')
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Sink(asyncio.Protocol):
    """One receiver connection: reads requests (Content-Length bodies), answers 200."""

    def __init__(self, stats: "Stats", index: int) -> None:
        self.stats, self.index, self.buffer = stats, index, b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            self.stats.note(self.index, head, body)
            self.transport.write(ANSWER)


class Stats:
    def __init__(self, endpoints: int, verify: Any) -> None:
        self.seen: list[set[str]] = [set() for _ in range(endpoints)]
        self.requests = 0
        self.secrets: list[str] = [""] * endpoints
        self.verify, self.checked, self.bad = verify, 0, 0

    def note(self, index: int, head: str, body: bytes) -> None:
        self.requests += 1
        found = ID_RE.search(body)
        if found:
            self.seen[index].add(found.group(1).decode())
        if self.requests % VERIFY_EVERY == 0:
            header = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                           if line.lower().startswith("ywm-signature:")), "")
            self.checked += 1
            self.bad += not self.verify(self.secrets[index], header, body)

    @property
    def distinct(self) -> int:
        return sum(len(s) for s in self.seen)


def _pending(database_url: str) -> int:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _insert_events(database_url: str, church_id: str, count: int) -> None:
    """`count` member.opted_out events in one transaction, as the log writes them."""
    from server.events import types
    from server.platform.jsonenc import jsonable
    data = json.dumps(jsonable(types.member_opted_out(
        uuid.uuid4(), "keyword", datetime.now(timezone.utc), "STOP").data))
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE churches SET last_event_id = last_event_id + %s WHERE id = %s "
                        "RETURNING last_event_id", (count, church_id))
            last = cur.fetchone()[0]
            cur.execute("INSERT INTO events (church_id, id, type, data) "
                        "SELECT %s, g, 'member.opted_out', %s::jsonb "
                        "FROM generate_series(%s, %s) g", (church_id, data, last - count + 1, last))
    finally:
        conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.deps import close_deps, open_deps
    from server.platform.settings import Settings
    from server.services import accounts, webhooks
    from tests.webhook_kit import documented_verify
    VAR.mkdir(parents=True, exist_ok=True)
    database_url = fresh_database(url_for_database(BENCH_DB))
    redis_url, redis_lock = reserve_redis_db()
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, YWM_ENV="test",
               YWM_QUEUE_NAME=f"ywm-bench-webhooks-{os.getpid()}",
               YWM_WEBHOOK_ALLOW_PRIVATE="true", YWM_LOG_LEVEL="WARNING",
               YWM_PASSWORD_HASH_PROFILE="test", PYTHONUNBUFFERED="1",
               YWM_WEBHOOK_CONCURRENCY=str(args.concurrency),
               YWM_WEBHOOK_POLL_SECONDS=str(args.poll))
    settings = Settings.from_env(env)
    stats = Stats(args.endpoints, documented_verify())
    loop = asyncio.get_running_loop()
    servers, workers = [], []
    log = open(VAR / "customer-webhooks-workers.log", "wb")
    deps = await open_deps(settings, "worker")
    try:
        church = await accounts.register(deps.db, deps.redis, settings, church_name="Bench",
                                         email=f"bench-{uuid.uuid4().hex[:8]}@example.org",
                                         password="correct horse battery", name="Bench")
        church_id = church.public()["church"]["id"]
        for index in range(args.endpoints):
            server = await loop.create_server(lambda i=index: Sink(stats, i), "127.0.0.1", 0)
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
            created = await webhooks.create_endpoint(deps.db, settings, uuid.UUID(str(church_id)), {
                "url": f"http://127.0.0.1:{port}/hook", "events": ["member.opted_out"]})
            stats.secrets[index] = created["secret"]
        for _ in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "server", "worker", "-w", str(args.threads), "-n"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        await asyncio.sleep(args.warmup)
        load_before = os.getloadavg()
        cpu_before = cpu_seconds([w.pid for w in workers])
        expected = args.events * args.endpoints
        t0 = time.monotonic()
        await loop.run_in_executor(None, _insert_events, database_url, str(church_id),
                                   args.events)
        deadline = t0 + args.timeout
        while stats.distinct < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        received_at = time.monotonic()
        while time.monotonic() < deadline and await loop.run_in_executor(
                None, _pending, database_url):
            await asyncio.sleep(0.1)
        done = time.monotonic()
        cpu = cpu_seconds([w.pid for w in workers]) - cpu_before
        load_after = os.getloadavg()
        result = {
            "events": args.events, "endpoints": args.endpoints, "deliveries": expected,
            "received_distinct": stats.distinct, "requests": stats.requests,
            "duplicates": stats.requests - stats.distinct,
            "signatures_checked": stats.checked, "signatures_bad": stats.bad,
            "seconds_to_receive": round(received_at - t0, 2),
            "seconds_to_recorded": round(done - t0, 2),
            "deliveries_per_second": round(stats.distinct / (received_at - t0), 1),
            "deliveries_per_second_recorded": round(stats.distinct / (done - t0), 1),
            "worker_cpu_seconds_per_1000": round(cpu / max(1, stats.distinct) * 1000, 3),
            "workers": args.workers, "threads": args.threads,
            "concurrency_per_endpoint": args.concurrency,
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "cores": os.cpu_count(),
        }
    finally:
        stop_processes(workers, stop_signal=2)
        log.close()
        for server in servers:
            server.close()
        await close_deps(deps)
        release_redis_db(redis_url, redis_lock)
    (VAR / "customer-webhooks.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    exit_on_sigterm()
    result = asyncio.run(run(args))
    print("| events | endpoints | deliveries | received | duplicates | s to receive | "
          "deliveries/s | worker CPU s / 1,000 | load before → after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {result['events']:,} | {result['endpoints']} | {result['deliveries']:,} | "
          f"{result['received_distinct']:,} | {result['duplicates']} | "
          f"{result['seconds_to_receive']} | {result['deliveries_per_second']:,} | "
          f"{result['worker_cpu_seconds_per_1000']} | {result['load_before'][0]} → "
          f"{result['load_after'][0]} |")
    print(json.dumps(result))
    return 0 if result["received_distinct"] == result["deliveries"] \
        and result["signatures_bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
