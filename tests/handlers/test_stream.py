"""The live stream: auth before upgrade, hello, replay + live without gap or duplicate."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from db.queries import events as q
from server.realtime import client as socket_state
from server.realtime import hub as realtime
from server.events.log import publish_events
from server.platform.redis import events_channel, stream_ticket_key
from tests.factories import register
from tests.stream_client import (assert_silent, close_sockets, commit_events, connect,
                                 open_stream, read_frame, read_frames, stream_url,
                                 ticket_for)

__all__ = ["close_sockets"]


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for f in frames]


@pytest.mark.gen_test(timeout=30)
async def test_hello_then_live_events_and_ping(api: Any, base_url: str, deps: Any) -> None:
    owner = await register(api)
    await commit_events(deps.db, deps.redis, owner["church_id"], 2)
    ws = await open_stream(api, base_url, owner["access_token"])
    assert await read_frame(ws) == {"type": "hello", "last_event_id": "2"}
    events = await commit_events(deps.db, deps.redis, owner["church_id"], 3)
    frames = await read_frames(ws, 3)
    assert ids(frames) == ["3", "4", "5"]
    assert frames[0] == {k: v for k, v in events[0].items() if k != "church_id"}
    ws.write_message('{"type": "ping"}')
    assert await read_frame(ws) == {"type": "pong"}
    ws.write_message("not json")
    frame = await read_frame(ws)
    assert frame["type"] == "error" and frame["code"] == "invalid_frame"
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_resume_replays_exactly_the_missed_events(api: Any, base_url: str,
                                                        deps: Any) -> None:
    owner = await register(api)
    church = owner["church_id"]
    ws = await open_stream(api, base_url, owner["access_token"])
    assert (await read_frame(ws))["type"] == "hello"
    await commit_events(deps.db, deps.redis, church, 2)
    last = (await read_frames(ws, 2))[-1]["id"]
    ws.close()
    missed = await commit_events(deps.db, deps.redis, church, 7)
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id=last)
    assert await read_frame(ws) == {"type": "hello", "last_event_id": last}
    frames = await read_frames(ws, 7)
    assert ids(frames) == [e["id"] for e in missed]
    live = await commit_events(deps.db, deps.redis, church, 1)
    assert ids([await read_frame(ws)]) == [live[0]["id"]]  # next is live, none twice
    await assert_silent(ws)
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_resume_with_pruned_id_gets_resync_required(api: Any, base_url: str,
                                                          deps: Any) -> None:
    owner = await register(api)
    church = owner["church_id"]
    await commit_events(deps.db, deps.redis, church, 5)
    async with deps.db.transaction() as conn:  # retain only the last 2 (ids 4, 5)
        await q.prune_church(conn, church, cutoff="2999-01-01T00:00:00Z", keep=2)
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id="1")
    assert await read_frame(ws) == {"type": "hello", "last_event_id": "5"}
    assert await read_frame(ws) == {"type": "resync_required"}
    live = await commit_events(deps.db, deps.redis, church, 1)
    assert ids([await read_frame(ws)]) == [live[0]["id"]]
    ws.close()
    # An id that is still retained replays normally.
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id="3")
    assert (await read_frame(ws))["type"] == "hello"
    assert ids(await read_frames(ws, 3)) == ["4", "5", "6"]
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_future_id_gets_resync_required(api: Any, base_url: str, deps: Any) -> None:
    owner = await register(api)
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id="99")
    assert await read_frame(ws) == {"type": "hello", "last_event_id": "0"}
    assert await read_frame(ws) == {"type": "resync_required"}
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_lost_or_reordered_publish_is_filled_from_the_log(api: Any, base_url: str,
                                                                deps: Any) -> None:
    owner = await register(api)
    church = owner["church_id"]
    ws = await open_stream(api, base_url, owner["access_token"])
    await read_frame(ws)
    first = await commit_events(deps.db, deps.redis, church, 2, publish=False)
    second = await commit_events(deps.db, deps.redis, church, 1)
    await publish_events(deps.redis, first)  # late: already filled, must not repeat
    assert ids(await read_frames(ws, 3)) == ["1", "2", "3"]
    assert second[0]["id"] == "3"
    await assert_silent(ws)
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_churches_are_isolated(api: Any, base_url: str, deps: Any) -> None:
    a = await register(api, church_name="A")
    b = await register(api, church_name="B")
    ws_a = await open_stream(api, base_url, a["access_token"])
    ws_b = await open_stream(api, base_url, b["access_token"])
    await read_frame(ws_a)
    await read_frame(ws_b)
    await commit_events(deps.db, deps.redis, a["church_id"], 2)
    assert ids(await read_frames(ws_a, 2)) == ["1", "2"]
    await assert_silent(ws_b)
    # B's own first event is id 1 of B's sequence and reaches only B.
    await commit_events(deps.db, deps.redis, b["church_id"], 1)
    assert (await read_frame(ws_b))["id"] == "1"
    await assert_silent(ws_a)
    # Resuming B from 0 replays nothing of A's.
    ws_b.close()
    ws_b = await open_stream(api, base_url, b["access_token"], last_event_id="0")
    await read_frame(ws_b)
    assert ids(await read_frames(ws_b, 1)) == ["1"]
    await assert_silent(ws_b)
    ws_a.close()
    ws_b.close()


async def _refused(url: str, headers: dict[str, str] | None = None) -> int:
    request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
    with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
        await tornado.websocket.websocket_connect(request)
    return caught.value.code


@pytest.mark.gen_test(timeout=30)
async def test_bad_credentials_are_refused_before_upgrade(api: Any, base_url: str,
                                                          deps: Any) -> None:
    owner = await register(api)
    assert await _refused(stream_url(base_url)) == 401
    forged = f"{owner['church_id']}.not-a-real-ticket"
    assert await _refused(stream_url(base_url, ticket=forged)) == 401
    assert await _refused(stream_url(base_url, ticket="garbage")) == 401
    ticket = await ticket_for(api, owner["access_token"])
    ws = await connect(stream_url(base_url, ticket=ticket))
    ws.close()
    assert await _refused(stream_url(base_url, ticket=ticket)) == 401  # single use
    # A ticket lives 30 s (API.md §7) in Redis. Its expiry is real Redis expiry, brought
    # forward with PEXPIRE; the session stays alive, so only the expiry can refuse it.
    expired = await ticket_for(api, owner["access_token"])
    ticket_key = stream_ticket_key(owner["church_id"], expired)
    assert 25_000 < await deps.redis.pttl(ticket_key) <= 30_000
    assert await deps.redis.pexpire(ticket_key, 1)
    for _ in range(200):
        if not await deps.redis.exists(ticket_key):
            break
        await asyncio.sleep(0.01)
    assert not await deps.redis.exists(ticket_key)
    assert await _refused(stream_url(base_url, ticket=expired)) == 401
    fresh = await connect(stream_url(base_url, ticket=await ticket_for(api,
                                                                      owner["access_token"])))
    assert (await read_frame(fresh))["type"] == "hello"
    fresh.close()
    assert await _refused(stream_url(base_url), {"Authorization": "Bearer nope"}) == 401


@pytest.mark.gen_test(timeout=30)
async def test_bearer_header_opens_the_stream(api: Any, base_url: str, deps: Any) -> None:
    owner = await register(api)
    request = tornado.httpclient.HTTPRequest(
        stream_url(base_url), headers={"Authorization": f"Bearer {owner['access_token']}"})
    ws = await connect(request)
    assert (await read_frame(ws))["type"] == "hello"
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_one_subscription_per_process_per_church(api: Any, base_url: str,
                                                       deps: Any) -> None:
    owner = await register(api)
    channel = events_channel(owner["church_id"])
    sockets = [await open_stream(api, base_url, owner["access_token"]) for _ in range(3)]
    for ws in sockets:
        await read_frame(ws)
    assert dict(await deps.redis.pubsub_numsub(channel))[channel] == 1
    await commit_events(deps.db, deps.redis, owner["church_id"], 1)
    for ws in sockets:
        assert (await read_frame(ws))["id"] == "1"
    for ws in sockets:
        ws.close()
    hub = realtime.hub_for(deps)
    for _ in range(100):  # the server sees the closes asynchronously
        if not hub.subscribed_churches():
            break
        await asyncio.sleep(0.05)
    assert hub.subscribed_churches() == []
    for _ in range(100):
        if dict(await deps.redis.pubsub_numsub(channel))[channel] == 0:
            break
        await asyncio.sleep(0.05)
    assert dict(await deps.redis.pubsub_numsub(channel))[channel] == 0


@pytest.mark.gen_test(timeout=30)
async def test_binary_frame_closes_with_policy_violation(api: Any, base_url: str,
                                                         deps: Any) -> None:
    owner = await register(api)
    ws = await open_stream(api, base_url, owner["access_token"])
    await read_frame(ws)
    ws.write_message(b"\x00\x01", binary=True)
    assert await read_frame(ws) is None
    assert ws.close_code == 1008


@pytest.mark.gen_test(timeout=60)
async def test_slow_consumer_is_closed_and_can_resume(api: Any, base_url: str, deps: Any,
                                                      monkeypatch: Any) -> None:
    monkeypatch.setattr(socket_state, "MAX_PENDING_FRAMES", 20)
    owner = await register(api)
    church = owner["church_id"]
    ws = await open_stream(api, base_url, owner["access_token"])
    await read_frame(ws)
    # Large events, never read: the socket's writes back up past the bound.
    async with deps.db.transaction() as conn:
        from server.events.log import append_event
        events = [await append_event(conn, church, "conversation.updated",
                                     {"blob": "x" * 200_000}) for _ in range(60)]
    await publish_events(deps.redis, events)
    hub = realtime.hub_for(deps)
    for _ in range(200):
        if not hub.clients():
            break
        await asyncio.sleep(0.05)
    assert hub.clients() == []  # closed by the server as a slow consumer
    frames = []
    while (frame := await read_frame(ws, 10)) is not None:
        frames.append(frame)
    assert (ws.close_code, ws.close_reason) == (1008, "slow consumer"), len(frames)
    last = frames[-1]["id"]
    monkeypatch.setattr(socket_state, "MAX_PENDING_FRAMES", 1000)
    ws = await open_stream(api, base_url, owner["access_token"], last_event_id=last)
    await read_frame(ws)
    rest = await read_frames(ws, 60 - int(last), timeout=10)
    assert ids(rest) == [str(n) for n in range(int(last) + 1, 61)]
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_session_cookie_opens_the_stream(api: Any, base_url: str, deps: Any) -> None:
    from tests.handlers.test_auth_cookies import browser_login, cookie_header
    owner, jar = await browser_login(api)
    host = base_url.split("://", 1)[1]
    request = tornado.httpclient.HTTPRequest(stream_url(base_url), headers={
        "Cookie": cookie_header(jar), "Origin": f"http://{host}"})
    ws = await connect(request)
    assert (await read_frame(ws))["type"] == "hello"
    await commit_events(deps.db, deps.redis, owner["church_id"], 1)
    assert (await read_frame(ws))["id"] == "1"
    # A page on another site cannot ride the cookie (cross-site WebSocket hijacking).
    foreign = tornado.httpclient.HTTPRequest(stream_url(base_url), headers={
        "Cookie": cookie_header(jar), "Origin": "https://evil.example"})
    assert await _refused_request(foreign) == 403
    # Logged out: the cookie no longer opens anything.
    status, _, _ = await api.post("/api/v1/auth/logout", token="", headers={
        "Cookie": cookie_header(jar), "X-CSRF-Token": jar["ywm_csrf"]})
    assert status == 204
    assert await _refused(stream_url(base_url), {"Cookie": cookie_header(jar)}) == 401


async def _refused_request(request: Any) -> int:
    with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
        await tornado.websocket.websocket_connect(request)
    return caught.value.code


@pytest.mark.gen_test(timeout=30)
async def test_repeated_bad_frames_are_abuse(api: Any, base_url: str, deps: Any) -> None:
    from handlers.stream import MAX_BAD_FRAMES
    owner = await register(api)
    ws = await open_stream(api, base_url, owner["access_token"])
    await read_frame(ws)
    for _ in range(MAX_BAD_FRAMES + 1):
        ws.write_message('{"type": "subscribe"}')
    errors = 0
    while (frame := await read_frame(ws)) is not None:
        assert frame["type"] == "error"
        errors += 1
    assert errors == MAX_BAD_FRAMES and ws.close_code == 1008


@pytest.mark.gen_test(timeout=30)
async def test_unexpected_failure_is_logged_and_closes_1011(api: Any, base_url: str, deps: Any,
                                                            monkeypatch: Any,
                                                            caplog: Any) -> None:
    owner = await register(api)

    def broken(self: Any, after: Any) -> bool:
        raise RuntimeError("boom")
    monkeypatch.setattr(socket_state.StreamClient, "catch_up_from_hub", broken)
    ws = await open_stream(api, base_url, owner["access_token"])
    assert await read_frame(ws) is None
    assert ws.close_code == 1011
    assert any(r.name == "ywm.stream" and r.levelname == "ERROR" for r in caplog.records)
    assert realtime.hub_for(deps).clients() == []


@pytest.mark.gen_test(timeout=30)
async def test_bad_last_event_id_is_422_before_upgrade(api: Any, base_url: str,
                                                       deps: Any) -> None:
    owner = await register(api)
    ticket = await ticket_for(api, owner["access_token"])
    assert await _refused(stream_url(base_url, ticket=ticket, last_event_id="abc")) == 422
