"""The local cluster's process records: each detached process is kept as pid + start time,
so a reused pid is never signalled, and stopped with its whole session."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from typing import Any, Callable

from server.devtools.dev import ROOT

STOP_SECONDS = 15.0  # a process's grace after SIGTERM before its session is killed


class ClusterError(RuntimeError):
    """A step did not complete; the message says which and where its log is."""


def stat_field(pid: int, index: int) -> int | None:
    """Field `index` after the command name of /proc/<pid>/stat; None once it is gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[index])


def start_time(pid: int) -> int | None:
    return stat_field(pid, 19)


def session_of(pid: int) -> int | None:
    return stat_field(pid, 3)


def alive(record: dict[str, Any] | None) -> bool:
    if not record:
        return False
    started = start_time(int(record["pid"]))
    if started is None or started != record["start"]:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        state = pathlib.Path(f"/proc/{record['pid']}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return False
    return state.split()[0] != "Z"


def session_members(record: dict[str, Any]) -> list[int]:
    """Every process still in the session the recorded leader opened (its children too)."""
    sid, found = int(record["pid"]), []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) == sid:
            started = start_time(int(entry.name))
            if started is not None and started >= record["start"]:
                found.append(int(entry.name))
    return found


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(0.2)


def spawn(command: list[str], log: pathlib.Path, env: dict[str, str] | None = None
          ) -> dict[str, Any]:
    """Start `command` detached (its own session, output to `log`); returns its record."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                                   start_new_session=True)
    started = wait_for(lambda: start_time(process.pid), 5, f"{command[0]} to start")
    return {"pid": process.pid, "start": started, "log": str(log)}


def signal_session(record: dict[str, Any] | None, signum: int) -> None:
    if not record:
        return
    for pid in session_members(record):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop(record: dict[str, Any] | None, signum: int = signal.SIGTERM,
         seconds: float = STOP_SECONDS) -> None:
    """Signal the recorded process; SIGKILL its whole session if it outlives `seconds`."""
    if record is None:
        return
    if alive(record):
        os.kill(int(record["pid"]), signum)
        try:
            wait_for(lambda: not alive(record), seconds, f"pid {record['pid']} to stop")
        except ClusterError:
            pass
    signal_session(record, signal.SIGKILL)
    wait_for(lambda: not session_members(record), seconds, "a killed session to end")
