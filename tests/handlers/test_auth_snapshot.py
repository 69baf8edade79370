"""One Redis call per signed-in request, and `/auth/me` from the snapshot (issue 11).

- `/auth/me` answers while `users` and `churches` are locked against every reader, so it
  read neither (and the same request with the snapshot dropped does wait on the lock);
- a rename (user or church) shows on another web process's `/auth/me` at once;
- a missing snapshot is rebuilt from PostgreSQL, and a rebuild that raced a change never
  stores the old row;
- revocation is still immediate with a snapshot in Redis, the rate limit still answers 429
  with Retry-After;
- a private redis-server's MONITOR sees exactly one command per signed-in request.
"""
from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from typing import Any, Iterator
from uuid import UUID

import psycopg2
import pytest
import tornado.httpclient

from server.app import make_app
from server.auth import snapshot
from tests.conftest import Api
from tests.factories import add_user, register
from tests.handlers.test_auth_cookies import browser_login, cookie_header
from tests.server.ops_support import PrivateRedis, running_webs

API = "/api/v1"


def _snapshot_keys(owner: dict[str, Any]) -> list[str]:
    return [*snapshot.user_keys(owner["church_id"], owner["user_id"])[:1],
            snapshot.church_keys(owner["church_id"])[0]]


@pytest.mark.gen_test(timeout=60)
async def test_me_answers_from_the_snapshot_without_postgres(api, deps, settings):
    owner = await register(api, church_name="Grace", name="Pat")
    status, warm, _ = await api.get(f"{API}/auth/me", token=owner["access_token"])
    assert status == 200
    assert await deps.redis.exists(*_snapshot_keys(owner)) == 2
    lock = psycopg2.connect(settings.database_url)
    try:
        with lock.cursor() as cur:  # every reader of these tables now waits
            cur.execute("LOCK TABLE users, churches IN ACCESS EXCLUSIVE MODE")
        status, body, _ = await api.get(f"{API}/auth/me", token=owner["access_token"])
        assert (status, body) == (200, warm)
        # The control: without the snapshot the same request needs those tables and waits.
        await deps.redis.delete(*_snapshot_keys(owner))
        waiting = asyncio.ensure_future(api.get(f"{API}/auth/me", token=owner["access_token"]))
        done, _ = await asyncio.wait([waiting], timeout=1.5)
        assert not done, "with the snapshot gone, /auth/me should have read PostgreSQL"
    finally:
        lock.rollback()
        lock.close()
    status, body, _ = await asyncio.wait_for(waiting, 30)
    assert (status, body) == (200, warm)  # rebuilt from PostgreSQL and stored again
    assert await deps.redis.exists(*_snapshot_keys(owner)) == 2


@pytest.mark.gen_test
async def test_a_cookie_session_reads_the_same_snapshot(api, deps):
    # A cookie names only church and session: the user's keys come from the session itself.
    owner, jar = await browser_login(api)
    cookie = {"Cookie": cookie_header(jar)}
    status, by_cookie, _ = await api.get(f"{API}/auth/me", token="", headers=cookie)
    assert status == 200 and by_cookie["data"]["user"]["id"] == owner["user_id"]
    assert await deps.redis.exists(*_snapshot_keys(owner)) == 2
    assert (await api.get(f"{API}/auth/me", token=owner["access_token"]))[1] == by_cookie


@pytest.mark.gen_test
async def test_a_rebuild_that_raced_a_change_stores_nothing(api, deps):
    owner = await register(api)
    church_id, user_id = UUID(owner["church_id"]), UUID(owner["user_id"])
    seen = snapshot.Seen("", "", "", "")  # read before the change below: no generation yet
    await snapshot.forget_user(deps.redis, church_id, user_id)  # a change committed meanwhile

    async def old_rows() -> dict[str, Any]:
        return {"user": {"name": "Old name"}, "church": {"name": "Grace"}}

    body = await snapshot.me_body(deps.redis, church_id, user_id, seen, old_rows)
    assert '"Old name"' in body  # this request answers what it read...
    user_key, church_key = _snapshot_keys(owner)
    assert await deps.redis.get(user_key) is None  # ...but does not store it over the change
    assert await deps.redis.get(church_key) is not None  # the unchanged part is stored


@pytest.fixture
def webs(settings: Any) -> Iterator[list[int]]:
    with running_webs(settings, 2) as ports:
        yield ports


def _api(port: int) -> Api:
    return Api(tornado.httpclient.AsyncHTTPClient(), f"http://127.0.0.1:{port}")


@pytest.mark.gen_test(timeout=90)
async def test_a_rename_shows_on_another_process_at_once(webs):
    first, second = _api(webs[0]), _api(webs[1])
    owner = await register(first, church_name="Grace", name="Pat")
    staff = await add_user(first, owner["access_token"], "staff", name="Sam")
    for api, who in ((first, owner), (second, owner), (second, staff)):  # warm every snapshot
        assert (await api.get(f"{API}/auth/me", token=who["access_token"]))[0] == 200
    assert (await first.patch(f"{API}/church", json={"name": "Hope"},
                              token=owner["access_token"]))[0] == 200
    _, me, _ = await second.get(f"{API}/auth/me", token=owner["access_token"])
    assert (me["data"]["user"]["name"], me["data"]["church"]["name"]) == ("Pat", "Hope")
    assert (await first.patch(f"{API}/users/{staff['user_id']}", json={"name": "Samuel"},
                              token=owner["access_token"]))[0] == 200
    _, me, _ = await second.get(f"{API}/auth/me", token=staff["access_token"])
    assert (me["data"]["user"]["name"], me["data"]["church"]["name"]) == ("Samuel", "Hope")


@pytest.mark.gen_test
@pytest.mark.parametrize("action", ["logout", "remove", "demote"])
async def test_revocation_is_immediate_with_a_snapshot_in_redis(api, deps, action):
    owner = await register(api)
    admin = await add_user(api, owner["access_token"], "admin")
    assert (await api.get(f"{API}/auth/me", token=admin["access_token"]))[0] == 200
    if action == "logout":
        assert (await api.post(f"{API}/auth/logout", token=admin["access_token"]))[0] == 204
    elif action == "remove":
        assert (await api.delete(f"{API}/users/{admin['user_id']}",
                                 token=owner["access_token"]))[0] == 204
    else:
        assert (await api.patch(f"{API}/users/{admin['user_id']}", json={"role": "staff"},
                                token=owner["access_token"]))[0] == 200
    status, body, _ = await api.get(f"{API}/auth/me", token=admin["access_token"])
    assert (status, body["error"]["code"]) == (401, "unauthorized")


class TestTightLimit:
    @pytest.fixture
    def app(self, deps):
        # One token per 100 s after a burst of 3: the counts are exact at any speed.
        tight = deps.settings.replace(user_rate_burst=3, user_rate_per_second=0.01)
        return make_app(dataclasses.replace(deps, settings=tight))

    @pytest.mark.gen_test
    async def test_me_is_rate_limited_with_retry_after(self, api):
        owner = await register(api)
        for _ in range(3):
            assert (await api.get(f"{API}/auth/me", token=owner["access_token"]))[0] == 200
        status, body, headers = await api.get(f"{API}/auth/me", token=owner["access_token"])
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert int(headers["Retry-After"]) >= 1


class Monitor:
    """Every command a private redis-server receives from its clients (MONITOR), minus
    those a Lua script runs inside the one call that started it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        assert self.file.readline().strip() == b"+OK"
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.file:
                self.lines.append(raw.decode(errors="replace"))
        except (OSError, ValueError):
            pass  # closed by stop()

    def commands(self) -> list[str]:
        return [line.split('"')[1].upper() for line in list(self.lines)
                if " lua]" not in line and '"' in line]

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def private_redis_web(settings: Any) -> Iterator[tuple[int, int]]:
    private = PrivateRedis()
    private.start()
    try:
        with running_webs(settings.replace(redis_url=private.url)) as ports:
            yield ports[0], private.port
    finally:
        private.cleanup()


async def _until_quiet(monitor: Monitor) -> None:
    count = -1
    for _ in range(100):  # the process's own start-up traffic (subscriptions) settles
        await asyncio.sleep(0.1)
        if len(monitor.lines) == count:
            return
        count = len(monitor.lines)


@pytest.mark.gen_test(timeout=90)
async def test_one_redis_call_per_signed_in_request(private_redis_web):
    port, redis_port = private_redis_web
    api = _api(port)
    owner = await register(api)
    key = (await api.post(f"{API}/api-keys", json={"name": "Sync", "scopes": ["members:read"]},
                          token=owner["access_token"]))[1]["data"]["key"]
    token = owner["access_token"]
    for path, credential in ((f"{API}/auth/me", token), (f"{API}/church", token),
                             (f"{API}/members", key)):
        assert (await api.get(path, token=credential))[0] == 200  # warm: scripts, snapshot
    monitor = Monitor(redis_port)
    try:
        await _until_quiet(monitor)
        monitor.lines.clear()
        for path, credential in ((f"{API}/auth/me", token), (f"{API}/church", token),
                                 (f"{API}/members", key)):
            for _ in range(5):
                status, body, _ = await api.get(path, token=credential)
                assert status == 200, body
        await asyncio.sleep(0.3)  # MONITOR's lines trail the answers slightly
        assert monitor.commands() == ["EVALSHA"] * 15
    finally:
        monitor.stop()
