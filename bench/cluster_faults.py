"""Issue 14 benchmark: what clients see when a box dies, Redis fails over, or the boxes
restart one by one, on a real local cluster (deploy/local/cluster.sh).

`python -m bench.cluster_faults [--boxes 2] [--churches 20] [--sockets 500] [--rate 50]
                                [--seconds 10] [--bulk 300] [--web-processes N]
                                [--only failover-redis,rolling,kill-box]`

One cluster in a private state directory and database: `--boxes` boxes behind NGINX,
PgBouncer, Redis with a replica and three Sentinels, the carrier simulator. `--churches`
churches get one admin session each; `--sockets` live sockets through NGINX, spread over
them, resume from their last event id whenever they close. Signed Telnyx inbound texts
go through NGINX at `--rate` per second for `--seconds`, then, in order:

- failover-redis: SENTINEL FAILOVER mid-load;
- rolling: `restart-box` of every box in turn, texts flowing the whole time;
- kill-box: SIGKILL of box 1 mid-load, while a `--bulk`-recipient send is in progress.

Per scenario: resume time p50/p99/max (close seen → `hello` on the new socket), resumes,
events replayed (what resumed sockets had missed), gaps, duplicates, ids missing against
PostgreSQL, texts answered non-2xx, texts answered 2xx but not stored, and for kill-box
the bulk send's final recipient states and the texts the carrier got twice. Results and
the machine's load average: var/bench/cluster_faults.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any

from bench.procs import exit_on_sigterm
from tests.deploy.cluster_support import (LocalCluster, run_fault, run_rolling, seed,
                                          sim_patient)

OUT = pathlib.Path(__file__).resolve().parents[1] / "var" / "bench"
SCENARIOS = ("failover-redis", "rolling", "kill-box")


async def _scenarios(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    seeded = await seed(cluster.settings(), args.churches, 5, args.bulk)
    results: dict[str, Any] = {}
    for name in args.only:
        started, load = time.monotonic(), os.getloadavg()[0]
        if name == "failover-redis":
            report = await run_fault(cluster, seeded, ["failover-redis"], args.sockets,
                                     args.rate, args.seconds)
        elif name == "rolling":
            report = await run_rolling(cluster, seeded, args.sockets, args.rate)
        else:
            report = await run_fault(cluster, seeded, ["kill-box", "1"], args.sockets,
                                     args.rate, args.seconds, bulk=args.bulk > 0)
        report.update(seconds=round(time.monotonic() - started, 1), load_before=load,
                      load_after=os.getloadavg()[0])
        results[name] = report
        print(name, json.dumps(report), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=2)
    parser.add_argument("--churches", type=int, default=20)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bulk", type=int, default=300)
    parser.add_argument("--web-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", type=lambda v: v.split(","), default=list(SCENARIOS))
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    exit_on_sigterm()
    os.environ.setdefault("YWM_ENV", "test")
    state = pathlib.Path(tempfile.mkdtemp(prefix="ywm-bench-cluster-"))
    cluster = LocalCluster(state, f"ywm_bench_faults_{os.getpid()}", {
        "YWM_SEND_LEASE_SECONDS": "10", "YWM_RECONCILE_INTERVAL_SECONDS": "2",
        "YWM_LOG_LEVEL": "WARNING", "YWM_WEB_PROCESSES": str(args.web_processes)})
    started = time.monotonic()
    try:
        cluster.up(args.boxes)
        sim_patient(cluster)
        up_seconds = round(time.monotonic() - started, 1)
        results = asyncio.run(_scenarios(cluster, args))
    finally:
        try:
            cluster.down()
        finally:
            from tests.deploy.test_cluster_faults import _drop_database
            _drop_database(cluster)
            shutil.rmtree(state, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"args": vars(args), "cores": os.cpu_count(), "up_seconds": up_seconds,
               "results": results}
    (OUT / "cluster_faults.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
