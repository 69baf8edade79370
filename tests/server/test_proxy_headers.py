"""The per-IP auth limit cannot be dodged by a forged X-Forwarded-For."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
import tornado.httpclient
import ujson

from server.platform.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_web(settings: Settings, extra_env: dict[str, str]) -> tuple[Any, int]:
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               YWM_ENV="test", YWM_LOG_LEVEL="WARNING", YWM_AUTH_RATE_BURST="2",
               YWM_AUTH_RATE_PER_SECOND="0.01", **extra_env)
    proc = subprocess.Popen([sys.executable, "-m", "server", "web", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("web process did not start")


@pytest.fixture
def web(settings: Settings, clean: None) -> Iterator[int]:
    proc, port = _start_web(settings, {})
    yield port
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.gen_test(timeout=60)
async def test_forged_forwarded_for_does_not_get_a_fresh_bucket(web: int) -> None:
    client = tornado.httpclient.AsyncHTTPClient()
    statuses = []
    for n in range(4):
        response = await client.fetch(
            f"http://127.0.0.1:{web}/api/v1/auth/login", method="POST", raise_error=False,
            headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.0.0.{n}",
                     "X-Real-IP": f"10.0.0.{n}"},
            body=ujson.dumps({"email": "nobody@example.org", "password": "wrong password"}))
        statuses.append(response.code)
    assert statuses[:2] == [401, 401]
    assert statuses[2:] == [429, 429]


def test_the_setting_is_strict() -> None:
    assert Settings.from_env({"YWM_ENV": "test",
                              "YWM_TRUST_PROXY_HEADERS": "true"}).trust_proxy_headers
    assert not Settings.from_env({"YWM_ENV": "test"}).trust_proxy_headers
    with pytest.raises(Exception, match="YWM_TRUST_PROXY_HEADERS"):
        Settings.from_env({"YWM_TRUST_PROXY_HEADERS": "yes"})
