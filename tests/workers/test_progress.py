"""broadcast.progress is throttled (API.md §7: at most 2/s per broadcast) but the last
counts are never lost: a throttled change asks for one trailing publish at the end of the
window (server/services/progress.py, run by workers/sends.py `publish_progress`), which
reads the counts when it runs."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.platform import queue
from server.platform.redis import (broadcast_progress_key, broadcast_progress_trailing_key,
                          connect_sync)
from server.services import progress
from server.services.followups import PublishProgress, enqueue
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import accept, run_lanes_once, sim_deps  # noqa: F401


def progress_events(settings: Any, message_id: str) -> list[dict[str, Any]]:
    rows = sql(settings, "SELECT data FROM events WHERE type = 'broadcast.progress' "
                         "AND data->>'id' = %s ORDER BY id", (message_id,))
    return [r[0] for r in rows]


def deliver(settings: Any, message_id: str, count: int) -> None:
    """What delivery receipts do to recipient rows (server/services/inbound.py)."""
    sql(settings, "UPDATE message_recipients SET status = 'delivered' WHERE member_id IN "
                  "(SELECT member_id FROM message_recipients WHERE message_id = %s "
                  "AND status <> 'delivered' ORDER BY member_id LIMIT %s)",
        (uuid.UUID(message_id), count))


async def changed(deps: Any, church_id: Any, message_id: str) -> PublishProgress | None:
    return await progress.progress_changed(deps.db, deps.redis, church_id, message_id)


@pytest.mark.gen_test(timeout=30)
async def test_throttled_change_gets_one_trailing_publish_with_the_last_counts(
        deps: Any) -> None:
    church = seed_church(deps.settings, members=3)
    message_id = await accept(deps, church)
    assert await changed(deps, church.id, message_id) is None
    assert len(progress_events(deps.settings, message_id)) == 1  # the window was free
    deliver(deps.settings, message_id, 1)
    trailing = await changed(deps, church.id, message_id)
    assert isinstance(trailing, PublishProgress)
    assert (trailing.church_id, trailing.message_id) == (str(church.id), message_id)
    assert 0 < trailing.delay <= progress.PROGRESS_INTERVAL_MS / 1000
    deliver(deps.settings, message_id, 2)  # the final counts, in the same window
    assert await changed(deps, church.id, message_id) is None  # scheduled
    assert len(progress_events(deps.settings, message_id)) == 1  # nothing published early
    # The trailing publish waits while another publish holds the window, keeping its flag.
    await deps.redis.set(broadcast_progress_key(church.id, message_id), "1", px=5000)
    again = await progress.publish_trailing(deps.db, deps.redis, church.id, message_id)
    assert again is not None and again > 0
    assert await deps.redis.exists(broadcast_progress_trailing_key(church.id, message_id))
    await deps.redis.delete(broadcast_progress_key(church.id, message_id))
    assert await progress.publish_trailing(deps.db, deps.redis, church.id, message_id) is None
    events = progress_events(deps.settings, message_id)
    assert len(events) == 2 and events[-1]["counts"]["delivered"] == 3
    # The flag is gone: the next throttled change schedules a trailing publish again.
    deliver(deps.settings, message_id, 0)
    assert await changed(deps, church.id, message_id) is not None


@pytest.mark.gen_test(timeout=60)
async def test_lane_asks_for_a_trailing_publish_when_throttled(
        sim_deps: Any) -> None:  # noqa: F811 - the fixture imported above
    sim, deps = sim_deps
    church = seed_church(deps.settings, members=30)
    message_id = await accept(deps, church)
    sim.config.update({"rate_5xx": 1.0})  # every send retries: the lane ends not completed
    await deps.redis.set(broadcast_progress_key(church.id, message_id), "1", px=5000)
    result = await run_lanes_once(deps, church, message_id)
    assert result.again_in is not None  # waiting for retries, no completion publish
    [trailing] = result.followups
    assert isinstance(trailing, PublishProgress) and trailing.delay > 0
    assert progress_events(deps.settings, message_id) == []


def test_receipt_hook_and_task_reschedule_then_publish(deps: Any, io_loop: Any,
                                                       settings: Any) -> None:
    queue.configure(settings)
    from workers import runtime, sends
    church = seed_church(settings, members=2)
    message_id = io_loop.run_sync(lambda: accept(deps, church))
    client = connect_sync(settings.redis_url)
    try:
        client.set(broadcast_progress_key(church.id, message_id), "1", px=60_000)
        deliver(settings, message_id, 2)
        # What a receipt does after its commit: the window is taken, so the service
        # returns the trailing publish and the caller enqueues it.
        trailing = io_loop.run_sync(lambda: changed(deps, church.id, message_id))
        assert io_loop.run_sync(lambda: enqueue([trailing])) == 1
        assert [t.name for t in queue.huey.pending()] == ["sends.publish_progress"]
        queue.huey.flush()
        sends.publish_progress.call_local(str(church.id), message_id)  # window still held
        assert progress_events(settings, message_id) == []
        assert [t.name for t in queue.huey.pending()] == ["sends.publish_progress"]
        queue.huey.flush()
        client.delete(broadcast_progress_key(church.id, message_id))
        sends.publish_progress.call_local(str(church.id), message_id)
        events = progress_events(settings, message_id)
        assert len(events) == 1 and events[0]["counts"]["delivered"] == 2
        assert queue.huey.pending() == []  # published: nothing more scheduled
    finally:
        runtime.close_runtime()
        client.close()
        queue.huey.flush()
