"""The process hub directly: a church that loses its last socket and gets a new one at
once stays subscribed (unsubscribe and subscribe are ordered under one lock)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson

from server.realtime import client as socket_state
from server.realtime import hub as realtime
from tests.services.test_events import new_church
from tests.stream_client import commit_events


class Memory:
    """A transport that keeps what the hub writes (a socket stand-in, not a mock of ours)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str | None] | None = None

    def write_message(self, message: str) -> Any:
        self.frames.append(ujson.loads(message))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed = (code, reason)


async def _wait_for(check: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.gen_test(timeout=30)
async def test_rejoin_right_after_the_last_leave_keeps_the_subscription(deps: Any) -> None:
    church = str(await new_church(deps))
    hub = realtime.hub_for(deps)
    first = socket_state.StreamClient(church, Memory())
    await hub.join(first)
    first.close(1000, "bye")  # last socket: an unsubscribe is now on its way
    await asyncio.sleep(0)
    transport = Memory()
    second = socket_state.StreamClient(church, transport)
    await hub.join(second)
    await second.catch_up(deps.db, None, deps.settings)
    assert hub.subscribed_churches() == [church]
    await commit_events(deps.db, deps.redis, church, 2)
    await _wait_for(lambda: len(transport.frames) == 3)
    assert [f.get("id") for f in transport.frames] == [None, "1", "2"]  # hello, then live


@pytest.mark.gen_test(timeout=30)
async def test_many_concurrent_first_joins_all_go_live(deps: Any) -> None:
    """Joins racing for the hub's first pub/sub connection all end up subscribed."""
    churches = [str(await new_church(deps, f"C{n}")) for n in range(20)]
    hub = realtime.hub_for(deps)
    transports = [Memory() for _ in churches]
    clients = [socket_state.StreamClient(c, t) for c, t in zip(churches, transports)]
    await asyncio.gather(*(hub.join(c) for c in clients))
    for client in clients:
        await client.catch_up(deps.db, None, deps.settings)
    for church in churches:
        await commit_events(deps.db, deps.redis, church, 1)
    await _wait_for(lambda: all(len(t.frames) == 2 for t in transports))
    for client in clients:
        client.close(1000, "done")
