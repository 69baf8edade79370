"""broadcast.progress: published after commits that move a broadcast's counts, throttled.

API.md §7 allows at most 2 progress events a second per broadcast, and the last counts
must never be lost. The first change in a window publishes at once and takes the window
(a Redis key with a PROGRESS_INTERVAL_MS expiry); the first change the window skips asks
for one trailing publish at its end (a `PublishProgress` follow-up, flagged by a second
key so later skipped changes ask for nothing more), and that publish reads the counts
when it runs, so it covers every change before it. Callers: the dispatch lanes
(server/services/dispatch.py), delivery receipts (server/services/inbound.py) and the
trailing task (workers/sends.py `publish_progress`).
"""
from __future__ import annotations

from uuid import UUID

import redis.asyncio as aioredis

from db.engine import Database
from db.queries import broadcasts as bq
from db.queries import recipients as rq
from server.events import types as event_types
from server.events.log import publish_events, record_event
from server.platform.ratelimit import Script
from server.platform.redis import broadcast_progress_key, broadcast_progress_trailing_key
from server.services.broadcasts import broadcast_view
from server.services.followups import PublishProgress

PROGRESS_INTERVAL_MS = 500  # broadcast.progress at most 2/s per broadcast (API.md §7)
# A scheduled trailing publish holds its flag this long; if its task is lost, the next
# change after that schedules another.
PROGRESS_TRAILING_MS = 10_000


# KEYS: the window, the trailing flag; ARGV: the window's and the flag's ms. Returns
# WINDOW_TAKEN_BY_US (publish now), TRAILING_ALREADY_SCHEDULED (nothing to do), or the
# window's ms left (schedule the trailing publish then: this call set the flag).
WINDOW_TAKEN_BY_US = -1
TRAILING_ALREADY_SCHEDULED = -2
_THROTTLE = Script("""
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then return -1 end
if not redis.call('SET', KEYS[2], '1', 'PX', ARGV[2], 'NX') then return -2 end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
return left
""")


async def progress_changed(db: Database, redis: aioredis.Redis, church_id: UUID | str,
                           message_id: UUID | str, force: bool = False
                           ) -> PublishProgress | None:
    """Call after committing a change of a broadcast's counts: publish now, or return the
    trailing publish to enqueue (None: published, or one is already scheduled).

    `force` publishes even inside a window (the broadcast completed)."""
    church_id, message_id = UUID(str(church_id)), UUID(str(message_id))
    key = broadcast_progress_key(church_id, message_id)
    if force:
        await redis.set(key, "1", px=PROGRESS_INTERVAL_MS)
    else:
        # One round trip for the whole decision: every receipt batch and dispatch chunk
        # of a big send calls this, and most calls land inside a taken window.
        left_ms = int(await _THROTTLE.run(
            redis, (key, broadcast_progress_trailing_key(church_id, message_id)),
            (PROGRESS_INTERVAL_MS, PROGRESS_TRAILING_MS)))
        if left_ms == WINDOW_TAKEN_BY_US:
            pass  # publish below
        elif left_ms == TRAILING_ALREADY_SCHEDULED:
            return None
        else:
            return PublishProgress(str(church_id), str(message_id), max(left_ms, 50) / 1000)
    await _publish(db, redis, church_id, message_id)
    return None


async def publish_trailing(db: Database, redis: aioredis.Redis, church_id: UUID | str,
                           message_id: UUID | str) -> float | None:
    """The scheduled publish of counts a throttled change skipped; returns the seconds
    after which to run again when another publish holds the window (None: published)."""
    church_id, message_id = UUID(str(church_id)), UUID(str(message_id))
    key = broadcast_progress_key(church_id, message_id)
    if not await redis.set(key, "1", px=PROGRESS_INTERVAL_MS, nx=True):
        return await _window_left(redis, key)  # the flag stays: no one else schedules
    # Drop the flag before reading the counts: a change committed after this read finds
    # the flag gone and the window taken, so it schedules the next trailing publish.
    await redis.delete(broadcast_progress_trailing_key(church_id, message_id))
    await _publish(db, redis, church_id, message_id)
    return None


async def _window_left(redis: aioredis.Redis, key: str) -> float:
    left_ms = await redis.pttl(key)
    return max(int(left_ms), 50) / 1000


async def _publish(db: Database, redis: aioredis.Redis, church_id: UUID,
                   message_id: UUID) -> None:
    async with db.transaction() as conn:
        row = await bq.get_message(conn, church_id, message_id)
        if row is None:
            return
        view = broadcast_view(row, await rq.count_by_status(conn, row))
        event = await record_event(conn, church_id, event_types.broadcast_progress(
            message_id, view["counts"], row["status"], view["outcome"]))
    await publish_events(redis, [event])
