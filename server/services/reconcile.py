"""The reconciler: what makes a lost task or a killed worker only a delay.

Huey delivers at most once (LIBRARIES.md §4d): a SIGKILLed worker loses the task it was
running, and a flushed Redis loses every queued one. The truth is in PostgreSQL, so a
periodic pass (one per interval cluster-wide, under a Redis lock with a TTL) looks for:

- broadcasts with recipients overdue (queued/retrying past their time, or `sending` past
  the lease) and no live dispatch lane (its heartbeat key lapsed) → start lanes again;
- scheduled broadcasts that are due → resolve recipients, start lanes;
- recurring messages that are due → one broadcast per occurrence (services/recurring.py);
- conversation replies overdue the same way → their send task again;
- delivery receipts held because they beat their send's provider id → applied now;
- recipients whose send timed out after its request was written and whose receipt wait
  (`send_receipt_grace_seconds`) is over with no receipt naming them → due again, lanes
  started (the wait is PostgreSQL state, so it survives a lost queue or Redis).

It returns what to enqueue (`ReconcileReport.followups`); the worker task enqueues it
(services never import tasks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from db.queries import recipients as rq
from db.engine import Row
from db.queries import replies as pq
from server.deps import Deps
from server.platform.redis import dispatch_heartbeat_key
from server.services import broadcasts, inbound, recurring
from server.services.dispatch import HEARTBEAT_SECONDS
from server.services.followups import FollowUp, SendReply, start_dispatches

log = logging.getLogger("ywm.reconcile")


@dataclass
class ReconcileReport:
    restarted: list[tuple[str, str]] = field(default_factory=list)
    scheduled: list[tuple[str, str]] = field(default_factory=list)
    recurring: list[tuple[str, str]] = field(default_factory=list)
    # (church_id, conversation_message_id) of replies whose send task was lost
    replies: list[tuple[str, str]] = field(default_factory=list)
    receipts: int = 0  # early delivery receipts applied

    @property
    def to_dispatch(self) -> list[tuple[str, str]]:
        return self.restarted + self.scheduled + self.recurring

    @property
    def followups(self) -> list[FollowUp]:
        """The lanes to start and the reply sends to enqueue again."""
        sends: list[FollowUp] = [SendReply(church_id, reply_id)
                                 for church_id, reply_id in self.replies]
        return [*start_dispatches(self.to_dispatch), *sends]


async def release_awaiting(deps: Deps) -> list[tuple[str, str]]:
    """Recipients whose receipt wait is over are due again: start their broadcasts' lanes
    (claimed through the heartbeat key, as `restart_stalled` does)."""
    async with deps.db.acquire() as conn:
        released = await rq.release_awaiting(conn)
    if released:
        log.warning("%d broadcast(s) had sends with no answer and no receipt: sending again",
                    len(released))
    return await _claim_restarts(deps, released)


async def restart_stalled(deps: Deps, grace_seconds: float) -> list[tuple[str, str]]:
    """Broadcasts whose rows are overdue by `grace_seconds` and that no lane works on."""
    async with deps.db.acquire() as conn:
        overdue = await rq.list_overdue_broadcasts(conn, grace_seconds)
    restarted = await _claim_restarts(deps, overdue)
    if restarted:
        log.warning("restarting %d stalled broadcast(s)", len(restarted))
    return restarted


async def _claim_restarts(deps: Deps, rows: list[Row]) -> list[tuple[str, str]]:
    restarted = []
    for row in rows:
        key = dispatch_heartbeat_key(row["church_id"], row["message_id"])
        # SET NX claims the restart: two reconcilers (or a live lane) cannot double it.
        if await deps.redis.set(key, "reconciler", ex=int(HEARTBEAT_SECONDS), nx=True):
            restarted.append((str(row["church_id"]), str(row["message_id"])))
    return restarted


async def reconcile(deps: Deps, now: datetime | None = None) -> ReconcileReport:
    """One pass; safe to run concurrently (each step locks or dedupes its own rows)."""
    now = now or datetime.now(timezone.utc)
    report = ReconcileReport()
    report.restarted = await release_awaiting(deps)
    report.restarted += await restart_stalled(deps, deps.settings.reconcile_interval_seconds)
    report.scheduled = await broadcasts.start_due_scheduled(deps.db, redis=deps.redis)
    report.recurring = await recurring.run_due(deps, now)
    async with deps.db.acquire() as conn:
        overdue = await pq.list_overdue_replies(conn, deps.settings.reconcile_interval_seconds)
    report.replies = [(str(r["church_id"]), str(r["id"])) for r in overdue]
    report.receipts = await inbound.apply_early_receipts(deps.db, deps.redis, deps.settings)
    return report
