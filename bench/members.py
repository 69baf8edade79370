"""Issue 3 benchmark: CSV import time and peak RSS, member list and group page throughput.

Run: `.venv/bin/python -m bench.members` (PostgreSQL and Redis up; `wrk` installed).
Uses its own database `ywm_bench`, a fresh church per run, and `ywm web` processes on one
port (SO_REUSEPORT), as deployed. Steps:
1. one web process: import a 5,000-row CSV, then two 50,000-row CSVs (100,000 members in
   one church), then the first 50,000-row file again (all rows unchanged); wall time per
   request, and the process's RSS before and its peak RSS (VmHWM) after each import;
   then ANALYZE (as autovacuum would shortly after a bulk load);
2. `--processes` web processes: `GET /api/v1/members?limit=50` with wrk at 64 connections
   (64 staff users' tokens rotated, so the 100 r/s per-user limit never binds);
3. `GET /api/v1/groups/{id}/members` (a 10,500-member group): the first page at the default
   limit (cached in Redis) against `?limit=49`, the same query never cached;
4. the same three reads as service calls, one at a time in this process (less sensitive
   to a busy machine than wrk).
Everything shares this machine's cores (wrk, PostgreSQL, Redis, the web processes).
Output: Markdown on stdout and var/bench/members.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench.auth_me import (VAR, WARMUP_SECONDS, _free_port, _wait, ensure_wrk, prepare_tokens,
                           run_wrk)
from server.devtools.dev import ROOT
from server.platform.settings import Settings
from bench.procs import exit_on_sigterm, stop_processes
from bench.resources import cpu_seconds

BENCH_DB = "ywm_bench"


def csv_body(rows: int, offset: int) -> bytes:
    """Valid, distinct New York numbers; ten groups of equal size."""
    lines = ["first_name,last_name,phone,email,groups"]
    for i in range(offset, offset + rows):
        lines.append(f"First{i},Last{i},212{2000000 + i:07d},p{i}@example.org,Group{i % 10}")
    return ("\n".join(lines) + "\n").encode()


def _memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    values = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _request(method: str, url: str, token: str, body: bytes | None = None,
             content_type: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def _start_web(settings: Settings, port: int, count: int) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               YWM_ENV=settings.env)
    log = open(VAR / "members_web.log", "ab")
    return [subprocess.Popen([sys.executable, "-m", "server.cli", "web", "--port", str(port)],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            for _ in range(count)]


def _analyze(database_url: str) -> None:
    import psycopg2
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE members, group_memberships, groups")
    conn.close()


def measure_imports(base: str, token: str, pid: int) -> list[dict[str, Any]]:
    files = [("5,000 new rows", csv_body(5_000, 100_000)),
             ("50,000 new rows", csv_body(50_000, 0)),
             ("50,000 new rows (members 50,001-100,000)", csv_body(50_000, 50_000)),
             ("50,000 unchanged rows (re-import)", csv_body(50_000, 0))]
    out = []
    for label, body in files:
        before = _memory(pid)
        cpu = cpu_seconds([pid])
        started = time.perf_counter()
        result = _request("POST", f"{base}/api/v1/members/import", token, body, "text/csv")
        seconds = time.perf_counter() - started
        cpu = cpu_seconds([pid]) - cpu
        after = _memory(pid)
        data = result["data"]
        out.append({"file": label, "bytes": len(body), "seconds": round(seconds, 2),
                    "web_cpu_seconds": round(cpu, 2),
                    "rows_per_s": round(body.count(b"\n") / seconds),
                    "rss_before_mib": round(before["VmRSS"] / 1024, 1),
                    "peak_rss_after_mib": round(after["VmHWM"] / 1024, 1),
                    "created": data["created"], "updated": data["updated"],
                    "skipped": data["skipped"], "errors": len(data["errors"])})
    return out


async def service_latency(settings: Settings, group_id: str, count: int = 300
                          ) -> dict[str, dict[str, float]]:
    """One call at a time in this process: service time without HTTP, auth or wrk."""
    from uuid import UUID

    from server.main import close_deps, open_deps
    from server.services import groups, members
    deps = await open_deps(settings)
    try:
        row = await deps.db.fetch_one(
            "SELECT church_id FROM groups WHERE id = %(id)s", {"id": UUID(group_id)})
        assert row is not None
        church_id, gid = row["church_id"], UUID(group_id)
        calls = {
            "members.list_members(limit=50)":
                lambda: members.list_members(deps.db, settings, church_id, 50),
            "groups.list_group_members(limit=50), cached":
                lambda: groups.list_group_members(deps.db, deps.redis, settings, church_id,
                                                  gid, 50, None),
            "groups.list_group_members(limit=49), uncached":
                lambda: groups.list_group_members(deps.db, deps.redis, settings, church_id,
                                                  gid, 49, None),
        }
        out = {}
        for name, call in calls.items():
            for _ in range(20):
                await call()
            times = []
            for _ in range(count):
                started = time.perf_counter()
                await call()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            out[name] = {"p50_ms": round(times[len(times) // 2], 3),
                         "p99_ms": round(times[int(len(times) * 0.99)], 3)}
        return out
    finally:
        await close_deps(deps)


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.members")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    VAR.mkdir(parents=True, exist_ok=True)
    # A bench box runs on the development secrets, which only an explicit mode allows.
    base_settings = Settings.from_env({**os.environ, "YWM_ENV": "test"})
    settings = base_settings.replace(
        database_url=base_settings.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
    from db.migrate import ensure_database, upgrade
    ensure_database(settings.database_url)
    upgrade(settings.database_url)
    tokens = asyncio.run(prepare_tokens(settings, args.connections))
    owner = tokens[0]
    tokens_file = VAR / "members_tokens.txt"  # bench.auth_me writes tokens.txt
    tokens_file.write_text("\n".join(tokens) + "\n")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    report: dict[str, Any] = {"processes": args.processes, "connections": args.connections,
                              "seconds": args.seconds}

    procs = _start_web(settings, port, 1)
    try:
        _wait(f"{base}/api/v1/auth/me", owner)
        report["imports"] = measure_imports(base, owner, procs[0].pid)
    finally:
        stop_processes(procs)
    # What autovacuum does within a minute of a bulk load; without it the planner still
    # believes the tables are nearly empty and picks plans 50x slower.
    _analyze(settings.database_url)

    procs = _start_web(settings, port, args.processes)
    try:
        _wait(f"{base}/api/v1/auth/me", owner)
        groups = _request("GET", f"{base}/api/v1/groups?limit=200", owner)["data"]
        group = next(g for g in groups if g["name"] == "Group0")
        targets = {
            "GET /api/v1/auth/me (reference: auth only)": f"{base}/api/v1/auth/me",
            "GET /api/v1/members?limit=50": f"{base}/api/v1/members?limit=50",
            "GET /groups/{id}/members (first page, cached)":
                f"{base}/api/v1/groups/{group['id']}/members",
            "GET /groups/{id}/members?limit=49 (never cached)":
                f"{base}/api/v1/groups/{group['id']}/members?limit=49",
        }
        report["group_member_count"] = group["member_count"]
        report["http"] = {}
        for name, url in targets.items():
            run_wrk(wrk, url, WARMUP_SECONDS, args.connections, args.threads, tokens_file)
            cpu = cpu_seconds([p.pid for p in procs])
            result = run_wrk(wrk, url, args.seconds, args.connections, args.threads,
                             tokens_file)
            result["web_cpu_ms_per_request"] = round(
                (cpu_seconds([p.pid for p in procs]) - cpu) * 1000 / result["requests"], 2)
            report["http"][name] = result
    finally:
        stop_processes(procs)
    report["service"] = asyncio.run(service_latency(settings, group["id"]))
    (VAR / "members.json").write_text(json.dumps(report, indent=2))
    _print(report, args)
    return 0


def _print(report: dict[str, Any], args: argparse.Namespace) -> None:
    print("\nCSV import, one web process (POST /api/v1/members/import, whole file per request)\n")
    print("| file | size MiB | seconds | web CPU s | rows/s | RSS before MiB "
          "| peak RSS after MiB | created | updated | skipped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["imports"]:
        print(f"| {r['file']} | {r['bytes'] / 1048576:.1f} | {r['seconds']} | "
              f"{r['web_cpu_seconds']} | "
              f"{r['rows_per_s']:,} | {r['rss_before_mib']} | {r['peak_rss_after_mib']} | "
              f"{r['created']:,} | {r['updated']:,} | {r['skipped']:,} |")
    print(f"\n{args.processes} web processes, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.seconds}s, 100,000 members in the church, group of "
          f"{report['group_member_count']:,}\n")
    print("| request | requests/s | p50 ms | p99 ms | web CPU ms/request | non-2xx "
          "| socket errors |")
    print("|---|---|---|---|---|---|---|")
    for name, r in report["http"].items():
        errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        print(f"| {name} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | "
              f"{r['p99_us'] / 1000:.2f} | {r['web_cpu_ms_per_request']} | {r['non_2xx']} "
              f"| {errors} |")

    print("\nService calls one at a time in one process (no HTTP, no auth), 300 calls each\n")
    print("| call | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, r in report["service"].items():
        print(f"| {name} | {r['p50_ms']} | {r['p99_ms']} |")


if __name__ == "__main__":
    sys.exit(main())
