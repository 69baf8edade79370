"""Many sockets opening at once (issue 11): a join waits for its church's subscription
however busy the hub is, a process past its bound of opening sockets sheds with 1013, and
the client's resume after a shed (served from the hub's recent frames, or from the log
when they do not reach back far enough) loses and duplicates nothing."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest
import tornado.httpclient
import ujson

from server.realtime import hub as realtime
from tests.factories import register
from tests.stream_client import (assert_silent, close_sockets, commit_events, connect,
                                 read_frame, read_frames, stream_url)

__all__ = ["close_sockets"]

# Longer than any timer a join ever raced (SUBSCRIBE_TIMEOUT was 10 s): a join that
# still gives up on a busy reader fails this test.
BUSY_SECONDS = 11.0


def _bearer(base_url: str, token: str, last_event_id: str | None = None) -> Any:
    return tornado.httpclient.HTTPRequest(
        stream_url(base_url, last_event_id=last_event_id),
        headers={"Authorization": f"Bearer {token}"}, connect_timeout=30, request_timeout=30)


@contextlib.asynccontextmanager
async def _database_busy(deps: Any) -> AsyncIterator[None]:
    """Every connection of the process's pool checked out: the reader's head read for a
    new subscription waits until the block ends (a reader busy for that long)."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(deps.db.pool.maxsize):
            await stack.enter_async_context(deps.db.acquire())
        yield


async def _ids(ws: Any, count: int) -> list[str]:
    return [f["id"] for f in await read_frames(ws, count, timeout=15)]


@pytest.mark.gen_test(timeout=90)
async def test_a_burst_of_opens_waits_out_a_busy_reader(api: Any, base_url: str,
                                                        deps: Any) -> None:
    owners = [await register(api, f"Burst {n}") for n in range(12)]
    for owner in owners:
        await commit_events(deps.db, deps.redis, owner["church_id"], 2)
    per_church = 15
    async with _database_busy(deps):
        opening = [asyncio.ensure_future(connect(_bearer(base_url, o["access_token"])))
                   for o in owners for _ in range(per_church)]
        await asyncio.sleep(BUSY_SECONDS)
        # Upgraded, but no hello yet: every one is still waiting for its subscription.
        assert all(not f.done() or f.exception() is None for f in opening)
    sockets = await asyncio.wait_for(asyncio.gather(*opening), 30)
    for ws in sockets:
        assert await read_frame(ws, timeout=30) == {"type": "hello", "last_event_id": "2"}
    for owner in owners:
        await commit_events(deps.db, deps.redis, owner["church_id"], 2)
    for ws in sockets:
        assert await _ids(ws, 2) == ["3", "4"]
        assert ws.close_code is None
    hub = realtime.hub_for(deps)
    assert len(hub.clients()) == len(owners) * per_church
    assert hub.opening == 0


@pytest.mark.gen_test(timeout=60)
async def test_past_the_bound_a_socket_is_shed_with_1013_and_resumes_losslessly(
        api: Any, base_url: str, deps: Any) -> None:
    owner, other = await register(api, "Shed"), await register(api, "Busy")
    church = owner["church_id"]
    watcher = await connect(_bearer(base_url, owner["access_token"]))  # keeps it subscribed
    assert (await read_frame(watcher))["type"] == "hello"
    ws = await connect(_bearer(base_url, owner["access_token"]))
    assert (await read_frame(ws))["type"] == "hello"
    await commit_events(deps.db, deps.redis, church, 3)
    last = (await _ids(ws, 3))[-1]
    assert await _ids(watcher, 3) == ["1", "2", "3"]
    ws.close()
    missed = await commit_events(deps.db, deps.redis, church, 4)
    assert await _ids(watcher, 4) == [e["id"] for e in missed]
    hub = realtime.hub_for(deps)
    hub.max_opening = 1
    async with _database_busy(deps):
        # One socket of a church new to this process: waiting for its subscription.
        pending = asyncio.ensure_future(connect(_bearer(base_url, other["access_token"])))
        for _ in range(200):
            if hub.opening == 1:
                break
            await asyncio.sleep(0.05)
        assert hub.opening == 1
        shed = await connect(_bearer(base_url, owner["access_token"], last_event_id=last))
        assert await read_frame(shed) is None
        assert shed.close_code == 1013
    assert (await read_frame(await asyncio.wait_for(pending, 30), timeout=30))["type"] == \
        "hello"
    hub.max_opening = realtime.MAX_OPENING
    resumed = await connect(_bearer(base_url, owner["access_token"], last_event_id=last))
    assert await read_frame(resumed) == {"type": "hello", "last_event_id": last}
    assert await _ids(resumed, 4) == [e["id"] for e in missed]
    live = await commit_events(deps.db, deps.redis, church, 1)
    assert await _ids(resumed, 1) == [live[0]["id"]]
    await assert_silent(resumed)
    assert hub.opening == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_resume_older_than_the_recent_frames_reads_the_log(
        api: Any, base_url: str, deps: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(realtime, "RECENT_FRAMES", 3)
    owner = await register(api)
    church = owner["church_id"]
    watcher = await connect(_bearer(base_url, owner["access_token"]))
    assert (await read_frame(watcher))["type"] == "hello"
    events = await commit_events(deps.db, deps.redis, church, 6)
    assert await _ids(watcher, 6) == [e["id"] for e in events]
    assert realtime.hub_for(deps).recent(str(church), 1) is None  # only 4..6 kept
    for after, expected in (("1", events[1:]), ("3", events[3:]), ("6", [])):
        ws = await connect(_bearer(base_url, owner["access_token"], last_event_id=after))
        assert await read_frame(ws) == {"type": "hello", "last_event_id": after}
        assert await _ids(ws, len(expected)) == [e["id"] for e in expected]
        await assert_silent(ws, 0.2)
        ws.close()
    frames = [ujson.loads(f.text) for _, f in realtime.hub_for(deps).recent(str(church), 3)[1]]
    assert frames == [{k: v for k, v in e.items() if k != "church_id"} for e in events[3:]]


@pytest.mark.gen_test(timeout=30)
async def test_session_rechecks_of_a_burst_share_round_trips_and_keep_their_answers(
        deps: Any) -> None:
    """Hundreds of sockets re-check their session at once (batched pipelines): each gets
    its own session's answer, including past one batch."""
    from server.platform.redis import session_key
    church = "00000000-0000-0000-0000-0000000000c1"
    alive = {f"s{n}" for n in range(0, realtime.SESSION_CHECK_BATCH + 200, 3)}
    for sid in alive:
        await deps.redis.set(session_key(church, sid), "x", ex=60)
    hub = realtime.hub_for(deps)
    sids = [f"s{n}" for n in range(realtime.SESSION_CHECK_BATCH + 200)]
    answers = await asyncio.wait_for(
        asyncio.gather(*(hub.session_alive(church, sid) for sid in sids)), 20)
    assert answers == [sid in alive for sid in sids]
