"""`python -m server dev` (`make run`): migrates, seeds, serves the demo login through
supervisord, sends through the carrier simulator, logs no error in a clean run, and on
Ctrl-C (SIGINT) leaves no process behind."""
from __future__ import annotations

import contextlib
import pathlib
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any, Iterator

import redis
import ujson

from tests.server.ops_support import free_port, get, wait_until, web_env

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.sh"
SEND_TIMEOUT = 60.0  # seconds for a text to go out and its receipt to come back


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _api(port: int, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}", method=method,
        data=None if body is None else ujson.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return ujson.loads(response.read())["data"]


def _login(port: int) -> str:
    body = ujson.dumps({"email": "demo@ywmessaging.local", "password": "grace-demo-2026"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login", data=body.encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return str(ujson.loads(response.read())["data"]["access_token"])


def _conversation_texts(port: int, token: str) -> list[str]:
    return [c["last_message"]["body"] for c in _api(port, token, "GET", "/conversations")]


def _redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _error_lines(output: str) -> list[str]:
    """Lines a clean run must not print: ERROR/CRITICAL log lines (JSON), tracebacks and
    asyncio's "Future exception was never retrieved"."""
    bad = re.compile(r'"level":\s*"(error|critical)"|Traceback|never retrieved', re.I)
    return [line for line in output.splitlines() if bad.search(line)]


class DevRun:
    """One `python -m server dev` subprocess, as `make run` starts it; its output is read
    by a thread, so a chatty run never blocks on a full pipe."""

    def __init__(self, settings: Any, var: pathlib.Path, **extra: str) -> None:
        self.port, self.sim_port = free_port(), free_port()
        env = web_env(settings, var / "metrics", YWM_QUEUE_NAME=settings.queue_name,
                      YWM_WEB_PROCESSES="2", **extra)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "dev", "--port", str(self.port), "--sim-port",
             str(self.sim_port), "--var-dir", str(var)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        banner = (f"Open http://127.0.0.1:{self.port}/ — sign in as "
                  "demo@ywmessaging.local / ")
        assert wait_until(lambda: banner in self.output or self.proc.poll() is not None,
                          timeout=120, interval=0.2)
        assert banner in self.output, self.output

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground
        code = self.proc.wait(timeout=90)
        self.reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@contextlib.contextmanager
def dev_run(settings: Any, var: pathlib.Path, **extra: str) -> Iterator[DevRun]:
    run = DevRun(settings, var, **extra)
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


def test_dev_runs_everything_and_ctrl_c_stops_it_all(settings, clean, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"  # left by the box's previous run
    stale.write_bytes(b"\0" * 8)
    # As `make run` does: services.sh first. Its Redis URL names a free port, so it starts
    # (and records) a private redis-server in the box's var directory, which Ctrl-C stops.
    private_redis = f"redis://127.0.0.1:{free_port()}/0"
    subprocess.run([str(SERVICES)], check=True, timeout=120, stdout=subprocess.DEVNULL,
                   env=web_env(settings, metrics_dir, YWM_VAR_DIR=str(tmp_path),
                               REDIS_URL=private_redis))
    assert _redis_answers(private_redis)
    with dev_run(settings, tmp_path) as run:
        port = run.port
        started = _descendants(run.proc.pid)
        # supervisord, 2 web, worker, scheduler, carrier simulator
        assert len(started) >= 6, started
        token = _login(port)
        # The inbox opens with the sample texts, sent in through the carrier simulator.
        from server.devtools.seed import DEMO_TEXTS
        assert wait_until(lambda: len(_conversation_texts(port, token)) == len(DEMO_TEXTS))
        assert sorted(_conversation_texts(port, token)) == sorted(t for _, t in DEMO_TEXTS)
        # The box started with an empty metrics directory, which both web processes share.
        assert not stale.exists()
        assert wait_until(lambda: re.search(r"^ywm_web_processes 2\.0$",
                                            get(port, "/metrics")[1], re.M)), \
            get(port, "/metrics")[1]
    assert run.proc.returncode == 0
    assert wait_until(lambda: not any(_alive(pid) for pid in started), timeout=10), \
        [pid for pid in started if _alive(pid)]
    # What services.sh started is stopped; the shared Redis of this test run is not.
    assert not _redis_answers(private_redis) and _redis_answers(settings.redis_url)
    assert not (tmp_path / "services.started").exists()
    # A clean start and stop logs no error (the aiopg pools are closed on their own loop).
    assert _error_lines(run.output) == [], run.output


def _conversation_message_status(port: int, token: str, conversation_id: str,
                                 message_id: str) -> str:
    messages = _api(port, token, "GET", f"/conversations/{conversation_id}/messages")
    return str(next(m["status"] for m in messages if m["id"] == message_id))


def _settled(port: int, token: str, message_id: str) -> int:
    """Recipients of a send with a final answer from the carrier."""
    counts = _api(port, token, "GET", f"/messages/{message_id}")["counts"]
    return int(counts["delivered"] + counts["failed"] + counts["undeliverable"])


def test_dev_reply_and_group_send_reach_delivered(settings, clean, tmp_path):
    """The first thing a new user does after `make run`: answer a text, text a group.
    Both go to the carrier simulator and come back `delivered` by its receipts."""
    with dev_run(settings, tmp_path) as run:
        port, token = run.port, _login(run.port)
        assert wait_until(lambda: _api(port, token, "GET", "/conversations"))
        conversation = _api(port, token, "GET", "/conversations")[0]
        reply = _api(port, token, "POST", f"/conversations/{conversation['id']}/messages",
                     {"body": "Yes, 7 tonight as usual."})
        youth = next(g for g in _api(port, token, "GET", "/groups")
                     if g["name"] == "Youth Group")
        sent = _api(port, token, "POST", "/messages",
                    {"body": "Youth group moves to 6:30 on Friday.", "group_ids": [youth["id"]]})
        assert sent["recipient_count"] == 3
        assert wait_until(lambda: _conversation_message_status(
            port, token, conversation["id"], reply["id"]) in ("delivered", "failed"),
            timeout=SEND_TIMEOUT, interval=0.2)
        assert _conversation_message_status(
            port, token, conversation["id"], reply["id"]) == "delivered", run.output
        assert wait_until(lambda: _settled(port, token, sent["id"]) == 3,
                          timeout=SEND_TIMEOUT, interval=0.2)
        counts = _api(port, token, "GET", f"/messages/{sent['id']}")["counts"]
        assert counts["delivered"] == 3, (counts, run.output)
    assert run.proc.returncode == 0
    assert _error_lines(run.output) == [], run.output
