"""Issue 15 benchmark: what the members list's total, the last-four search and the
merge-field estimate cost, as service calls on one church of 100,000 members.

Run: `.venv/bin/python -m bench.member_search` (PostgreSQL up). Uses its own database
`ywm_bench_search` (dropped and re-created each run). Steps: seed 100,000 members in one
group straight to SQL (tests/workers/bulk.py), fill their last-four hashes with
`index_phones` (timed: what `ywm index-phones` does after migration 0008), ANALYZE, then
time, one call at a time in this process (median of `--calls`):
- `list_members` page of 50, as the API runs it (with `meta.total`), and the page alone;
- `list_members(q=<last four>)` (keyed hash of the last four digits) and by a whole phone;
- `merge.longest_text` for a body with {first_name} over the 100,000-member group, and
  the estimate of the same body without fields (what POST /messages did before).
Output: Markdown on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Awaitable, Callable

import psycopg2

from bench.resources import fresh_database
from db.engine import Database
from db.queries import broadcasts as bq
from db.queries import members as mq
from server.platform import crypto
from server.platform.settings import Settings
from server.services import members, merge, phone_search
from tests.workers.bulk import Church, phone_for, seed_church

BENCH_DB = "ywm_bench_search"


async def _median_ms(calls: int, fn: Callable[[], Awaitable[Any]]) -> float:
    await fn()  # warm: plans and caches
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _existing(settings: Settings) -> Church:
    """The church a previous run seeded (`--reuse`)."""
    conn = psycopg2.connect(settings.database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT church_id, id FROM groups LIMIT 1")
        church_id, group_id = cur.fetchone()
        cur.execute("SELECT id FROM numbers LIMIT 1")
        number_id = cur.fetchone()[0]
    conn.close()
    church = Church(church_id, group_id, number_id, "")
    church.phones = [phone_for(i) for i in range(100_000)]
    return church


async def run(settings: Settings, size: int, calls: int, reuse: bool) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    start = time.perf_counter()
    church = _existing(settings) if reuse else seed_church(settings, members=size)
    if not reuse:
        rows.append((f"seed {size:,} members (SQL)", f"{time.perf_counter() - start:.1f} s"))
    db = await Database.connect(settings.database_url, maxsize=2)
    try:
        start = time.perf_counter()
        indexed = await phone_search.index_phones(db, settings, batch_size=1000)
        seconds = time.perf_counter() - start
        if not reuse:
            rows.append((f"index_phones ({indexed:,} rows, batches of 1,000)",
                         f"{seconds:.1f} s ({indexed / seconds:,.0f} rows/s)"))
        async with db.acquire() as conn:
            await conn.execute("ANALYZE members")
        last4, phone = church.phones[12345 % size][-4:], church.phones[777 % size]

        async def page_only() -> Any:
            async with db.acquire() as conn:
                return await mq.list_members(conn, church.id, 50)

        async def by_hash(phone: str) -> Any:
            digest = crypto.phone_hash(settings, phone)
            async with db.acquire() as conn:
                await mq.list_members(conn, church.id, 50, phone_hash=digest)
                return await mq.count_members(conn, church.id, phone_hash=digest)

        async def count() -> Any:
            async with db.acquire() as conn:
                return await mq.count_members(conn, church.id)

        timings = {
            "GET /members first page of 50 + meta.total (list_members)":
                lambda: members.list_members(db, settings, church.id, 50),
            "the page of 50 alone (later pages, before meta.total)": page_only,
            "meta.total alone (count of 100,000)": count,
            f"q={last4} (last four digits, keyed hash)":
                lambda: members.list_members(db, settings, church.id, 50, query=last4),
            # The seeded phones (+1300 000 …) are not valid NANP numbers, so `q` would
            # read them as a name: time the query layer's whole-phone lookup instead.
            "whole phone (phone_hash: page + total)": lambda: by_hash(phone),
        }
        for label, fn in timings.items():
            rows.append((label, f"{await _median_ms(calls, fn):.2f} ms"))

        async def longest(body: str) -> Any:
            async with db.acquire() as conn:
                return await merge.longest_text(conn, church.id, body, [church.group_id], [])
        with_fields = "Hi {first_name|friend}, choir is at 7 tonight!"
        rows.append((f"longest merged text over {size:,} recipients",
                     f"{await _median_ms(calls, lambda: longest(with_fields)):.2f} ms"))
        async def audience() -> Any:
            async with db.acquire() as conn:
                return await bq.count_audience(conn, church.id, [church.group_id], [])
        rows.append(("for scale: counting the same audience (what every send already does)",
                     f"{await _median_ms(calls, audience):.2f} ms"))
        rows.append(("the same estimate for a body without fields",
                     f"{await _median_ms(calls, lambda: longest('Choir is at 7!')):.2f} ms"))
    finally:
        await db.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database a previous run seeded (skips seeding)")
    args = parser.parse_args()
    base = Settings.from_env({"YWM_ENV": "test"})
    settings = base.replace(database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
    if not args.reuse:
        fresh_database(settings.database_url)
    rows = asyncio.run(run(settings, args.members, args.calls, args.reuse))
    print(f"| step ({args.members:,} members, median of {args.calls} calls) | result |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
