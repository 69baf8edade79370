"""Issue 6 benchmark: a bulk send of N recipients through real processes and the simulator.

Run: `.venv/bin/python -m bench.sends --recipients 100000` (PostgreSQL and Redis up).
Uses its own database `ywm_bench_sends`, a free Redis DB, and on loopback:
`ywm carrier-sim` (one process), `--web` `ywm web` processes on one port (SO_REUSEPORT)
and `--workers` `ywm worker` processes (`--threads` each). Steps:
1. seed one church with N opted-in members in one group and a number (`--mps`; 0 = no
   carrier limit: the number's MPS is set far above what the box can send);
2. POST /messages (the accept: one transaction, one INSERT … SELECT) and time it;
3. watch the simulator until it has accepted N sends: dispatch rate = sends / time from
   the first to the last send; with `--delivered`, also wait until PostgreSQL has every
   recipient `delivered` (status webhooks flow back into the web processes);
4. CPU seconds (user + system, from /proc) of the web and worker processes over the run,
   per 1,000 texts; and per-second / sliding one-second maxima at the simulator.
With `--delivered` the report adds the simulator's side of the receipts (its CPU per
text, i.e. one accept and two signed receipt posts; webhook attempts, failures and
duplicates from its counters) and the receipts/s our web processes took in; the load
average before and after says how busy the box was (timings are wall clock).
Output: Markdown on stdout and var/bench/sends-<mode>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psycopg2

from bench.procs import exit_on_sigterm, stop_processes
from bench.resources import (BackendCpu, cpu_seconds, fresh_database, release_redis_db,
                             reserve_redis_db, url_for_database)

ROOT = pathlib.Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
BENCH_DB = "ywm_bench_sends"
UNLIMITED_MPS = 1_000_000  # "no carrier limit": the throttle never binds


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _spawn(args: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "server", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _count(database_url: str, status: str) -> int:
    """Recipients in `status`; waits out "too many clients" (the box's PostgreSQL is
    shared with other runs)."""
    for _ in range(60):
        try:
            conn = psycopg2.connect(database_url)
        except psycopg2.OperationalError:
            time.sleep(1)
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM message_recipients WHERE status = %s",
                            (status,))
                return int(cur.fetchone()[0])
        finally:
            conn.close()
    raise RuntimeError("PostgreSQL refused connections for a minute")


def _analyze(database_url: str) -> None:
    """Statistics for the rows just seeded, as autovacuum would give them a while later: a
    plan made on a never-analyzed members table (reltuples -1) can walk the church's
    every member per event (measured: 226 ms for a batch of 30 receipts, 0.4 ms after)."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()


def _sliding_max(stamps: list[float]) -> int:
    stamps.sort()
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.platform.settings import Settings
    from tests.workers.bulk import seed_church
    from tests.workers.procs import free_port
    VAR.mkdir(parents=True, exist_ok=True)
    database_url = fresh_database(url_for_database(BENCH_DB))
    redis_url, redis_lock = reserve_redis_db()
    settings = Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                  "YWM_QUEUE_NAME": "ywm-bench-sends", "YWM_ENV": "test"})
    mps = args.mps or UNLIMITED_MPS
    load_before = os.getloadavg()
    started = time.monotonic()
    church = seed_church(settings, members=args.recipients, mps=mps)
    _analyze(database_url)
    seeded = time.monotonic() - started
    web_port, sim_port = free_port(), free_port()
    web_url, sim_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
               YWM_QUEUE_NAME="ywm-bench-sends", YWM_ENV="test", YWM_LOG_LEVEL="WARNING",
               YWM_PUBLIC_URL=web_url, YWM_TELNYX_API_BASE=f"{sim_url}/telnyx/v2",
               YWM_TWILIO_API_BASE=f"{sim_url}/twilio", PYTHONUNBUFFERED="1")
    log = open(VAR / "sends.log", "ab")
    procs: dict[str, list[subprocess.Popen[bytes]]] = {"sim": [], "web": [], "worker": []}
    try:
        procs["sim"].append(_spawn(["carrier-sim", "--port", str(sim_port),
                                    "--callback-url", web_url], env, log))
        _wait_http(f"{sim_url}/control/received?limit=0")
        _http("POST", f"{sim_url}/control/config", {
            "status_webhooks": args.delivered, "webhook_concurrency": args.sim_concurrency,
            "status_delay_ms": args.status_delay_ms})
        procs["web"] = [_spawn(["web", "--port", str(web_port)], env, log)
                        for _ in range(args.web)]
        _wait_http(f"{web_url}/health")
        procs["worker"] = [_spawn(["worker", "-w", str(args.threads), "-n"], env, log)
                           for _ in range(args.workers)]
        time.sleep(2)  # consumers up
        token = asyncio.run(_token(settings, church))
        ours = [p.pid for p in procs["web"] + procs["worker"]]
        web_pids = [p.pid for p in procs["web"]]
        cpu_before, sim_cpu_before = cpu_seconds(ours), cpu_seconds(
            [p.pid for p in procs["sim"]])
        web_cpu_before = cpu_seconds(web_pids)
        pg_cpu = BackendCpu(database_url)
        pg_cpu.sample()
        t0 = time.monotonic()
        accepted = _http("POST", f"{web_url}/api/v1/messages", {
            "body": "Service moved to 11am tomorrow. See you there!",
            "group_ids": [str(church.group_id)]}, token)
        accept_seconds = time.monotonic() - t0
        assert accepted["data"]["recipient_count"] == args.recipients, accepted
        while True:
            received = _http("GET", f"{sim_url}/control/received?limit=0")
            pg_cpu.sample()
            if received["count"] >= args.recipients or time.monotonic() - t0 > args.timeout:
                break
            time.sleep(0.5)
        all_sent = time.monotonic() - t0
        delivered_seconds = None
        if args.delivered:
            while _count(database_url, "delivered") < args.recipients:
                pg_cpu.sample()
                if time.monotonic() - t0 > args.timeout:
                    break
                time.sleep(1)
            delivered_seconds = time.monotonic() - t0
        cpu = cpu_seconds(ours) - cpu_before
        web_cpu = cpu_seconds(web_pids) - web_cpu_before
        sim_cpu = cpu_seconds([p.pid for p in procs["sim"]]) - sim_cpu_before
        pg_cpu.sample()
        pg_seconds = pg_cpu.seconds()
        pg_cpu.close()
        full = _http("GET", f"{sim_url}/control/received?limit={args.recipients * 2}")
    finally:
        for group in ("worker", "web", "sim"):
            stop_processes(procs[group],
                           signal.SIGINT if group == "worker" else signal.SIGTERM)
        log.close()
        release_redis_db(redis_url, redis_lock)
    load_after = os.getloadavg()
    stamps = [m["at"] for m in full["messages"]]
    counters = full.get("counters", {})
    span = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
    result = {
        "recipients": args.recipients, "mps": args.mps, "workers": args.workers,
        "sim_concurrency": args.sim_concurrency, "status_delay_ms": args.status_delay_ms,
        "threads": args.threads, "web": args.web, "seed_seconds": round(seeded, 1),
        "accept_seconds": round(accept_seconds, 3),
        "sent_at_carrier": full["count"], "duplicates": full["duplicates"]["count"],
        "dispatch_seconds": round(span, 2),
        "dispatch_rate_per_s": round((len(stamps) - 1) / span, 1) if span else None,
        "all_sent_seconds": round(all_sent, 2),
        "all_delivered_seconds": round(delivered_seconds, 2) if delivered_seconds else None,
        "delivered": _count(database_url, "delivered") if args.delivered else None,
        "cpu_seconds_web_workers": round(cpu, 2),
        "cpu_seconds_per_1000": round(cpu / (args.recipients / 1000), 3),
        "web_cpu_seconds": round(web_cpu, 2),
        "worker_cpu_seconds": round(cpu - web_cpu, 2),
        "pg_cpu_seconds": round(pg_seconds, 2),
        "sim_cpu_seconds": round(sim_cpu, 2),
        # Everything the box spent per text: web, workers, PostgreSQL and the simulator.
        "all_cpu_ms_per_text": round((cpu + pg_seconds + sim_cpu) / args.recipients * 1000,
                                     3),
        "max_per_fixed_second": max(full["max_per_second"].values()),
        "max_per_sliding_second": _sliding_max(stamps),
        "load_before": " ".join(f"{x:.2f}" for x in load_before),
        "load_after": " ".join(f"{x:.2f}" for x in load_after),
    }
    if args.delivered:
        result.update({
            "receipts_per_s": round(2 * args.recipients / delivered_seconds, 1)
            if delivered_seconds else None,
            "sim_cpu_ms_per_text": round(sim_cpu / args.recipients * 1000, 3),
            "sim_webhooks_delivered": counters.get("webhooks_delivered", 0),
            "sim_webhook_failures": counters.get("webhook_failures", 0),
            "sim_webhook_duplicates": counters.get("webhook_duplicates", 0)})
    mode = f"mps{args.mps}" if args.mps else "unlimited"
    (VAR / f"sends-{mode}.json").write_text(json.dumps(result, indent=2))
    return result


async def _token(settings: Any, church: Any) -> str:
    from server.auth.sessions import create_session
    from server.platform.redis import connect_async
    client = connect_async(settings.redis_url)
    try:
        pair = await create_session(client, settings, church.id, church.group_id, "admin")
        return pair.access_token
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--mps", type=int, default=0, help="the number's MPS; 0 = no limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--web", type=int, default=1)
    parser.add_argument("--delivered", action="store_true",
                        help="status webhooks on; wait for every recipient delivered")
    parser.add_argument("--sim-concurrency", type=int, default=64,
                        help="webhooks the simulator keeps in flight to the web processes")
    parser.add_argument("--status-delay-ms", type=float, default=20.0,
                        help="the simulator's wait between accepting a send and its first "
                             "receipt (its default 20 ms often beats the worker's commit of "
                             "the provider id: the receipt is then adopted or held)")
    parser.add_argument("--timeout", type=float, default=1200)
    result = run(parser.parse_args(argv))
    print("| measure | value |\n| --- | --- |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
