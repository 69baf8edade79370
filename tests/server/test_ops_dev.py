"""`python -m server dev` (`make run`): migrates, seeds, serves the demo login through
supervisord, and on Ctrl-C (SIGINT) leaves no process behind."""
from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys
import urllib.request

import ujson

from tests.server.ops_support import free_port, get, wait_until, web_env


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


def _login(port: int) -> str:
    body = ujson.dumps({"email": "demo@ywmessaging.local", "password": "grace-demo-2026"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login", data=body.encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return str(ujson.loads(response.read())["data"]["access_token"])


def _conversation_texts(port: int, token: str) -> list[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/conversations",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return [c["last_message"]["body"] for c in ujson.loads(response.read())["data"]]


def test_dev_runs_everything_and_ctrl_c_stops_it_all(settings, clean, tmp_path):
    port, sim_port = free_port(), free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"  # left by the box's previous run
    stale.write_bytes(b"\0" * 8)
    env = web_env(settings, metrics_dir, YWM_QUEUE_NAME=settings.queue_name,
                  YWM_WEB_PROCESSES="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "dev", "--port", str(port), "--sim-port",
         str(sim_port), "--var-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    banner = f"Open http://127.0.0.1:{port}/ — sign in as demo@ywmessaging.local / "
    output = b""
    try:
        while banner.encode() not in output:
            line = proc.stdout.readline()
            assert line, output.decode()
            output += line
        started = _descendants(proc.pid)
        # supervisord, 2 web, worker, scheduler, carrier simulator
        assert len(started) >= 6, started
        token = _login(port)
        # The inbox opens with the sample texts, sent in through the carrier simulator.
        from server.devtools.seed import DEMO_TEXTS
        assert sorted(_conversation_texts(port, token)) == sorted(t for _, t in DEMO_TEXTS)
        # The box started with an empty metrics directory, which both web processes share.
        assert not stale.exists()
        assert wait_until(lambda: re.search(r"^ywm_web_processes 2\.0$",
                                            get(port, "/metrics")[1], re.M)), \
            get(port, "/metrics")[1]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert wait_until(lambda: not any(_alive(pid) for pid in started), timeout=10), \
        [pid for pid in started if _alive(pid)]
