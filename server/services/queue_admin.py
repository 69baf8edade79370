"""Operator views of the queues: Huey's task queue and the durable outbox, dead letters.

Huey's view comes from its Redis storage (pending list, schedule) plus counters our task
signals keep (workers/reconcile.py): processed, failed, and a set of running task ids
with an expiry, so a SIGKILLed worker's tasks stop counting as in flight on their own.
The outbox view comes from PostgreSQL, which is the truth for sends.

`report_backlog` turns the same sources into the gauges deploy/prometheus/alerts.yml
watches, read at each scrape of /metrics: `ywm_queue_oldest_age_seconds{queue}` and
`ywm_dead_letters{kind}` (docs/decisions.md, "Queue age").
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
import ujson

from db.engine import Database
from db.queries import backlog as backlog_q
from db.queries import broadcasts as bq
from db.queries import dead_letters as dq
from db.queries import recipients as rq
from server.platform import queue
from server.platform.errors import Conflict, NotFound
from server.services.followups import FollowUp, StartDispatch
from server.platform.redis import queue_running_key, queue_stats_key
from server.platform.jsonenc import iso_time
from server.platform.metrics import Metrics, describe

RUNNING_TTL_SECONDS = 900  # longer than any task runs; a killed worker's entries lapse
# A scrape must answer even when PostgreSQL or Redis hangs (YwmBoxDown reads it): past
# this the backlog gauges keep their last values and a warning is logged.
BACKLOG_TIMEOUT_SECONDS = 2.0
# Kinds reported even at 0, so each kind's first dead letter is a change Prometheus sees.
DEAD_LETTER_KINDS = ("broadcast_recipient", "conversation_reply")
QUEUE_AGE = "ywm_queue_oldest_age_seconds"
DEAD_LETTERS = "ywm_dead_letters"
describe(QUEUE_AGE, "gauge",
         "Seconds the oldest waiting work has waited: queue=huey, a task not yet taken by "
         "a worker (or a scheduled one past due); queue=outbox, an overdue reply or a "
         "broadcast recipient whose lease or retry time passed.")
describe(DEAD_LETTERS, "gauge", "Dead letters waiting for an operator, by kind.")
log = logging.getLogger("ywm.queues")


def _huey_snapshot(limit: int = 10_000) -> tuple[dict[str, int], dict[str, int],
                                                 dict[str, int]]:
    """Pending, scheduled and retry-scheduled counts per task name (blocking Redis)."""
    pending: dict[str, int] = {}
    scheduled: dict[str, int] = {}
    retrying: dict[str, int] = {}
    for task in queue.huey.pending(limit):
        pending[task.name] = pending.get(task.name, 0) + 1
    for task in queue.huey.scheduled(limit):
        scheduled[task.name] = scheduled.get(task.name, 0) + 1
        if task.retries < task.default_retries:  # re-scheduled after a failed run
            retrying[task.name] = retrying.get(task.name, 0) + 1
    return pending, scheduled, retrying


async def _counters(redis: aioredis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    stats: dict[Any, Any] = await redis.hgetall(queue_stats_key())  # type: ignore[misc]
    await redis.zremrangebyscore(queue_running_key(), "-inf", time.time())
    running: dict[str, int] = {}
    members: list[Any] = await redis.zrange(queue_running_key(), 0, -1)
    for member in members:
        name = str(member).split("|", 1)[-1]
        running[name] = running.get(name, 0) + 1
    return {str(k): int(v) for k, v in stats.items()}, running


async def overview(db: Database, redis: aioredis.Redis) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pending, scheduled, retrying = await loop.run_in_executor(None, _huey_snapshot)
    stats, running = await _counters(redis)
    names = set(pending) | set(scheduled) | set(running) | {
        key.rsplit(":", 1)[0] for key in stats}
    names |= set(queue.huey._registry._registry)  # every known task, even if idle
    tasks = [{"name": name, "pending": pending.get(name, 0),
              "scheduled": scheduled.get(name, 0), "in_flight": running.get(name, 0),
              "retrying": retrying.get(name, 0),
              "processed": stats.get(f"{name}:processed", 0),
              "failed": stats.get(f"{name}:failed", 0)} for name in sorted(names)]
    async with db.acquire() as conn:
        outbox = await rq.pending_totals(conn)
        dead = await dq.count_by_kind(conn)
    return {"tasks": tasks,
            "outbox": {"queued": outbox.get("queued", 0), "sending": outbox.get("sending", 0),
                       "retrying": outbox.get("retrying", 0),
                       "dead_lettered": sum(dead.values())},
            "dead_letters": dead}


async def backlog(db: Database) -> tuple[dict[str, float], dict[str, int]]:
    """({queue: oldest waiting age in seconds}, {kind: dead letters waiting}).

    queue="huey" is missing when the oldest task carries no enqueue time (queued by an
    older release); it is Huey's own view, so a task that Redis lost is not in it: the
    outbox age covers that (the reconciler re-enqueues from PostgreSQL)."""
    loop = asyncio.get_running_loop()
    huey_age = await loop.run_in_executor(None, queue.oldest_waiting_age)
    async with db.acquire() as conn:
        outbox_age = await backlog_q.oldest_overdue_seconds(conn)
        dead = await dq.count_by_kind(conn)
    ages = {"outbox": outbox_age} if huey_age is None else {"huey": huey_age,
                                                             "outbox": outbox_age}
    return ages, {kind: dead.get(kind, 0) for kind in (*DEAD_LETTER_KINDS, *dead)}


async def report_backlog(db: Database, metrics: Metrics) -> bool:
    """Set the backlog gauges from PostgreSQL and Redis; False (logged) when either did
    not answer in time: the scrape still answers, with the gauges' previous values."""
    try:
        ages, dead = await asyncio.wait_for(backlog(db), BACKLOG_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - /metrics answers whatever else failed
        log.warning("backlog gauges not updated: %s", type(exc).__name__)
        return False
    for name, age in ages.items():
        metrics.set(QUEUE_AGE, round(age, 3), queue=name)
    for kind, count in dead.items():
        metrics.set(DEAD_LETTERS, count, kind=kind)
    return True


def dead_letter_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "church_id": str(row["church_id"]), "kind": row["kind"],
            "ref": row["ref"], "error": row["error"], "created_at": iso_time(row["created_at"]),
            "requeued_at": iso_time(row["requeued_at"])}


async def list_dead_letters(db: Database, limit: int, cursor: str | None
                            ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        page = await dq.list_dead_letters(conn, limit, cursor)
    return page.view(dead_letter_view)


async def requeue(db: Database, dead_letter_id: UUID | None
                  ) -> tuple[dict[str, Any], list[FollowUp]]:
    """Put a dead letter's work back in the outbox; returns it and the dispatch to start
    after the commit."""
    async with db.transaction() as conn:
        row = await dq.get_dead_letter_for_update(conn, dead_letter_id) \
            if dead_letter_id else None
        if row is None:
            raise NotFound("No such dead letter.")
        if row["requeued_at"] is not None:
            raise Conflict("This dead letter was already requeued.")
        if row["kind"] != "broadcast_recipient":
            raise Conflict(f"Dead letters of kind {row['kind']} cannot be requeued here.")
        ref = row["ref"] if isinstance(row["ref"], dict) else ujson.loads(row["ref"])
        message_id, created_at = UUID(ref["message_id"]), datetime.fromisoformat(
            ref["created_at"])
        message = await bq.get_message_at(conn, row["church_id"], message_id, created_at)
        if message is None or not await bq.reopen_message(conn, message):
            raise Conflict("Its broadcast was canceled or no longer exists.")
        if not await rq.requeue_recipient(conn, row["church_id"], message_id, created_at,
                                          UUID(ref["member_id"])):
            raise Conflict("The recipient is no longer failed.")
        requeued_at = await dq.mark_requeued(conn, row["church_id"], row["id"])
    view = dead_letter_view({**row, "requeued_at": requeued_at})
    return view, [StartDispatch(str(row["church_id"]), str(message_id))]
