"""Rate limits: 429 + Retry-After, per IP on auth routes, per user elsewhere, and one
bucket shared by every web process (two real `ywm web` processes on one Redis DB)."""
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import ujson

from server.app import make_app
from tests.factories import create_church, register

API = "/api/v1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def app(deps):
    # A slow refill (one token per 100 s) makes the counts exact, whatever the speed.
    tight = deps.settings.replace(auth_rate_burst=3, auth_rate_per_second=0.01,
                                  user_rate_burst=3, user_rate_per_second=0.01)
    return make_app(dataclasses.replace(deps, settings=tight))


@pytest.mark.gen_test
async def test_auth_routes_are_limited_per_ip(api):
    owner = await register(api)  # 1 of 3
    login = {"email": owner["email"], "password": "wrong password"}
    statuses = [(await api.post(f"{API}/auth/login", json=login))[0] for _ in range(2)]
    assert statuses == [401, 401]
    status, body, headers = await api.post(f"{API}/auth/login", json=login)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    # Refresh is an auth route too, and shares the IP's bucket.
    status, _, _ = await api.post(f"{API}/auth/refresh",
                                  json={"refresh_token": owner["refresh_token"]})
    assert status == 429
    # Authenticated routes use the user's bucket, not the IP's.
    status, _, _ = await api.get(f"{API}/auth/me", token=owner["access_token"])
    assert status == 200


@pytest.mark.gen_test
async def test_other_routes_are_limited_per_user(api, deps):
    owner = await register(api)
    token = owner["access_token"]
    for _ in range(3):
        assert (await api.get(f"{API}/church", token=token))[0] == 200
    status, body, headers = await api.get(f"{API}/church", token=token)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    # Another user has a bucket of their own (made without HTTP, since this IP's auth
    # bucket is nearly spent).
    other = await create_church(deps, church_name="Other")
    assert (await api.get(f"{API}/church", token=other["access_token"]))[0] == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, path: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=ujson.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, ujson.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, ujson.loads(error.read()), dict(error.headers)


def _wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"web process on {port} exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"web process on {port} did not start")


@pytest.fixture
def two_web_processes(settings, clean):
    env = {**os.environ, "YWM_ENV": "test", "DATABASE_URL": settings.database_url,
           "REDIS_URL": settings.redis_url, "YWM_LOG_LEVEL": "WARNING",
           "YWM_AUTH_RATE_BURST": "6", "YWM_AUTH_RATE_PER_SECOND": "0.01"}
    ports = [_free_port(), _free_port()]
    processes = [subprocess.Popen([sys.executable, "-m", "server", "web", "--port", str(p)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
                 for p in ports]
    try:
        for port, process in zip(ports, processes):
            _wait_healthy(port, process)
        yield ports
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_auth_bucket_is_shared_across_two_web_processes(two_web_processes):
    first, second = two_web_processes
    bad_login = {"email": "nobody@example.org"}  # 422 after the limiter spent a token
    # Three requests to each process: six in all, exactly the shared burst.
    for port in (first, second, first, second, first, second):
        status, body, _ = _post(port, f"{API}/auth/login", bad_login)
        assert (status, body["error"]["code"]) == (422, "validation_failed")
    # Each process has seen only three, yet both refuse now: the bucket is in Redis.
    for port in (first, second):
        status, body, headers = _post(port, f"{API}/auth/login", bad_login)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert int(headers["Retry-After"]) >= 1
