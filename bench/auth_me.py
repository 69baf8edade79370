"""Issue 2 benchmark: GET /api/v1/auth/me through the real stack vs a bare Tornado hello.

Both run the same way: one web process per core on one port (SO_REUSEPORT); ours under
supervisord with supervisor/web.conf, exactly as deployed. Load comes from `wrk` (Debian
package; installed here with apt-get when missing and running as root) at 64 connections,
tokens of 64 distinct users rotated per request (one user would hit the 100 r/s per-user
rate limit). Every number is from loopback on this machine, with wrk, PostgreSQL and Redis
sharing its cores. Output: a Markdown table on stdout and var/bench/auth_me.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any
from uuid import UUID

from server.devtools.dev import ROOT, child_env, write_config
from server.platform.settings import Settings
from bench.procs import exit_on_sigterm, stop_processes

VAR = ROOT / "var" / "bench"
LUA = pathlib.Path(__file__).with_name("report.lua")
BENCH_DB = "ywm_bench"
WARMUP_SECONDS = 3


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install -y wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing; install it with `apt-get install wrk`")
    return found


async def prepare_tokens(settings: Settings, count: int) -> list[str]:
    """A fresh church with `count` users, one session each; returns access tokens."""
    from db.queries import users as user_q
    from server.auth import passwords
    from server.auth import sessions as auth
    from server.main import close_deps, open_deps
    from server.services import accounts
    deps = await open_deps(settings)
    try:
        stamp = int(time.time())
        owner = await accounts.register(
            deps.db, deps.redis, settings, church_name=f"Bench {stamp}",
            email=f"bench-{stamp}-0@bench.local", password="bench-password-123",
            name="Bench owner")
        church_id = UUID(str(owner.church["id"]))
        tokens = [owner.tokens.access_token]
        password_hash = passwords.hash_password(settings, "bench-password-123")  # once for all
        async with deps.db.acquire() as conn:
            for n in range(1, count):
                user = await user_q.insert_user(conn, church_id, f"bench-{stamp}-{n}@bench.local",
                                                f"Bench {n}", "staff", password_hash)
                assert user is not None
                pair = await auth.create_session(deps.redis, settings, church_id, user["id"],
                                                 "staff")
                tokens.append(pair.access_token)
        return tokens
    finally:
        await close_deps(deps)


def _answers(url: str, token: str | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(url: str, token: str | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url, token):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {url} did not answer")
        time.sleep(0.2)


def run_wrk(wrk: str, url: str, seconds: int, connections: int, threads: int,
            tokens_file: pathlib.Path | None) -> dict[str, Any]:
    env = dict(os.environ, WRK_TOKENS=str(tokens_file or ""))
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(LUA), url], env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_targets(settings: Settings, processes: int, web_port: int, hello_port: int
                   ) -> list[subprocess.Popen[bytes]]:
    conf = write_config(VAR, programs=("web.conf",))
    env = child_env(settings.replace(web_processes=processes), web_port, 0, VAR)
    log = open(VAR / "supervisord.log", "ab")
    procs = [subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)]
    procs += [subprocess.Popen([sys.executable, "-m", "bench.hello", "--port", str(hello_port)],
                               cwd=ROOT) for _ in range(processes)]
    return procs


def _row(name: str, r: dict[str, Any]) -> str:
    errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return (f"| {name} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
            f"| {r['non_2xx']} | {errors} |")


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seconds", type=int, default=10, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    VAR.mkdir(parents=True, exist_ok=True)
    # A bench box runs on the development secrets, which only an explicit mode allows.
    base = Settings.from_env({**os.environ, "YWM_ENV": "test"})
    settings = base.replace(database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
    from db.migrate import ensure_database, upgrade
    ensure_database(settings.database_url)
    upgrade(settings.database_url)
    tokens = asyncio.run(prepare_tokens(settings, args.connections))
    tokens_file = VAR / "tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")
    web_port, hello_port = _free_port(), _free_port()
    me_url = f"http://127.0.0.1:{web_port}/api/v1/auth/me"
    hello_url = f"http://127.0.0.1:{hello_port}/"
    procs = _start_targets(settings, args.processes, web_port, hello_port)
    results: dict[str, list[dict[str, Any]]] = {"hello": [], "auth_me": []}
    load_before = os.getloadavg()[0]
    try:
        _wait(me_url, tokens[0])
        _wait(hello_url)
        for url, file in ((hello_url, None), (me_url, tokens_file)):
            run_wrk(wrk, url, WARMUP_SECONDS, args.connections, args.threads, file)
        for _ in range(args.rounds):
            results["hello"].append(run_wrk(wrk, hello_url, args.seconds, args.connections,
                                            args.threads, None))
            results["auth_me"].append(run_wrk(wrk, me_url, args.seconds, args.connections,
                                              args.threads, tokens_file))
    finally:
        stop_processes(procs)
    # Other work on the machine skews absolute numbers: report the load around the run.
    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    report = {"processes": args.processes, "connections": args.connections,
              "seconds": args.seconds, "log_level": base.log_level, "load_1m": load,
              "results": results}
    (VAR / "auth_me.json").write_text(json.dumps(report, indent=2))
    print(f"\n{args.processes} web processes on one port, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.seconds}s, log level {base.log_level}, "
          f"1-minute load {load[0]} before / {load[1]} after\n")
    print("| target | requests/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|")
    for n in range(args.rounds):
        print(_row(f"bare Tornado hello (round {n + 1})", results["hello"][n]))
        print(_row(f"GET /api/v1/auth/me (round {n + 1})", results["auth_me"][n]))
    # Issue 11's target, as same-run ratios: >= 50 % of hello's req/s, p99 <= 2x hello's.
    print("\n| round | auth/me req/s ÷ hello req/s | auth/me p99 ÷ hello p99 |")
    print("|---|---|---|")
    for n, (hello, me) in enumerate(zip(results["hello"], results["auth_me"]), 1):
        print(f"| {n} | {100 * me['rps'] / hello['rps']:.1f} % "
              f"| {me['p99_us'] / max(1, hello['p99_us']):.2f}x |")
    return 0
