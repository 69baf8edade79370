"""Event-log retention: what the stream can replay, and the pruning of older rows.

API.md §7 promises a replay of at least the last 10,000 events AND the last 24 hours per
church; a row is deleted only when it is past both. A client resuming from a pruned id
gets `resync_required` (server/realtime/hub.py), never a silent gap.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from db.engine import Database
from db.queries import events as q

log = logging.getLogger("ywm.events.retention")

KEEP_EVENTS = 10_000
KEEP_FOR = timedelta(hours=24)
PRUNE_BATCH = 5_000  # rows per DELETE: short statements, short locks


@dataclass
class PruneResult:
    churches: int = 0
    deleted: int = 0


async def prune_events(db: Database, now: datetime | None = None, keep: int | None = None,
                       keep_for: timedelta = KEEP_FOR, batch: int = PRUNE_BATCH
                       ) -> PruneResult:
    """Delete event rows older than `keep_for` that are not among a church's last `keep`
    (default KEEP_EVENTS)."""
    keep = KEEP_EVENTS if keep is None else keep
    cutoff = (now or datetime.now(timezone.utc)) - keep_for
    result = PruneResult()
    async with db.acquire() as conn:
        churches = await q.prunable_churches(conn, keep)
    for church in churches:
        result.churches += 1
        while True:
            async with db.transaction() as conn:
                deleted = await q.prune_church(conn, church["id"], cutoff, keep, batch)
            result.deleted += deleted
            if deleted < batch:
                break
    if result.deleted:
        log.info("pruned events", extra={"deleted": result.deleted,
                                         "churches": result.churches})
    return result
