"""The periodic event-log prune runs under its cluster-wide Redis lock."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from server.platform import queue
from server.events.log import append_event
from server.platform.redis import connect_sync, sync_lock
from server.services import events as retention
from tests.services.test_events import _age, new_church
from workers.runtime import close_runtime


@pytest.fixture
def test_queue(settings: Any, clean: None) -> Iterator[Any]:
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


def test_prune_task_respects_the_lock(settings: Any, deps: Any, io_loop: Any,
                                      test_queue: Any, monkeypatch: Any) -> None:
    from workers import events as task_module
    monkeypatch.setattr(retention, "KEEP_EVENTS", 2)

    async def seed() -> Any:
        church = await new_church(deps)
        async with deps.db.transaction() as conn:
            for n in range(5):
                await append_event(conn, church, "conversation.updated", {"n": n})
        await _age(deps, church, 5, days=2)
        return church
    io_loop.run_sync(seed)
    client = connect_sync(settings.redis_url)
    held = sync_lock(client, "events.prune", 30)
    assert held.acquire()
    try:
        assert task_module.prune_events.call_local() == 0  # another run holds the slot
    finally:
        held.release()
    try:
        assert task_module.prune_events.call_local() == 3  # ids 1-3 go, the last 2 stay
        assert task_module.prune_events.call_local() == 0
    finally:
        close_runtime()  # this thread's worker loop and pools
        client.close()
