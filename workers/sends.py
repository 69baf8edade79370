"""Bulk-send tasks: dispatch lanes for broadcasts (server/services/dispatch.py), reply
sends, the trailing progress publish, and how each follow-up kind is enqueued.

Tasks carry ids only. A lane runs one time slice and re-enqueues itself (at the back of
the queue, so broadcasts take turns) or schedules itself for the next retry time. Every
state that matters is in PostgreSQL: a lost or duplicated task only delays or repeats a
claim, which the leases make harmless. So a lane whose next enqueue meets a Redis outage
logs it and ends instead of failing (a failed task would be retried through the same
Redis): the reconciler starts the broadcast's lanes again once its rows are overdue.
"""
from __future__ import annotations

import logging
from typing import Callable
from uuid import UUID

from server.deps import Deps
from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.services import dispatch, progress
from server.services.dispatch import REDIS_ERRORS
from server.services.followups import PublishProgress, SendReply, StartDispatch, enqueue_now
from server.services.followups import runs
from workers.runtime import run

log = logging.getLogger("ywm.workers.sends")


@huey.task(name="sends.dispatch_lane", retries=3, retry_delay=1)
def dispatch_lane(church_id: str, message_id: str) -> int:
    """One slice of work on a broadcast; returns how many texts it sent."""
    async def _lane(deps: Deps) -> dispatch.LaneResult:
        return await dispatch.run_lane(deps, church_id, message_id)
    result = run(_lane)

    def _next() -> None:
        enqueue_now(result.followups)
        if result.again_in == 0:
            dispatch_lane(church_id, message_id)
        elif result.again_in is not None:
            dispatch_lane.schedule((church_id, message_id), delay=result.again_in)
    _unless_redis_is_down(_next, "re-enqueue a dispatch lane")
    return result.sent


def _unless_redis_is_down(enqueue: Callable[[], None], what: str) -> None:
    try:
        enqueue()
    except REDIS_ERRORS as exc:
        log.warning("could not %s (redis: %s); the reconciler will", what,
                    type(exc).__name__)


@huey.task(name="sends.publish_progress", retries=3, retry_delay=1)
def publish_progress(church_id: str, message_id: str) -> None:
    """The trailing broadcast.progress a throttled publish asked for (the last counts)."""
    async def _publish(deps: Deps) -> float | None:
        return await progress.publish_trailing(deps.db, deps.redis, church_id, message_id)
    try:
        again = run(_publish)
    except REDIS_ERRORS as exc:  # counts are durable: the next change publishes them
        log.warning("progress publish skipped (redis: %s)", type(exc).__name__)
        return
    if again is not None:
        _unless_redis_is_down(
            lambda: publish_progress.schedule((church_id, message_id), delay=again),
            "schedule a progress publish")


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


# How each follow-up a service returns becomes a task (server/services/followups.py).

@runs(StartDispatch)
def _start_dispatch(followup: StartDispatch) -> None:
    start_dispatch(followup.church_id, followup.message_id)


@runs(SendReply)
def _send_reply(followup: SendReply) -> None:
    send_reply(followup.church_id, followup.conversation_message_id)


@runs(PublishProgress)
def _publish_progress(followup: PublishProgress) -> None:
    publish_progress.schedule((followup.church_id, followup.message_id),
                              delay=followup.delay)
