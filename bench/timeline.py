"""Issue 15 benchmark: a conversation's messages page with the member's group sends merged
in at read time (db/queries/timeline.py), against the thread's own texts alone.

Run: `.venv/bin/python -m bench.timeline` (PostgreSQL up). Uses its own database
`ywm_bench_timeline` (dropped and re-created each run). Seeds one church straight to SQL:
`--members` members, `--sends` group sends to all of them (so `sends × members` recipient
rows), and one member's conversation with `--texts` texts interleaved with the sends; then
ANALYZE and time, one call at a time in this process (median of `--calls`), the service
call the API runs (`conversations.list_messages`, 50 items): the newest page, a page 1,000
items back (by its cursor), and the same pages of the texts alone (what the endpoint read
before). Output: Markdown on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Awaitable, Callable

import psycopg2

from bench.resources import drop_database, fresh_database
from db.engine import Database
from db.queries import inbox
from server.auth.sessions import Actor
from server.platform.settings import Settings
from server.services import conversations

BENCH_DB = "ywm_bench_timeline"

_SEED = """
INSERT INTO churches (name) VALUES ('Bench') RETURNING id;
"""


def _seed(url: str, members: int, sends: int, texts: int) -> tuple[Any, Any]:
    """(church id, conversation id): sends a minute apart, texts between them."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(_SEED)
        church = cur.fetchone()[0]
        cur.execute("INSERT INTO numbers (church_id, phone, provider, mps) "
                    "VALUES (%s, '+18445550001', 'telnyx', 10) RETURNING id", (church,))
        number = cur.fetchone()[0]
        cur.execute("INSERT INTO members (church_id, first_name, phone_enc, phone_hash) "
                    "SELECT %s, 'm' || g, '\\x00'::bytea, decode(md5(g::text), 'hex') "
                    "FROM generate_series(1, %s) g", (church, members))
        cur.execute("SELECT id FROM members WHERE church_id = %s AND first_name = 'm1'",
                    (church,))
        member = cur.fetchone()[0]
        cur.execute("INSERT INTO messages (church_id, created_at, number_id, body, status) "
                    "SELECT %s, now() - make_interval(mins => g), %s, 'send ' || g, "
                    "'completed' FROM generate_series(1, %s) g", (church, number, sends))
        cur.execute("INSERT INTO message_recipients (church_id, message_id, member_id, "
                    "created_at, number_id, phone_enc, phone_hash, status) "
                    "SELECT m.church_id, m.id, mb.id, m.created_at, m.number_id, "
                    "mb.phone_enc, mb.phone_hash, 'delivered' "
                    "FROM messages m CROSS JOIN members mb WHERE m.church_id = %s", (church,))
        cur.execute("INSERT INTO conversations (church_id, member_id, number_id, "
                    "last_message_at) VALUES (%s, %s, %s, now()) RETURNING id",
                    (church, member, number))
        conversation = cur.fetchone()[0]
        cur.execute("INSERT INTO conversation_messages (church_id, conversation_id, "
                    "direction, body, status, created_at) "
                    "SELECT %s, %s, 'inbound', 'text ' || g, 'received', "
                    "now() - make_interval(mins => g) - interval '30 seconds' "
                    "FROM generate_series(1, %s) g", (church, conversation, texts))
    conn.autocommit = True
    conn.cursor().execute("ANALYZE")
    conn.close()
    return church, conversation


async def _median_ms(calls: int, fn: Callable[[], Awaitable[Any]]) -> float:
    await fn()  # warm: plans and caches
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def run(settings: Settings, church: Any, conversation: Any, calls: int
              ) -> list[tuple[str, str]]:
    db = await Database.connect(settings.database_url, maxsize=2)
    actor = Actor(church_id=church, role="owner")
    conv_id = str(conversation)
    try:
        deep: str | None = None
        for _ in range(20):  # walk 1,000 items back to a cursor
            _, deep = await conversations.list_messages(db, actor, conv_id, limit=50,
                                                        cursor=deep)
        async with db.acquire() as conn:
            texts_deep = None
            for _ in range(20):
                texts_deep = (await inbox.list_messages(conn, church, conversation, limit=50,
                                                        cursor=texts_deep)).next_cursor

        async def merged(cursor: str | None) -> Any:
            return await conversations.list_messages(db, actor, conv_id, limit=50,
                                                     cursor=cursor)

        async def texts_only(cursor: str | None) -> Any:
            async with db.acquire() as conn:
                return await inbox.list_messages(conn, church, conversation, limit=50,
                                                 cursor=cursor)
        rows = [
            ("merged timeline, newest page", await _median_ms(calls, lambda: merged(None))),
            ("merged timeline, 1,000 items back", await _median_ms(calls, lambda: merged(deep))),
            ("texts alone (before), newest page",
             await _median_ms(calls, lambda: texts_only(None))),
            ("texts alone (before), 1,000 items back",
             await _median_ms(calls, lambda: texts_only(texts_deep))),
        ]
    finally:
        await db.close()
    return [(label, f"{value:.2f} ms") for label, value in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    base = Settings.from_env({"YWM_ENV": "test"})
    settings = base.replace(database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
    fresh_database(settings.database_url)
    start = time.monotonic()
    church, conversation = _seed(settings.database_url, args.members, args.sends, args.texts)
    seeded = time.monotonic() - start
    rows = asyncio.run(run(settings, church, conversation, args.calls))
    print(f"Seeded {args.sends:,} group sends × {args.members:,} members = "
          f"{args.sends * args.members:,} recipient rows and {args.texts:,} texts "
          f"in {seeded:.0f} s.\n")
    print(f"| page of 50 (median of {args.calls} calls) | time |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    drop_database(settings.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
