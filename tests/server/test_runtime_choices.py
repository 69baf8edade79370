"""YWM_EVENT_LOOP and YWM_JSON_ENCODER: a real `ywm web` process runs on the loop and
writes with the encoder it is told, and the whole stack (aiopg, redis, Tornado, the live
stream's Redis subscription) works on it."""
from __future__ import annotations

import asyncio
import pathlib
import re
import signal
import subprocess
import threading
import urllib.request

import pytest
import tornado.httpclient
import tornado.websocket
import ujson

from server.platform.settings import Settings, SettingsError
from tests.server.ops_support import answers, free_port, get, start_web, wait_until, web_env

CHOICES = [("asyncio", "ujson"), ("uvloop", "orjson")]


def _post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=ujson.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return ujson.loads(response.read())


async def _hello(port: int, token: str) -> dict:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}/api/v1/stream", headers={"Authorization": f"Bearer {token}"})
    socket = await asyncio.wait_for(tornado.websocket.websocket_connect(request), 15)
    try:
        return ujson.loads(await asyncio.wait_for(socket.read_message(), 15))
    finally:
        socket.close()


@pytest.mark.parametrize("event_loop,encoder", CHOICES)
def test_the_web_process_serves_on_the_chosen_loop_and_encoder(settings, clean, tmp_path,
                                                               event_loop, encoder):
    pytest.importorskip(event_loop)
    pytest.importorskip(encoder)
    port = free_port()
    proc = start_web(web_env(settings, tmp_path, YWM_EVENT_LOOP=event_loop,
                             YWM_JSON_ENCODER=encoder, YWM_LOG_LEVEL="INFO"), port)
    try:
        assert wait_until(lambda: answers(port) or proc.poll() is not None, 30)
        assert proc.poll() is None, "ywm web exited"
        registered = _post(port, "/api/v1/auth/register", {
            "church_name": "Loop Church", "email": f"loop-{event_loop}@example.org",
            "password": "a-long-password-1", "name": "Loop Owner"})  # PostgreSQL + Redis
        token = registered["data"]["access_token"]
        status, body = get(port, "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        me = ujson.loads(body)["data"]
        assert me["user"]["email"] == f"loop-{event_loop}@example.org"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", me["church"]["created_at"])
        assert get(port, "/ready")[0] == 200
        hello = asyncio.run(_hello(port, token))  # the hub's Redis subscription
        assert hello["type"] == "hello"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    lines = [ujson.loads(x) for x in output.splitlines() if x.startswith("{")]
    listening = [x["msg"] for x in lines if x["msg"].startswith("listening on")]
    assert listening and listening[0].endswith(f"({event_loop} loop, {encoder})"), output
    requests = [x for x in lines if x["msg"] == "request"]
    assert {"/api/v1/auth/register", "/api/v1/auth/me"} <= {x["path"] for x in requests}
    assert proc.returncode == 0, output


def test_unknown_choices_stop_startup_naming_the_variable():
    for var in ("YWM_EVENT_LOOP", "YWM_JSON_ENCODER"):
        with pytest.raises(SettingsError, match=var):
            Settings.from_env({"YWM_ENV": "test", var: "trio"})


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_a_worker_thread_runs_tasks_on_the_chosen_loop(settings, clean, event_loop):
    pytest.importorskip(event_loop)
    from server.platform import queue
    from workers import runtime
    queue.configure(settings.replace(event_loop=event_loop))
    seen: dict = {}

    async def task(deps) -> None:  # a task's body: PostgreSQL and Redis through its Deps
        seen["loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]
        async with deps.db.acquire() as conn:
            seen["db"] = await conn.fetch_val("SELECT 41 + 1")
        seen["redis"] = await deps.redis.ping()

    def worker_thread() -> None:
        try:
            runtime.run(task)
        finally:
            runtime.close_runtime()
    try:
        thread = threading.Thread(target=worker_thread)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the task did not finish"
    finally:
        queue.configure(settings)
    assert seen == {"loop": event_loop, "db": 42, "redis": True}


def test_the_web_process_queues_a_storm_of_connections(settings, clean, tmp_path):
    """The listening socket's accept queue (`ss`'s Send-Q) is LISTEN_BACKLOG, not Tornado's
    128: thousands of sockets opening at once queue instead of falling into SYN retries."""
    from server.main import LISTEN_BACKLOG
    port = free_port()
    proc = start_web(web_env(settings, tmp_path), port)
    try:
        assert wait_until(lambda: answers(port) or proc.poll() is not None, 30)
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                   text=True, timeout=10, check=True).stdout.split()
        assert listening[0] == "LISTEN"
        somaxconn = int(pathlib.Path("/proc/sys/net/core/somaxconn").read_text())
        expected = min(LISTEN_BACKLOG, somaxconn)
        assert int(listening[2]) == expected > 128
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
