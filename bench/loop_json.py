"""uvloop and orjson against the defaults (asyncio, ujson), measured in one run, alternating.

`python -m bench.loop_json [--rounds 2] [--parts callgrind,auth_me,carriers]
[--seconds 10] [--duration 10] [--variants asyncio+ujson,uvloop+ujson,asyncio+orjson,uvloop+orjson]`

Each variant sets YWM_EVENT_LOOP and YWM_JSON_ENCODER for the web processes; within a round
every part runs each variant in turn, so a change of load on the machine hits all of them.

- callgrind: instructions per request in one web process under callgrind (load-independent;
  bench/logging_cost.py's measure, request line off): GET /api/v1/auth/me (small body) and
  GET /api/v1/users (16 users: a longer JSON body).
- auth_me: `python -m bench --rounds 1` (wrk against /auth/me and a bare Tornado hello on
  all cores, issue 2's benchmark): requests/s, p99, and our share of the hello's rate.
- carriers: `python -m bench.carriers_inbound --duration N` (signed durable webhooks, mixed):
  webhooks/s, p99, web and PostgreSQL CPU per webhook.

Output: Markdown tables on stdout and var/bench/loop_json.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from bench.auth_me import BENCH_DB, VAR, _free_port, prepare_tokens
from bench.logging_cost import measure
from bench.procs import exit_on_sigterm
from server.devtools.dev import ROOT
from server.platform.settings import Settings

VARIANTS = ("asyncio+ujson", "uvloop+ujson", "asyncio+orjson", "uvloop+orjson")
PARTS = ("callgrind", "auth_me", "carriers")
CALLGRIND_REQUESTS = 300


def _env(variant: str) -> dict[str, str]:
    loop, encoder = variant.split("+")
    return {"YWM_EVENT_LOOP": loop, "YWM_JSON_ENCODER": encoder}


def _callgrind(settings: Settings, tokens: list[str], variant: str) -> dict[str, float]:
    env = _env(variant)
    return {
        "auth_me_ir": measure(settings, "callgrind", "WARNING", "/api/v1/auth/me", tokens,
                              CALLGRIND_REQUESTS, env),
        # the owner's token only: the users list is for owners and admins
        "users_ir": measure(settings, "callgrind", "WARNING", "/api/v1/users", tokens[:1],
                            CALLGRIND_REQUESTS, env)}


def _run(command: list[str], variant: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **_env(variant))
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)


def _auth_me(seconds: int, variant: str) -> dict[str, float]:
    done = _run([sys.executable, "-m", "bench", "--rounds", "1", "--seconds", str(seconds)],
                variant)
    if done.returncode:
        raise SystemExit(f"bench: python -m bench failed under {variant}:\n{done.stderr}")
    report = json.loads((VAR / "auth_me.json").read_text())
    hello, me = report["results"]["hello"][0], report["results"]["auth_me"][0]
    return {"hello_rps": hello["rps"], "hello_p99_ms": hello["p99_us"] / 1000,
            "auth_me_rps": me["rps"], "auth_me_p99_ms": me["p99_us"] / 1000,
            "auth_me_share": round(me["rps"] / hello["rps"] * 100, 1),
            "auth_me_non_2xx": me["non_2xx"]}


def _carriers(duration: int, variant: str) -> dict[str, Any]:
    # a free port: another carriers_inbound run on the box would hold the default one
    done = _run([sys.executable, "-m", "bench.carriers_inbound", "--duration", str(duration),
                 "--port", str(_free_port())], variant)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise SystemExit(f"bench: carriers_inbound failed under {variant}:\n{done.stderr}")
    report = json.loads(lines[-1])
    return {key: report[key] for key in (
        "rate_per_s", "p50_ms", "p99_ms", "web_cpu_ms_per_webhook", "pg_cpu_ms_per_webhook",
        "non_2xx", "errors")} | {"check_ok": report["check"]["ok"]}


def _table(results: dict[str, dict[str, list[dict[str, Any]]]], part: str,
           variants: list[str]) -> None:
    rows = results[part]
    keys = list(dict.fromkeys(k for v in variants for row in rows[v] for k in row))
    print(f"\n### {part}\n")
    print("| variant | round | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for variant in variants:
        for n, row in enumerate(rows[variant], 1):
            cells = [f"{row[k]:,.0f}" if isinstance(row.get(k), float) and row[k] > 1000
                     else str(row.get(k, "")) for k in keys]
            print(f"| {variant} | {n} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.loop_json",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run of auth_me")
    parser.add_argument("--duration", type=int, default=10, help="per carriers_inbound run")
    args = parser.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    variants = [x for x in args.variants.split(",") if x]
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"bench: unknown variant {variant!r}; one of {VARIANTS}")
    VAR.mkdir(parents=True, exist_ok=True)
    settings = None
    if "callgrind" in parts:
        base = Settings.from_env({**os.environ, "YWM_ENV": "test"})
        settings = base.replace(
            database_url=base.database_url.rsplit("/", 1)[0] + "/" + BENCH_DB)
        from db.migrate import ensure_database, upgrade
        ensure_database(settings.database_url)
        upgrade(settings.database_url)
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        part: {v: [] for v in variants} for part in parts}
    for _ in range(args.rounds):
        for part in parts:
            for variant in variants:
                if part == "callgrind":
                    assert settings is not None
                    # fresh sessions: a variant under callgrind takes minutes, and access
                    # tokens live YWM_ACCESS_TOKEN_TTL (15 min)
                    tokens = asyncio.run(prepare_tokens(settings, 16))
                    row: dict[str, Any] = _callgrind(settings, tokens, variant)
                else:
                    try:  # a run that fails on a busy box is reported, not fatal
                        row = (_auth_me(args.seconds, variant) if part == "auth_me"
                               else _carriers(args.duration, variant))
                    except SystemExit as failed:
                        print(failed, file=sys.stderr)
                        row = {"failed": str(failed).splitlines()[-1][:80]}
                results[part][variant].append(row)
                print(f"{part} {variant}: {row}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    report = {"rounds": args.rounds, "seconds": args.seconds, "duration": args.duration,
              "load_before": load_before, "load_after": load_after, "results": results}
    (VAR / "loop_json.json").write_text(json.dumps(report, indent=2))
    print(f"\n{args.rounds} round(s), variants alternating; load (1/5/15 min) "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after")
    for part in parts:
        _table(results, part, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
