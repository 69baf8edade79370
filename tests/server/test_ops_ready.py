"""GET /ready turns 503 while PostgreSQL or Redis is away and 200 again once they are
back, without restarting the web process. Redis: a private redis-server stopped and
started again. PostgreSQL: a TCP proxy in front of the test database that refuses and cuts
connections (the shared server must not be stopped, and initdb refuses to run as root)."""
from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from server.main import close_deps, open_deps
from tests.server.ops_support import PrivateRedis, TcpProxy

POLL_SECONDS = 15


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def pg_proxy(io_loop, database_url):
    proxy = TcpProxy(urllib.parse.urlparse(database_url).port or 5432)
    io_loop.run_sync(proxy.start)
    yield proxy
    io_loop.run_sync(proxy.stop)


@pytest.fixture
def deps(io_loop, settings, clean, private_redis, pg_proxy):
    parts = urllib.parse.urlparse(settings.database_url)
    proxied = parts._replace(netloc=f"{parts.username}@127.0.0.1:{pg_proxy.port}").geturl()
    value = io_loop.run_sync(lambda: open_deps(settings.replace(
        redis_url=private_redis.url, database_url=proxied)))
    yield value
    io_loop.run_sync(lambda: close_deps(value))


async def _ready(api) -> tuple[int, dict]:
    status, body, _ = await api.get("/ready")
    return status, body


async def _until_ready(api) -> tuple[int, dict]:
    for _ in range(POLL_SECONDS * 10):
        status, body = await _ready(api)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    return status, body


@pytest.mark.gen_test(timeout=60)
async def test_ready_follows_redis_going_away_and_coming_back(api, private_redis):
    assert (await _ready(api))[0] == 200
    private_redis.stop()
    status, body = await _ready(api)
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["redis"].startswith("error")
    private_redis.start()
    assert await _until_ready(api) == (200, {"status": "ready", "checks": {
        "postgresql": "ok", "redis": "ok"}})


@pytest.mark.gen_test(timeout=60)
async def test_ready_follows_postgres_going_away_and_coming_back(api, pg_proxy):
    assert (await _ready(api))[0] == 200
    await pg_proxy.stop()
    status, body = await _ready(api)
    assert status == 503
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgresql"].startswith("error")
    await pg_proxy.start()
    status, body = await _until_ready(api)
    assert status == 200 and body["checks"]["postgresql"] == "ok"
