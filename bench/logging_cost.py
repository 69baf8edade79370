"""What the per-request JSON log line costs, as a share of a cheap request's CPU.

`python -m bench.logging_cost [--requests 400] [--path /api/v1/auth/me] [--mode callgrind|cpu]`

One `ywm web` process with the request line on (YWM_LOG_LEVEL=INFO) and one with it off
(WARNING: `log.info` returns at its level check), measured alternately, `--rounds` times each:

- `callgrind` (default): the process runs under `valgrind --tool=callgrind
  --instr-atstart=no`; instrumentation is switched on (`callgrind_control -i on`) only
  around `--requests` keep-alive GETs, so the figure is user-space instructions per request,
  which another process on the machine cannot change. The log line's `write` system call
  is kernel time and not in it: the `cpu` mode counts that.
- `cpu`: the same without valgrind; the process's user + system CPU (from /proc) around
  the requests. Load on the machine adds noise, so run it with more requests.

Both processes log to a file (a pipe to supervisord in production), unbuffered as
supervisor/web.conf runs them. The share is (on - off) / on. Output: a Markdown table and
var/bench/logging_cost.json.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.auth_me import BENCH_DB, VAR, _free_port, _wait, prepare_tokens
from bench.procs import exit_on_sigterm, stop_processes
from server.devtools.dev import ROOT, child_env
from server.platform.settings import Settings

WARMUP = 100
USERS = 16  # tokens rotated per request, so no user meets the per-user rate limit
LEVELS = {"on": "INFO", "off": "WARNING"}


def _start(settings: Settings, mode: str, level: str, port: int, out: str,
           extra_env: dict[str, str] | None) -> tuple[subprocess.Popen[bytes], Any]:
    env = child_env(settings.replace(web_processes=1), port, 0, VAR)
    env.update({"YWM_LOG_LEVEL": level, "PYTHONUNBUFFERED": "1",
                "YWM_METRICS_DIR": tempfile.mkdtemp(prefix="ywm-bench-metrics-")})
    env.update(extra_env or {})
    command = [sys.executable, "-m", "server", "web", "--port", str(port)]
    if mode == "callgrind":
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}"] + command
    log = open(VAR / "logging_cost_web.log", "ab")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, log


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        parts = stat.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _requests(port: int, path: str, tokens: list[str], count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for n in range(count):
            token = tokens[n % len(tokens)]
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"bench: {path} answered {response.status}")
    finally:
        conn.close()


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def _instructions(out: str) -> int:
    """Total Ir of every dump the run wrote (`out`, `out.1`, ...)."""
    total = 0
    for name in os.listdir(os.path.dirname(out)):
        if name.startswith(os.path.basename(out)):
            with open(os.path.join(os.path.dirname(out), name)) as dump:
                for line in dump:  # `summary:` can read 0 after a zero; `totals:` cannot
                    match = re.match(r"totals: (\d+)", line)
                    if match:
                        total += int(match.group(1))
    return total


def measure(settings: Settings, mode: str, level: str, path: str, tokens: list[str],
            count: int, extra_env: dict[str, str] | None = None) -> float:
    """Instructions (callgrind) or CPU µs (cpu) per request in one fresh web process
    (`extra_env`: more of its environment, e.g. YWM_EVENT_LOOP for bench/loop_json.py)."""
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ywm-callgrind-")
    out = os.path.join(workdir, "callgrind.out")
    proc, log = _start(settings, mode, level, port, out, extra_env)
    try:
        _wait(f"http://127.0.0.1:{port}{path}", tokens[0], timeout=300)
        _requests(port, path, tokens, WARMUP)
        if mode == "callgrind":
            _callgrind(proc.pid, "-z")
            _callgrind(proc.pid, "-i", "on")
            _requests(port, path, tokens, count)
            _callgrind(proc.pid, "-i", "off")
            _callgrind(proc.pid, "-d")
            time.sleep(0.5)
            return _instructions(out) / count
        before = _cpu_seconds(proc.pid)
        _requests(port, path, tokens, count)
        return (_cpu_seconds(proc.pid) - before) / count * 1e6
    finally:
        stop_processes([proc])
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.logging_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=None,
                        help="measured per process (default 400 callgrind, 5000 cpu)")
    parser.add_argument("--path", default="/api/v1/auth/me")
    parser.add_argument("--mode", choices=("callgrind", "cpu"), default="callgrind")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    count = args.requests or (400 if args.mode == "callgrind" else 5000)
    if args.mode == "callgrind" and not shutil.which("callgrind_control"):
        raise SystemExit("bench: valgrind is missing; `apt-get install valgrind`")
    VAR.mkdir(parents=True, exist_ok=True)
    base = Settings.from_env({**os.environ, "YWM_ENV": "test"})
    settings = base.replace(database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
    from db.migrate import ensure_database, upgrade
    ensure_database(settings.database_url)
    upgrade(settings.database_url)
    tokens = asyncio.run(prepare_tokens(settings, USERS))
    load_before = os.getloadavg()[0]
    results: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for name, level in LEVELS.items():
            results[name].append(measure(settings, args.mode, level, args.path, tokens, count))
    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    on = sum(results["on"]) / len(results["on"])
    off = sum(results["off"]) / len(results["off"])
    share = (on - off) / on * 100
    unit = "instructions" if args.mode == "callgrind" else "CPU µs"
    report = {"mode": args.mode, "path": args.path, "requests": count, "rounds": args.rounds,
              "load_1m": load, "per_request": results, "log_share_percent": round(share, 2)}
    (VAR / "logging_cost.json").write_text(json.dumps(report, indent=2))
    print(f"\nGET {args.path}, {count} keep-alive requests per process, {args.rounds} "
          f"round(s), mode {args.mode}, 1-minute load {load[0]} before / {load[1]} after\n")
    print(f"| request log line | {unit} per request |")
    print("|---|---|")
    for name in LEVELS:
        figures = ", ".join(f"{x:,.0f}" if x > 1000 else f"{x:,.1f}" for x in results[name])
        print(f"| {name} (YWM_LOG_LEVEL={LEVELS[name]}) | {figures} |")
    print(f"\nlog line share of request CPU: {share:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
