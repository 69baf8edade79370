"""Real `ywm web` processes: SIGTERM lets a slow in-flight request finish with 200 while
new connections are refused; two processes on one port (SO_REUSEPORT) are summed by
/metrics."""
from __future__ import annotations

import re
import signal
import threading
import time

import pytest
import redis

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


def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(settings, private_redis):
    port = free_port()
    proc = start_web(web_env(settings, REDIS_URL=private_redis.url), port)
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not start"
        # Hold every Redis command for a while: GET /metrics is then a slow request
        # that is in flight when SIGTERM arrives.
        redis.Redis(port=private_redis.port).execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        result: dict = {}
        request = threading.Thread(target=lambda: result.update(
            zip(("status", "body"), get(port, "/metrics"))))
        request.start()
        time.sleep(0.5)  # let the request reach the handler
        proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: refuses(port), timeout=5), "still accepting after SIGTERM"
        assert request.is_alive(), "the request did not wait for Redis"
        request.join(timeout=30)
        assert result.get("status") == 200
        assert "ywm_http_requests_total" in result["body"]
        assert proc.wait(timeout=30) == 0
    finally:
        output = _stop(proc)
    assert b"Traceback" not in output, output.decode()


def test_metrics_sum_two_processes_on_one_port(settings, private_redis):
    port = free_port()
    env = web_env(settings, REDIS_URL=private_redis.url)
    procs = [start_web(env, port) for _ in range(2)]
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not start"
        for _ in range(40):  # a new connection each: the kernel spreads them over both
            assert get(port, "/health")[0] == 200

        def both_reported() -> str | None:
            text = get(port, "/metrics")[1]
            return text if re.search(r"^ywm_web_processes 2$", text, re.M) else None

        text = wait_until(both_reported, timeout=10, interval=0.3)
        assert text, "the second process never reported"
        served = float(re.search(
            r'^ywm_http_requests_total\{method="GET",status="200"\} (\S+)$', text, re.M)[1])
        assert served >= 40
    finally:
        for proc in procs:
            _stop(proc)
