"""Sessions end everywhere at once (issue 10, items 5 and 6).

Logout, removal, a role change and a password change close the user's open streams on
every web process with 4001 (two real `ywm web` processes here); a stream ticket of an
ended session is refused; refreshes keep the per-user session index alive with the
session; reusing a rotated refresh token ends the whole session, streams included.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
import tornado.httpclient
import tornado.websocket

from server.auth.sessions import decode_access_token
from server.platform import redis as keys
from server.realtime.client import CLOSE_SESSION_ENDED
from tests.conftest import Api
from tests.factories import add_user, create_church
from tests.server.ops_support import running_webs
from tests.stream_client import (close_sockets, commit_events, connect, read_frame,
                                 stream_url, ticket_for)

__all__ = ["close_sockets"]

API = "/api/v1"
CLOSE_WAIT = 10.0  # a bound on the wait, not a timing claim: the close comes in well under 1 s


@pytest.fixture
def webs(settings: Any) -> Iterator[list[int]]:
    """Two `ywm web` processes on the test's database and Redis."""
    with running_webs(settings, 2) as ports:
        yield ports


def _api(port: int) -> Api:
    return Api(tornado.httpclient.AsyncHTTPClient(), f"http://127.0.0.1:{port}")


async def _bearer_socket(port: int, token: str) -> Any:
    return await connect(tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}{API}/stream", headers={"Authorization": f"Bearer {token}"}))


async def _ticket_socket(port: int, token: str) -> Any:
    ticket = await ticket_for(_api(port), token)
    return await connect(stream_url(f"http://127.0.0.1:{port}", ticket=ticket))


async def _assert_closed_for_session(ws: Any) -> None:
    assert await asyncio.wait_for(ws.read_message(), CLOSE_WAIT) is None
    assert ws.close_code == CLOSE_SESSION_ENDED


async def _assert_still_live(ws: Any, deps: Any, church_id: Any) -> None:
    """The socket is open and live: an event committed now reaches it."""
    [event] = await commit_events(deps.db, deps.redis, church_id, 1)
    assert (await read_frame(ws, 15))["id"] == event["id"]


async def _end_by(action: str, api: Any, owner: dict[str, Any], user: dict[str, Any]) -> None:
    path = f"{API}/users/{user['user_id']}"
    if action == "logout":
        status, _, _ = await api.post(f"{API}/auth/logout", token=user["access_token"])
        assert status == 204
    elif action == "removal":
        status, _, _ = await api.delete(path, token=owner["access_token"])
        assert status == 204
    else:
        change = {"role": "admin"} if action == "role" else {"password": "a brand new secret"}
        status, body, _ = await api.patch(path, json=change, token=owner["access_token"])
        assert status == 200, body


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("action", ["logout", "removal", "role", "password"])
async def test_ending_a_session_closes_its_streams_on_every_process(
        webs: list[int], deps: Any, action: str) -> None:
    owner = await create_church(deps)
    api = _api(webs[0])
    staff = await add_user(api, owner["access_token"], "staff")
    # One socket by ticket on the first process, one by bearer token on the second.
    targets = [await _ticket_socket(webs[0], staff["access_token"]),
               await _bearer_socket(webs[1], staff["access_token"])]
    # Another user of the same church on the process that did not serve the action.
    bystander = await _bearer_socket(webs[1], owner["access_token"])
    for ws in (*targets, bystander):
        assert (await read_frame(ws, 15))["type"] == "hello"
    await _end_by(action, api, owner, staff)
    for ws in targets:
        await _assert_closed_for_session(ws)
    await _assert_still_live(bystander, deps, owner["church_id"])
    status, _, _ = await api.get(f"{API}/auth/me", token=staff["access_token"])
    assert status == 401


@pytest.mark.gen_test(timeout=30)
async def test_a_ticket_of_an_ended_session_is_refused(api: Any, base_url: str,
                                                       deps: Any) -> None:
    owner = await create_church(deps)
    ticket = await ticket_for(api, owner["access_token"])
    status, _, _ = await api.post(f"{API}/auth/logout", token=owner["access_token"])
    assert status == 204
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect(stream_url(base_url, ticket=ticket))
    assert refused.value.code == 401


async def _refresh(api: Any, refresh_token: str) -> tuple[int, Any]:
    status, body, _ = await api.post(f"{API}/auth/refresh", token="",
                                     json={"refresh_token": refresh_token})
    return status, body


async def _wait_gone(redis: Any, key: str) -> None:
    for _ in range(200):  # bounded: 1 ms of TTL left, 10 s at most
        if not await redis.exists(key):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} did not expire")


@pytest.mark.gen_test(timeout=60)
async def test_refresh_keeps_the_session_index_alive_so_a_demotion_finds_it(
        api: Any, deps: Any) -> None:
    owner = await create_church(deps)
    staff = await add_user(api, owner["access_token"], "staff")
    sid = decode_access_token(deps.settings, staff["access_token"])["sid"]
    index = keys.user_sessions_key(staff["church_id"], staff["user_id"])
    # A shortened index TTL is slid back to the session's by a refresh ...
    await deps.redis.pexpire(index, 60_000)
    status, body = await _refresh(api, staff["refresh_token"])
    assert status == 200
    assert await deps.redis.ttl(index) > 60
    # ... and an index that expired (only refreshes kept the session alive) comes back.
    await deps.redis.pexpire(index, 1)
    await _wait_gone(deps.redis, index)
    status, body = await _refresh(api, body["data"]["refresh_token"])
    assert status == 200
    assert await deps.redis.smembers(index) == {sid}
    assert await deps.redis.ttl(index) > 60
    tokens = body["data"]
    status, _, _ = await api.patch(f"{API}/users/{staff['user_id']}", json={"role": "admin"},
                                   token=owner["access_token"])
    assert status == 200
    status, _, _ = await api.get(f"{API}/auth/me", token=tokens["access_token"])
    assert status == 401
    assert (await _refresh(api, tokens["refresh_token"]))[0] == 401


@pytest.mark.gen_test(timeout=90)
async def test_reusing_a_rotated_refresh_token_ends_the_whole_session(
        webs: list[int], deps: Any) -> None:
    owner = await create_church(deps)
    api = _api(webs[0])
    staff = await add_user(api, owner["access_token"], "staff")
    streams = [await _bearer_socket(port, staff["access_token"]) for port in webs]
    bystander = await _bearer_socket(webs[1], owner["access_token"])
    for ws in (*streams, bystander):
        assert (await read_frame(ws, 15))["type"] == "hello"
    stolen = staff["refresh_token"]
    status, body = await _refresh(api, stolen)  # the owner of the session refreshes
    assert status == 200
    fresh = body["data"]
    # The thief presents the copy the owner already rotated away: refused ...
    status, body = await _refresh(_api(webs[1]), stolen)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # ... and the whole session ended: the owner's new pair and open streams too.
    assert (await _refresh(api, fresh["refresh_token"]))[0] == 401
    status, _, _ = await api.get(f"{API}/auth/me", token=fresh["access_token"])
    assert status == 401
    for ws in streams:
        await _assert_closed_for_session(ws)
    await _assert_still_live(bystander, deps, owner["church_id"])


@pytest.mark.gen_test(timeout=30)
async def test_a_wrong_refresh_secret_is_refused_without_ending_the_session(
        api: Any, deps: Any) -> None:
    owner = await create_church(deps)
    church, sid, _ = owner["refresh_token"].split(".", 2)
    assert (await _refresh(api, f"{church}.{sid}.not-the-secret"))[0] == 401
    status, _ = await _refresh(api, owner["refresh_token"])
    assert status == 200
