"""Child processes of a benchmark: stop them all, even when the harness itself is stopped."""
from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any, Iterable

ROOT = pathlib.Path(__file__).resolve().parent.parent

STOP_TIMEOUT = 30  # seconds a child gets to drain before it is killed


def stop_processes(procs: Iterable[subprocess.Popen[Any]],
                   stop_signal: int = signal.SIGTERM) -> None:
    """Signal every child still running, wait for each, kill the ones that hang."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()


def exit_on_sigterm() -> None:
    """Turn SIGTERM (`timeout`, a CI stop) into SystemExit, so `finally` blocks stop the
    children: Python's default SIGTERM ends the process without running them."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def start_webs(env: dict[str, str], port: int, processes: int, log: pathlib.Path,
               tree: pathlib.Path = ROOT) -> list[subprocess.Popen[Any]]:
    """`processes` web processes on one port (SO_REUSEPORT, as in production) running the
    code in `tree` (a baseline: `git archive <commit> | tar -x -C <tree>`), once /health
    answers. Their output goes to `log`: a pipe nobody reads would block a process that
    logs much. `python -m server` is what `ywm` runs; it needs no installed entry point."""
    env = dict(env, PYTHONPATH=str(tree))
    with log.open("ab") as out:
        procs = [subprocess.Popen([sys.executable, "-m", "server", "web", "--port", str(port)],
                                  env=env, cwd=tree, stdout=out, stderr=out)
                 for _ in range(processes)]
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return procs
        except OSError:
            time.sleep(0.2)
    stop_processes(procs)
    raise RuntimeError(f"web processes did not come up (see {log})")
