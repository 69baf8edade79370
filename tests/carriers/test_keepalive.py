"""The keep-alive client: connection reuse, body framings, stale connections, timeouts."""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import tornado.web

from server.carriers import keepalive
from server.carriers.http import retry_after_seconds

CONNECTIONS: set[int] = set()
_numbers = itertools.count()


class Echo(tornado.web.RequestHandler):
    async def post(self, mode: str) -> None:
        # Number each stream once (ids of freed objects are reused, so not id()).
        stream: Any = self.request.connection.stream  # type: ignore[attr-defined]
        if not hasattr(stream, "test_number"):
            stream.test_number = next(_numbers)
        CONNECTIONS.add(stream.test_number)
        if mode == "chunked":
            self.write(b"part1-")
            await self.flush()
            self.write(self.request.body)
        elif mode == "close":
            self.set_header("Connection", "close")
            self.write(self.request.body)
        elif mode == "slow":
            await asyncio.sleep(1)
        elif mode == "empty":
            self.set_status(204)
        else:
            self.set_header("X-Seen", self.request.headers.get("X-Test", ""))
            self.write(self.request.body)


@pytest.fixture
def app() -> tornado.web.Application:
    CONNECTIONS.clear()
    return tornado.web.Application([(r"/(\w*)", Echo)])


async def post(client: keepalive.KeepAliveClient, base_url: str, path: str,
               body: bytes = b"hi", **kw: Any) -> keepalive.Response:
    return await client.request("POST", base_url + path, body, {"X-Test": "1"},
                                connect_timeout=2, request_timeout=kw.pop("timeout", 2), **kw)


@pytest.mark.gen_test
async def test_reuses_one_connection(http_server: Any, base_url: str) -> None:
    client = keepalive.KeepAliveClient()
    answers = [await post(client, base_url, "/plain", f"m{i}".encode()) for i in range(5)]
    client.close()
    assert [a.body for a in answers] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert answers[0].header("x-seen") == "1" and answers[0].status == 200
    assert len(CONNECTIONS) == 1


@pytest.mark.gen_test
async def test_chunked_close_and_empty_bodies(http_server: Any, base_url: str) -> None:
    client = keepalive.KeepAliveClient()
    assert (await post(client, base_url, "/chunked", b"x")).body == b"part1-x"
    assert (await post(client, base_url, "/close", b"y")).body == b"y"
    assert (await post(client, base_url, "/plain", b"z")).body == b"z"  # a new connection
    assert (await post(client, base_url, "/empty")).status == 204
    client.close()
    assert len(CONNECTIONS) == 2


@pytest.mark.gen_test
async def test_stale_connection(http_server: Any, base_url: str) -> None:
    client = keepalive.KeepAliveClient()
    await post(client, base_url, "/plain")
    await http_server.close_all_connections()  # the server drops the idle connection
    await asyncio.sleep(0.05)
    # at_eof() lets the pool notice most closes; either way the resend makes it work.
    assert (await post(client, base_url, "/plain", b"again", resend_stale=True)).body == \
        b"again"
    client.close()


@pytest.mark.gen_test
async def test_timeouts_and_refused(http_server: Any, base_url: str) -> None:
    client = keepalive.KeepAliveClient()
    with pytest.raises(keepalive.RequestTimeout):
        await post(client, base_url, "/slow", timeout=0.2)
    with pytest.raises(OSError):
        await post(client, "http://127.0.0.1:9", "/plain")
    with pytest.raises(ValueError):
        await post(client, "ftp://127.0.0.1", "/x")
    client.close()


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"x-ratelimit-reset": "7"}) == 7.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
                               now=1445412470) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
