"""Real processes for end-to-end send tests and benchmarks: `ywm web`, `ywm worker`.

Each runs with this test run's database, Redis DB and queue name, and carrier API bases
pointing at an in-process simulator. `kill()` is SIGKILL: no cleanup runs, as in a crash.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from server.platform.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(settings: Settings, sim_url: str | None = None, public_url: str | None = None,
                **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "YWM_QUEUE_NAME": settings.queue_name, "YWM_ENV": "test",
                "YWM_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    if sim_url:
        env["YWM_TELNYX_API_BASE"] = f"{sim_url}/telnyx/v2"
        env["YWM_TWILIO_API_BASE"] = f"{sim_url}/twilio"
    if public_url:
        env["YWM_PUBLIC_URL"] = public_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(env: dict[str, str], threads: int = 4, periodic: bool = False
                 ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "server", "worker", "-w", str(threads)]
    if not periodic:
        args.append("-n")
    # stderr is not read while running (a busy worker could fill a pipe and block).
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def start_web(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "server", "web", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "web died")
            time.sleep(0.1)
    raise RuntimeError("web process did not answer /health")


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
    _close_pipes(proc)
