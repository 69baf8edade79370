"""Redis behind Sentinel: a private master, replica and three Sentinels (Debian's
`redis-sentinel`, server/devtools/redis_group.py), a real `ywm web` process, a live stream
socket, then SENTINEL FAILOVER. Never touches the machine's shared Redis."""
from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import tempfile
from typing import Any, Iterator

import pytest
import redis
import tornado.httpclient
from huey.storage import RedisExpireStorage

from server.devtools.redis_group import RedisGroup
from server.platform.redis import client_for, queue_pool_for, sync_client_for
from server.platform.settings import Settings, SettingsError
from tests.factories import create_church
from tests.server.ops_support import answers, free_port, start_web, stop_web, wait_until, web_env
from tests.stream_client import close_sockets, commit_events, connect, read_frame

__all__ = ["close_sockets"]


@pytest.fixture(scope="module")
def group() -> Iterator[RedisGroup]:
    value = RedisGroup(pathlib.Path(tempfile.mkdtemp(prefix="ywm-sentinel-")),
                       tuple(free_port() for _ in range(5)))
    try:
        value.start()
        yield value
    finally:
        value.stop(remove=True)


def _behind(settings: Settings, group: RedisGroup) -> Settings:
    env = group.env()
    return settings.replace(redis_url=env["REDIS_URL"], redis_service=group.service,
                            redis_sentinels=tuple(group.sentinels().split(",")))


def test_sentinel_settings_are_checked() -> None:
    ok = Settings.from_env({"YWM_ENV": "test", "YWM_REDIS_SENTINELS": "a:1, b:26379",
                            "YWM_REDIS_SERVICE": "ywm"})
    assert ok.redis_sentinels == ("a:1", "b:26379") and ok.redis_service == "ywm"
    with pytest.raises(SettingsError, match="YWM_REDIS_SERVICE"):
        Settings.from_env({"YWM_ENV": "test", "YWM_REDIS_SENTINELS": "a:1"})
    with pytest.raises(SettingsError, match="YWM_REDIS_SENTINELS"):
        Settings.from_env({"YWM_ENV": "test", "YWM_REDIS_SENTINELS": "a:1,nohost",
                           "YWM_REDIS_SERVICE": "ywm"})


def test_clients_use_the_url_db_behind_sentinel(settings: Settings, group: RedisGroup
                                                ) -> None:
    behind = _behind(settings, group).replace(redis_url="redis://ignored:1/5")
    client = sync_client_for(behind)
    try:
        client.set("ywm:probe", "5")
        host, port = group.master()
        with redis.Redis(host=host, port=port, db=5) as direct:
            assert direct.get("ywm:probe") == b"5"
            direct.flushdb()
    finally:
        client.close()


async def _socket(port: int, token: str, last_event_id: str | None = None) -> Any:
    url = f"ws://127.0.0.1:{port}/api/v1/stream"
    if last_event_id is not None:
        url += f"?last_event_id={last_event_id}"
    return await connect(tornado.httpclient.HTTPRequest(
        url, headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.gen_test(timeout=180)
async def test_failover_the_app_follows_sentinel_and_the_stream_misses_nothing(
        settings: Settings, deps: Any, group: RedisGroup) -> None:
    behind = _behind(settings, group)
    port = free_port()
    process = start_web(web_env(settings, **group.env()), port)
    redis_client = client_for(behind)
    queue = RedisExpireStorage(f"sentinel-test-{port}", connection_pool=queue_pool_for(behind))
    try:
        assert wait_until(lambda: answers(port) or process.poll() is not None, 30)
        local = dataclasses.replace(deps, redis=redis_client)
        owner = await create_church(local)
        church, token = owner["church_id"], owner["access_token"]
        ws = await _socket(port, token)
        assert (await read_frame(ws, 15))["type"] == "hello"
        before = await commit_events(deps.db, redis_client, church, 3)
        assert [(await read_frame(ws, 15))["id"] for _ in before] == ["1", "2", "3"]
        queue.enqueue(b'{"before": true}')

        old = group.master()
        loop = asyncio.get_running_loop()
        switch = loop.run_in_executor(None, group.failover)
        during: list[dict[str, Any]] = []
        while not switch.done():  # events keep coming while the master changes
            during += await commit_events(deps.db, redis_client, church, 1)
            await asyncio.sleep(0.2)
        new = await switch
        assert new != old
        seen = ["1", "2", "3"]

        async def read_until(last: str) -> None:
            nonlocal ws
            while seen[-1] != last:
                frame = await read_frame(ws, 30)
                if frame is None:  # closed so that we resume (1011): allowed, none lost
                    assert ws.close_code in (1001, 1011)
                    ws = await _socket(port, token, last_event_id=seen[-1])
                    assert (await read_frame(ws, 15))["type"] == "hello"
                    continue
                seen.append(frame["id"])
        # Before anything else is published: what went to the old master while the
        # subscription had already moved arrives anyway (no later event to reveal a gap).
        await read_until(during[-1]["id"])
        after = await commit_events(deps.db, redis_client, church, 3)
        queue.enqueue(b'{"after": true}')
        await read_until(after[-1]["id"])
        assert seen == [e["id"] for e in before + during + after]  # in order, none twice

        # The web process writes to the new master (a ticket is a Redis write; the
        # demoted master would refuse it), and its session survived the switch.
        http = tornado.httpclient.AsyncHTTPClient()
        response = await http.fetch(f"http://127.0.0.1:{port}/api/v1/stream/ticket",
                                    method="POST", body=b"", raise_error=False,
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.code == 200, response.body
        # The queue followed too: both tasks are on the new master.
        with redis.Redis(host=new[0], port=new[1], db=group.db) as direct:
            assert direct.lrange(queue.queue_key, 0, -1) == [b'{"after": true}',
                                                             b'{"before": true}']
            direct.delete(queue.queue_key)
    finally:
        queue.pool.disconnect()
        await redis_client.aclose()
        stop_web(process)
