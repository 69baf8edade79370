"""Child processes of a benchmark: stop them all, even when the harness itself is stopped."""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any, Iterable

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
