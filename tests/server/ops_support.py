"""Helpers for operations tests: a private redis-server, a TCP proxy that can play a
PostgreSQL outage, and `ywm web` subprocesses. Never touches the machine's shared
Redis or PostgreSQL processes."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Iterator

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class PrivateRedis:
    """A throwaway redis-server on a free loopback port, stoppable and restartable."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ywm-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self._answers), "private redis-server did not start"

    def _answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TcpProxy:
    """Forwards a loopback port to a target; `stop()` refuses and cuts every connection,
    which the client sees exactly like its server going away."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.transport.abort()


def web_env(settings: Any, metrics_dir: Any = None, **extra: str) -> dict[str, str]:
    """The environment of a process of one test box; `metrics_dir` is the box's (None: a
    new box of its own)."""
    if metrics_dir is None:
        metrics_dir = tempfile.mkdtemp(prefix="ywm-test-box-")
    env = dict(os.environ)
    env.update({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "YWM_ENV": "test", "YWM_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                "YWM_METRICS_DIR": str(metrics_dir)})
    env.update(extra)
    return env


def start_web(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "server", "web", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_web(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the web process drains), SIGKILL if it is stuck; never outlives a test."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextlib.contextmanager
def running_webs(settings: Any, count: int = 1, **extra: str) -> Iterator[list[int]]:
    """`count` `ywm web` processes on the test's database and Redis, each on its own port,
    answering before this yields; stopped afterwards."""
    ports = [free_port() for _ in range(count)]
    processes = [start_web(web_env(settings, **extra), port) for port in ports]
    try:
        for port, process in zip(ports, processes):
            assert wait_until(lambda: answers(port) or process.poll() is not None, 30)
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore
        yield ports
    finally:
        for process in processes:
            stop_web(process)


def get(port: int, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None
        ) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def answers(port: int) -> bool:
    try:
        return get(port, "/health", timeout=2)[0] == 200
    except OSError:
        return False


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
