"""Issue 11 benchmark: appending events to one church's log from concurrent transactions.

Run: `.venv/bin/python -m bench.event_append` (PostgreSQL up; its own database
`ywm_bench_events`). Options: `--connections C` concurrent transactions, `--transactions
T` in all, `--events N` per transaction, `--work W` more statements in each transaction
after its events (the rest of a webhook's work: while they run, the old path holds the
church row lock), `--churches K` (transactions spread round-robin), `--mixed` (each
transaction's events spread over the churches instead, like a group-commit batch of many
churches' webhooks), `--modes`.

Two ways of writing the same events, measured back to back in one run:
- `per-event`: the old path, `next_event_id` + `insert_event` for each event at record
  time: 2 statements per event, the church row locked from the first event to COMMIT;
- `at-commit`: `server.events.log.append_event`, ids allocated and rows written by one
  statement just before COMMIT (db/engine.py deferred writes).
For each: events/s and transactions/s (wall clock: load-dependent), transaction latency
p50/p99, round trips to PostgreSQL per transaction and per event (counted on the aiopg
cursor), CPU of the PostgreSQL backends serving the pool and of this process per event,
and the 1-minute load before and after. Checks ids are gap-free 1..N*T per church.
Output: Markdown on stdout and var/bench/event-append.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import time
from typing import Any

import aiopg

from bench.procs import exit_on_sigterm
from bench.resources import cpu_seconds, fresh_database, url_for_database

ROOT = pathlib.Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
BENCH_DB = "ywm_bench_events"
MODES = ("per-event", "at-commit")


class RoundTrips:
    """Counts `execute` calls on aiopg cursors (each is one round trip to PostgreSQL)."""

    def __init__(self) -> None:
        self.count = 0
        original = aiopg.Cursor.execute
        counter = self

        async def execute(cur: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await original(cur, *args, **kwargs)
        aiopg.Cursor.execute = execute  # type: ignore[method-assign]


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def backend_pids(db: Any, size: int) -> list[int]:
    """The PostgreSQL backend of every pooled connection (the pool is filled first)."""
    held = [await db.pool.acquire() for _ in range(size)]
    pids = []
    for raw in held:
        cur = await raw.cursor()
        await cur.execute("SELECT pg_backend_pid()")
        pids.append((await cur.fetchone())[0])
        cur.close()
    for raw in held:
        db.pool.release(raw)
    return pids


async def run_mode(mode: str, db: Any, pids: list[int], counter: RoundTrips,
                   churches: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    from db.queries import events as q
    from server.events.log import append_event
    queue = iter(range(args.transactions))
    latencies: list[float] = []

    async def one_transaction(number: int) -> None:
        started = time.perf_counter()
        plan = [churches[(number + n if args.mixed else number) % len(churches)]
                for n in range(args.events)]
        if mode == "per-event":  # churches locked in one order, else they deadlock
            plan.sort(key=str)
        async with db.transaction() as conn:
            for n, church in enumerate(plan):
                data = {"n": n, "t": number}
                if mode == "per-event":
                    event_id = await q.next_event_id(conn, church)
                    await q.insert_event(conn, church, event_id, "conversation.updated", data)
                else:
                    await append_event(conn, church, "conversation.updated", data)
            for _ in range(args.work):
                await conn.execute("SELECT 1")
        latencies.append(time.perf_counter() - started)

    async def worker() -> None:
        for number in queue:
            await one_transaction(number)

    load_before = os.getloadavg()[0]
    trips, pg_cpu, client_cpu = counter.count, cpu_seconds(pids), own_cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.connections)))
    wall = time.perf_counter() - started
    trips, pg_cpu = counter.count - trips, cpu_seconds(pids) - pg_cpu
    client_cpu = own_cpu() - client_cpu
    events = args.transactions * args.events
    latencies.sort()
    return {"mode": mode, "events": events, "seconds": round(wall, 3),
            "events_per_s": round(events / wall), "tx_per_s": round(args.transactions / wall),
            "tx_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "tx_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "round_trips_per_tx": round(trips / args.transactions, 2),
            "round_trips_per_event": round(trips / events, 3),
            "pg_cpu_us_per_event": round(pg_cpu / events * 1e6, 1),
            "client_cpu_us_per_event": round(client_cpu / events * 1e6, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


async def check_gap_free(db: Any, churches: list[Any], expected: dict[Any, int]) -> None:
    for church in churches:
        rows = await db.fetch_all(
            "SELECT id FROM events WHERE church_id = %(c)s ORDER BY id", {"c": church})
        assert [r["id"] for r in rows] == list(range(1, expected[church] + 1)), church


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    from db.engine import Database
    url = fresh_database(url_for_database(BENCH_DB))
    counter = RoundTrips()
    db = await Database.connect(url, minsize=args.connections, maxsize=args.connections)
    results = []
    try:
        pids = await backend_pids(db, args.connections)
        for mode in args.modes:
            churches = [await db.fetch_one(
                "INSERT INTO churches (name) VALUES (%(n)s) RETURNING id", {"n": f"{mode} {i}"})
                for i in range(args.churches)]
            ids = [row["id"] for row in churches if row is not None]
            results.append(await run_mode(mode, db, pids, counter, ids, args))
            per_church = {c: 0 for c in ids}
            for number in range(args.transactions):
                for n in range(args.events):
                    per_church[ids[(number + n if args.mixed else number) % len(ids)]] += 1
            await check_gap_free(db, ids, per_church)
    finally:
        await db.close()
    return results


def markdown(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    keys = ["mode", "events_per_s", "tx_per_s", "tx_p50_ms", "tx_p99_ms",
            "round_trips_per_tx", "round_trips_per_event", "pg_cpu_us_per_event",
            "client_cpu_us_per_event", "load_before", "load_after"]
    lines = [f"{args.connections} connections, {args.transactions} transactions of "
             f"{args.events} event(s) + {args.work} statement(s), {args.churches} church(es)"
             + (", each transaction's events spread over them" if args.mixed else ""),
             "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in results]
    return "\n".join(lines)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--work", type=int, default=2)
    parser.add_argument("--churches", type=int, default=1)
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(markdown(args, results))
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / "event-append.json").write_text(json.dumps(
        {"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
