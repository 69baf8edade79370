"""The live stream across real processes: fan-out between two `ywm web` processes, and a
Redis restart mid-stream on a private redis-server (never the shared one)."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Iterator

import pytest
import tornado.httpclient

from server.platform.redis import connect_async
from tests.carriers.webhook_kit import church_with_number, telnyx_headers, telnyx_inbound
from tests.factories import create_church
from tests.server.ops_support import (PrivateRedis, answers, free_port, running_webs,
                                      start_web, stop_web, wait_until, web_env)
from tests.stream_client import close_sockets, commit_events, connect, read_frame

__all__ = ["close_sockets"]


@pytest.fixture
def webs(settings: Any) -> Iterator[list[int]]:
    """Two `ywm web` processes on the test's database and Redis."""
    with running_webs(settings, 2) as ports:
        yield ports


async def _socket(port: int, token: str, last_event_id: str | None = None) -> Any:
    url = f"ws://127.0.0.1:{port}/api/v1/stream"
    if last_event_id is not None:
        url += f"?last_event_id={last_event_id}"
    request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {token}"})
    return await connect(request)


@pytest.mark.gen_test(timeout=60)
async def test_an_event_reaches_sockets_on_both_processes(webs: list[int], deps: Any) -> None:
    owner = await create_church(deps)
    other = await create_church(deps, church_name="Other")
    first, second = [await _socket(port, owner["access_token"]) for port in webs]
    bystander = await _socket(webs[1], other["access_token"])
    for ws in (first, second, bystander):
        assert (await read_frame(ws, 15))["type"] == "hello"
    # Committed and published by a third process (this test), as a webhook handler would.
    events = await commit_events(deps.db, deps.redis, owner["church_id"], 3)
    expected = [e["id"] for e in events]
    for ws in (first, second):
        assert [(await read_frame(ws, 15))["id"] for _ in expected] == expected
    # Church isolation holds across processes too: the bystander's first frame is its own
    # church's event, told apart from the owner's (which also carry ids from "1") by its
    # type and its whole content; a leaked owner event would have arrived first.
    own = await commit_events(deps.db, deps.redis, other["church_id"], 1,
                              type_="member.opted_in")
    frame = await read_frame(bystander, 15)
    assert frame == {k: v for k, v in own[0].items() if k != "church_id"}
    assert frame["type"] == "member.opted_in" != events[0]["type"]


@pytest.mark.gen_test(timeout=60)
async def test_a_webhook_on_either_process_reaches_sockets_on_both(webs: list[int],
                                                                   deps: Any) -> None:
    setup = await church_with_number(deps, "telnyx")
    token = setup["owner"]["access_token"]
    sockets = [await _socket(port, token) for port in webs]
    for ws in sockets:
        assert (await read_frame(ws, 15))["type"] == "hello"
    http = tornado.httpclient.AsyncHTTPClient()
    for port, text in zip(webs, ("via the first process", "via the second process")):
        body = telnyx_inbound(text)
        response = await http.fetch(f"http://127.0.0.1:{port}/webhooks/telnyx", method="POST",
                                    body=body, headers=telnyx_headers(body))
        assert response.code == 200
    for ws in sockets:
        frames = [await read_frame(ws, 15) for _ in range(2)]
        assert [f["type"] for f in frames] == ["message.received"] * 2
        assert [f["data"]["message"]["body"] for f in frames] == [
            "via the first process", "via the second process"]
        assert [f["id"] for f in frames] == ["1", "2"]


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.gen_test(timeout=120)
async def test_redis_restart_mid_stream_loses_no_event(settings: Any, deps: Any,
                                                       private_redis: PrivateRedis) -> None:
    port = free_port()
    process = start_web(web_env(settings, REDIS_URL=private_redis.url), port)
    redis = connect_async(private_redis.url)
    try:
        assert wait_until(lambda: answers(port) or process.poll() is not None, 30)
        local = dataclasses.replace(deps, redis=redis)
        owner = await create_church(local)
        church = owner["church_id"]
        ws = await _socket(port, owner["access_token"])
        assert (await read_frame(ws, 15))["type"] == "hello"
        before = await commit_events(deps.db, redis, church, 3)
        assert [(await read_frame(ws, 15))["id"] for _ in before] == ["1", "2", "3"]

        private_redis.stop()
        during = await commit_events(deps.db, redis, church, 4)  # publishes are lost
        private_redis.start()  # same port, empty: sessions and subscriptions are gone
        assert wait_until(lambda: answers(port), 30)
        after = await _publish_until_connected(deps, redis, church)

        all_ids = [e["id"] for e in before + during + after]
        seen = ["1", "2", "3"]
        while seen[-1] != all_ids[-1]:
            frame = await read_frame(ws, 30)
            if frame is None:  # closed so that we resume: allowed, but nothing is lost
                break
            seen.append(frame["id"])
        if seen[-1] != all_ids[-1]:
            assert ws.close_code in (1001, 1011)
            fresh = await create_church_session(local, owner)
            ws = await _socket(port, fresh, last_event_id=seen[-1])
            assert (await read_frame(ws, 15))["type"] == "hello"
            while seen[-1] != all_ids[-1]:
                seen.append((await read_frame(ws, 30))["id"])
        assert seen == all_ids  # every event, in order, none twice
    finally:
        await redis.aclose()
        stop_web(process)


async def _publish_until_connected(deps: Any, redis: Any, church: Any) -> list[Any]:
    """Commit one more event after the restart, publishing once Redis answers again."""
    for _ in range(100):
        try:
            await redis.ping()
            break
        except Exception:  # noqa: BLE001 - still reconnecting
            await asyncio.sleep(0.1)
    return await commit_events(deps.db, redis, church, 1)


async def create_church_session(deps: Any, owner: dict[str, Any]) -> str:
    """A new access token for the owner (the restart emptied Redis and its sessions)."""
    from uuid import UUID

    from server.auth.sessions import create_session
    pair = await create_session(deps.redis, deps.settings, UUID(str(owner["church_id"])),
                                UUID(str(owner["user_id"])), owner["role"])
    return pair.access_token


@pytest.mark.gen_test(timeout=120)
async def test_long_redis_outage_closes_sockets_so_clients_resume(
        settings: Any, deps: Any, private_redis: PrivateRedis) -> None:
    port = free_port()
    process = start_web(web_env(settings, REDIS_URL=private_redis.url), port)
    redis = connect_async(private_redis.url)
    try:
        assert wait_until(lambda: answers(port) or process.poll() is not None, 30)
        local = dataclasses.replace(deps, redis=redis)
        owner = await create_church(local)
        church = owner["church_id"]
        ws = await _socket(port, owner["access_token"])
        assert (await read_frame(ws, 15))["type"] == "hello"
        private_redis.stop()
        during = await commit_events(deps.db, redis, church, 2)
        # Not silently quiet: past the grace period the server closes the socket.
        assert await read_frame(ws, 30) is None
        assert ws.close_code == 1011
        private_redis.start()
        fresh = await create_church_session(local, owner)
        ws = await _socket(port, fresh, last_event_id="0")
        assert (await read_frame(ws, 15))["type"] == "hello"
        replayed = [(await read_frame(ws, 15))["id"] for _ in during]
        assert replayed == [e["id"] for e in during]
        after = await commit_events(deps.db, redis, church, 1)
        assert (await read_frame(ws, 15))["id"] == after[0]["id"]
    finally:
        await redis.aclose()
        stop_web(process)
