"""The carriers' HTTP plumbing: one pooled session per event loop, reused connections,
answers read whole, failures without an answer classified, and the rate-limit headers."""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import tornado.web

from server.carriers import http
from server.carriers.base import SendResult

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


@pytest.fixture(autouse=True)
def _close_session(io_loop: Any) -> Any:
    yield
    io_loop.run_sync(http.close)


async def post(base_url: str, path: str, body: bytes = b"hi", **kw: Any) -> Any:
    return await http.call("POST", base_url + path, body=body, headers={"X-Test": "1"},
                           connect_timeout=2, request_timeout=kw.pop("timeout", 2))


@pytest.mark.gen_test
async def test_one_session_per_loop_reuses_one_connection(http_server: Any,
                                                          base_url: str) -> None:
    answers = [await post(base_url, "/plain", f"m{i}".encode()) for i in range(5)]
    assert [a.body for a in answers] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert answers[0].headers["x-seen"] == "1" and answers[0].status == 200
    assert len(CONNECTIONS) == 1
    assert http.session() is http.session()


@pytest.mark.gen_test
async def test_chunked_and_empty_bodies(http_server: Any, base_url: str) -> None:
    assert (await post(base_url, "/chunked", b"x")).body == b"part1-x"
    assert (await post(base_url, "/empty")).status == 204


@pytest.mark.gen_test
async def test_close_closes_the_pool_and_a_new_one_opens_on_use(http_server: Any,
                                                                base_url: str) -> None:
    first = http.session()
    await post(base_url, "/plain")
    await http.close()
    assert first.closed
    assert (await post(base_url, "/plain", b"again")).body == b"again"
    assert http.session() is not first
    assert len(CONNECTIONS) == 2


@pytest.mark.gen_test
async def test_no_answer_is_retryable(http_server: Any, base_url: str) -> None:
    timed_out = await post(base_url, "/slow", timeout=0.2)
    refused = await post("http://127.0.0.1:9", "/plain")
    assert timed_out == SendResult("retryable", error_code="timeout", error="timeout")
    assert isinstance(refused, SendResult)
    assert (refused.outcome, refused.error_code) == ("retryable", "network")


def test_retry_after_headers() -> None:
    assert http.retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert http.retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert http.retry_after_seconds({"x-ratelimit-reset": "7"}) == 7.0
    assert http.retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
                                    now=1445412470) == 10.0
    assert http.retry_after_seconds({"Retry-After": "soon"}) is None
    assert http.retry_after_seconds({}) is None
