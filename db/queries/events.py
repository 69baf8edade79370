"""SQL for the per-church event log (`events`, partitioned by month on created_at).

Ids come from `churches.last_event_id`: the UPDATE takes the church row lock, so ids are
handed out in commit order per church and a replay by `id > last` never skips a row that
commits later with a smaller id.

`append_events` is how the app writes: a transaction's events are buffered and written
just before its COMMIT (server/events/log.py), every church's ids in one UPDATE and every
row in one INSERT, so the row lock is held for that statement and the COMMIT only, not for
the rest of the transaction. `next_event_id` + `insert_event` (one event, lock held from
the first event to COMMIT) stay for fixtures and for `bench/event_append.py`'s baseline.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Sequence
from uuid import UUID

import sqlalchemy as sa

from db.engine import Connection, Row
from db.tables import churches, events, webhook_endpoints

_NEXT_ID = (
    sa.update(churches)
    .where(churches.c.id == sa.bindparam("church_id"))
    .values(last_event_id=churches.c.last_event_id + 1)
    .returning(churches.c.last_event_id))

_INSERT = (
    sa.insert(events)
    .values(church_id=sa.bindparam("church_id"), id=sa.bindparam("id"),
            type=sa.bindparam("type"), data=sa.bindparam("data", type_=events.c.data.type))
    .returning(events.c.id, events.c.created_at))

_AFTER = (
    sa.select(events.c.id, events.c.type, events.c.created_at, events.c.data,
              events.c.church_id)
    .where(events.c.church_id == sa.bindparam("church_id"),
           events.c.id > sa.bindparam("after_id"))
    .order_by(events.c.id)
    .limit(sa.bindparam("limit")))

_OLDEST = (
    sa.select(sa.func.min(events.c.id))
    .where(events.c.church_id == sa.bindparam("church_id")))

_LAST_ID = sa.select(churches.c.last_event_id).where(churches.c.id == sa.bindparam("church_id"))

# One church (the common case: a request, or a batch of one church's webhooks): a plain
# VALUES list numbered from the UPDATE's base. On this box it plans and runs in about the
# time of the old one-event UPDATE + INSERT pair; the generic unnest join below costs
# about twice that for one event. A missing church leaves `bumped` empty: no rows.
_APPEND_ONE_CHURCH = """
WITH bumped AS (
    UPDATE churches SET last_event_id = last_event_id + %(count)s WHERE id = %(church)s
    RETURNING id, last_event_id - %(count)s AS base
)
INSERT INTO events (church_id, id, type, data)
SELECT b.id, b.base + e.seq, e.type, e.data FROM bumped b, (VALUES {rows}) AS e(seq, type, data)
RETURNING church_id, id, created_at
"""


@functools.lru_cache(maxsize=256)
def _append_one_church(count: int) -> str:
    rows = ", ".join(f"({seq}, %(t{seq})s, %(d{seq})s::jsonb)"
                     for seq in range(1, count + 1))
    return _APPEND_ONE_CHURCH.format(rows=rows)


# Several churches' rows are locked in id order first, so two transactions naming the same
# churches queue instead of deadlocking (the order UPDATE ... FROM visits rows in is the
# plan's).
_LOCK_IN_ORDER = ("SELECT 1 FROM churches WHERE id = ANY(%(churches)s::uuid[]) "
                  "ORDER BY id FOR NO KEY UPDATE; ")
# One message, one round trip: every church's ids (its last id + the count of its events
# in this batch), then every row numbered `base + seq`, seq being the event's rank within
# its church in record order. psycopg2 returns the last statement's rows.
_APPEND = """
WITH counts AS (
    SELECT * FROM unnest(%(churches)s::uuid[], %(counts)s::int[]) AS v(id, n)
), bumped AS (
    UPDATE churches c SET last_event_id = c.last_event_id + counts.n
      FROM counts WHERE c.id = counts.id
    RETURNING c.id, c.last_event_id - counts.n AS base
)
INSERT INTO events (church_id, id, type, data)
SELECT e.church_id, b.base + e.seq, e.type, e.data::jsonb
  FROM unnest(%(event_churches)s::uuid[], %(seqs)s::int[], %(types)s::text[],
              %(datas)s::text[]) AS e(church_id, seq, type, data)
  JOIN bumped b ON b.id = e.church_id
RETURNING church_id, id, created_at
"""

# Customer webhooks read the log through a cursor per active endpoint: rows after the
# oldest of them are kept until it has passed them (server/services/webhook_delivery.py).
_WEBHOOK_CURSOR = sa.select(sa.func.min(webhook_endpoints.c.last_event_id)).where(
    webhook_endpoints.c.church_id == sa.bindparam("church_id"), webhook_endpoints.c.active)

# Retention: a row goes only when it is older than the cutoff AND below the church's
# newest `keep` ids. Deleted in batches so no statement holds locks for long.
_PRUNE_BATCH = sa.text("""
DELETE FROM events
 WHERE church_id = :church_id
   AND (id, created_at) IN (
       SELECT id, created_at FROM events
        WHERE church_id = :church_id AND created_at < :cutoff AND id <= :max_id
        LIMIT :batch)
""")

# Only churches that have more than `keep` events can have anything to prune.
_PRUNABLE_CHURCHES = sa.select(churches.c.id, churches.c.last_event_id).where(
    churches.c.last_event_id > sa.bindparam("keep"))


async def next_event_id(conn: Connection, church_id: UUID | str) -> int:
    value = await conn.fetch_val(_NEXT_ID, {"church_id": church_id})
    if value is None:
        raise LookupError(f"church {church_id} does not exist")
    return int(value)


async def insert_event(conn: Connection, church_id: UUID | str, event_id: int, type_: str,
                       data: dict[str, Any]) -> Row:
    row = await conn.fetch_one(_INSERT, {"church_id": church_id, "id": event_id,
                                         "type": type_, "data": data})
    assert row is not None
    return row


async def append_events(conn: Connection,
                        batch: Sequence[tuple[UUID | str, str, dict[str, Any]]]
                        ) -> list[tuple[int, Any]]:
    """Write `(church_id, type, data)` rows, numbering each church's consecutively from
    its last id in the order given; `(id, created_at)` of each, in that order.

    Inside a transaction: the church rows stay locked until it ends. A church that does
    not exist raises LookupError (and the caller's transaction must roll back).
    """
    churches_seen: dict[str, int] = {}
    event_churches, seqs, types, datas = [], [], [], []
    for church_id, type_, data in batch:
        key = str(UUID(str(church_id)))
        churches_seen[key] = churches_seen.get(key, 0) + 1
        event_churches.append(key)
        seqs.append(churches_seen[key])
        types.append(type_)
        datas.append(json.dumps(data))
    ordered = sorted(churches_seen)
    if len(ordered) == 1:
        params: dict[str, Any] = {"church": ordered[0], "count": len(batch)}
        for seq, type_, data in zip(seqs, types, datas):
            params[f"t{seq}"], params[f"d{seq}"] = type_, data
        rows = await conn.fetch_all(_append_one_church(len(batch)), params)
    else:
        rows = await conn.fetch_all(_LOCK_IN_ORDER + _APPEND, {
            "churches": ordered, "counts": [churches_seen[c] for c in ordered],
            "event_churches": event_churches, "seqs": seqs, "types": types, "datas": datas})
    written: dict[tuple[str, int], Any] = {}
    first: dict[str, int] = {}  # each church's smallest new id: its base + 1
    for row in rows:
        church, event_id = str(row["church_id"]), int(row["id"])
        written[(church, event_id)] = row["created_at"]
        first[church] = min(first.get(church, event_id), event_id)
    if len(written) != len(batch):
        missing = sorted(set(ordered) - set(first))
        raise LookupError(f"church {', '.join(missing)} does not exist")
    ids = [first[church] - 1 + seq for church, seq in zip(event_churches, seqs)]
    return [(event_id, written[(church, event_id)])
            for church, event_id in zip(event_churches, ids)]


async def events_after(conn: Connection, church_id: UUID | str, after_id: int,
                       limit: int) -> list[Row]:
    return await conn.fetch_all(_AFTER, {"church_id": church_id, "after_id": after_id,
                                         "limit": limit})


async def oldest_event_id(conn: Connection, church_id: UUID | str) -> int | None:
    value = await conn.fetch_val(_OLDEST, {"church_id": church_id})
    return int(value) if value is not None else None


async def last_event_id(conn: Connection, church_id: UUID | str) -> int:
    value = await conn.fetch_val(_LAST_ID, {"church_id": church_id})
    return int(value or 0)


async def prunable_churches(conn: Connection, keep: int) -> list[Row]:
    """`{id, last_event_id}` of churches with more than `keep` events ever written."""
    return await conn.fetch_all(_PRUNABLE_CHURCHES, {"keep": keep})


async def prune_church(conn: Connection, church_id: UUID | str, cutoff: Any, keep: int,
                       batch: int = 5000) -> int:
    """Delete one batch of the church's rows past retention; returns how many went."""
    head = await last_event_id(conn, church_id)
    cursor = await conn.fetch_val(_WEBHOOK_CURSOR, {"church_id": church_id})
    max_id = head - keep if cursor is None else min(head - keep, int(cursor))
    return await conn.execute(_PRUNE_BATCH, {"church_id": church_id, "cutoff": cutoff,
                                             "max_id": max_id, "batch": batch})
