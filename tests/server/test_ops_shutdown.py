"""Real `ywm web` processes: SIGTERM lets a slow in-flight request finish with 200 while
new connections are refused, and closes live streams with 1001; two processes on one port
(SO_REUSEPORT) of one box are summed by /metrics."""
from __future__ import annotations

import asyncio
import concurrent.futures
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
import tornado.httpclient
import tornado.websocket
import ujson

from tests.server.ops_support import (PrivateRedis, answers, free_port, get, refuses,
                                      start_web, wait_until, web_env)

PAUSE_MS = 3000  # how long the in-flight request is held; SIGTERM comes well before


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.cleanup()


def _stop(proc) -> bytes:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=30)[0]


def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(settings, clean,
                                                                private_redis, tmp_path):
    port = free_port()
    proc = start_web(web_env(settings, tmp_path, REDIS_URL=private_redis.url), port)
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not start"
        token = _register(port)
        # Hold every Redis command for a while: GET /auth/me (its session lives in Redis)
        # is then a slow request that is in flight when SIGTERM arrives.
        with redis.Redis(port=private_redis.port) as client:
            client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        result: dict = {}
        request = threading.Thread(target=lambda: result.update(zip(
            ("status", "body"),
            get(port, "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}))))
        request.start()
        time.sleep(0.5)  # let the request reach the handler
        proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: refuses(port), timeout=5), "still accepting after SIGTERM"
        assert request.is_alive(), "the request did not wait for Redis"
        request.join(timeout=30)
        assert result.get("status") == 200
        assert ujson.loads(result["body"])["data"]["user"]["email"] == "drain@example.org"
        assert proc.wait(timeout=30) == 0
    finally:
        output = _stop(proc)
    assert b"Traceback" not in output, output.decode()


def _series(text: str, series: str) -> float | None:
    found = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(found[1]) if found else None


def test_metrics_sum_two_processes_on_one_port(settings, private_redis, tmp_path):
    """One box = one metrics directory: /metrics on either process answers both."""
    port = free_port()
    env = web_env(settings, tmp_path, REDIS_URL=private_redis.url)
    procs = [start_web(env, port) for _ in range(2)]
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not start"
        assert wait_until(lambda: _series(get(port, "/metrics")[1], "ywm_web_processes")
                          == 2), get(port, "/metrics")[1]
        # 404s: /metrics answers (200) would count in a GET 200 series themselves.
        missed = 'ywm_http_requests_total{method="GET",status="404"}'
        for _ in range(40):  # a new connection each: the kernel spreads them over both
            assert _status(port, "/nowhere") == 404
        assert wait_until(lambda: _series(get(port, "/metrics")[1], missed) == 40), \
            get(port, "/metrics")[1]
        writers = {int(path.stem.rsplit("_", 1)[1])
                   for path in tmp_path.glob("counter_*.db")}
        assert writers == {proc.pid for proc in procs}  # both served some of the 40
        # A stopped process leaves the gauges; its counts stay in the box's totals.
        _stop(procs[1])
        text = get(port, "/metrics")[1]
        assert _series(text, "ywm_web_processes") == 1
        assert _series(text, missed) == 40
    finally:
        for proc in procs:
            _stop(proc)


def _status(port: int, path: str) -> int:
    try:
        return get(port, path)[0]
    except urllib.error.HTTPError as exc:
        return exc.code


def _register(port: int) -> str:
    body = ujson.dumps({"church_name": "Drain Church", "email": "drain@example.org",
                        "password": "a-long-password-1", "name": "Drain Owner"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/auth/register",
                                     data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return ujson.loads(response.read())["data"]["access_token"]


async def _close_code_after_sigterm(port: int, token: str, proc) -> int | None:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}/api/v1/stream", headers={"Authorization": f"Bearer {token}"})
    socket = await tornado.websocket.websocket_connect(request)
    hello = ujson.loads(await socket.read_message())
    assert hello["type"] == "hello"
    proc.send_signal(signal.SIGTERM)
    try:
        while await socket.read_message() is not None:
            pass  # frames sent before the close, if any
        return socket.close_code
    finally:
        socket.close()


def test_sigterm_closes_live_streams_with_going_away(settings, clean, private_redis,
                                                     tmp_path):
    port = free_port()
    proc = start_web(web_env(settings, tmp_path, REDIS_URL=private_redis.url), port)
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not start"
        token = _register(port)
        # asyncio.run in a thread of its own: in the main thread it would leave no current
        # loop behind, and the next pytest-tornado io_loop would create one it never closes.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            code = pool.submit(asyncio.run, _close_code_after_sigterm(port, token, proc))
            assert code.result(timeout=60) == 1001
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc)
