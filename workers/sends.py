"""Bulk-send tasks: dispatch lanes for broadcasts (server/services/dispatch.py).

Tasks carry ids only. A lane runs one time slice and re-enqueues itself (at the back of
the queue, so broadcasts take turns) or schedules itself for the next retry time. Every
state that matters is in PostgreSQL: a lost or duplicated task only delays or repeats a
claim, which the leases make harmless.
"""
from __future__ import annotations

import logging
from uuid import UUID

from server.platform import queue
from server.deps import Deps
from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.services import dispatch
from workers.runtime import run

log = logging.getLogger("ywm.workers.sends")


@huey.task(name="sends.dispatch_lane", retries=3, retry_delay=1)
def dispatch_lane(church_id: str, message_id: str) -> int:
    """One slice of work on a broadcast; returns how many texts it sent."""
    async def _lane(deps: Deps) -> dispatch.LaneResult:
        return await dispatch.run_lane(deps, church_id, message_id)
    result = run(_lane)
    if result.progress_in is not None:
        publish_progress.schedule((church_id, message_id), delay=result.progress_in)
    if result.again_in == 0:
        dispatch_lane(church_id, message_id)
    elif result.again_in is not None:
        dispatch_lane.schedule((church_id, message_id), delay=result.again_in)
    return result.sent


@huey.task(name="sends.publish_progress", retries=3, retry_delay=1)
def publish_progress(church_id: str, message_id: str) -> None:
    """The trailing broadcast.progress a throttled publish asked for (the last counts)."""
    async def _publish(deps: Deps) -> float | None:
        return await dispatch.publish_trailing_progress(deps, church_id, message_id)
    again = run(_publish)
    if again is not None:
        publish_progress.schedule((church_id, message_id), delay=again)


async def progress_changed(deps: Deps, church_id: str, message_id: str) -> None:
    """After a commit that changed a broadcast's counts outside a lane (delivery receipts):
    publish broadcast.progress now, or schedule the trailing publish."""
    delay = await dispatch.progress_changed(deps, church_id, message_id)
    if delay is not None:
        await queue.enqueue(publish_progress.schedule, (church_id, message_id), delay=delay)


@huey.task(name="sends.send_reply", retries=3, retry_delay=1)
def send_reply(church_id: str, conversation_message_id: str) -> int:
    """Send one queued conversation reply (replies also jump ahead inside every lane)."""
    async def _reply(deps: Deps) -> int:
        return await dispatch.send_replies(deps, UUID(church_id),
                                           UUID(conversation_message_id), limit=1)
    return run(_reply)


def start_dispatch(church_id: str, message_id: str, lanes: int | None = None) -> None:
    """Enqueue a broadcast's lanes (call after the accepting transaction commits)."""
    for _ in range(lanes or queue_settings().send_lanes):
        dispatch_lane(church_id, message_id)
