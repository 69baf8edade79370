"""Faults on a real local cluster: deploy/local/cluster.sh (2 boxes, each supervisord with
`ywm web` x cores and the workers, NGINX in front, PgBouncer, Redis with a replica and
three Sentinels), live sockets through NGINX and inbound texts through NGINX meanwhile.

Sizes are modest so the module stays within a few minutes on a shared 2-core machine
(SOCKETS over CHURCHES, TEXTS_PER_SECOND); bench/cluster_faults.py runs the same
scenarios larger and records the figures. Every wait is bounded; nothing here is timed.

Order matters: the Redis failover and the rolling restart first, the SIGKILL last.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any, Iterator

import psycopg2
import pytest

from tests.deploy.cluster_support import (FINAL, LocalCluster, Seeded, run_fault,
                                          run_rolling, seed, sim_patient)

BOXES = 2
CHURCHES = 20
SOCKETS = 200
TEXTS_PER_SECOND = 50
TEXT_SECONDS = 5
BULK_RECIPIENTS = 300
MEMBERS = 5  # every church's own members; the bulk church has BULK_RECIPIENTS more
# Passed through cluster.sh to every box like any YWM_* variable: a killed worker's
# claimed recipients come back after 10 s instead of a minute, and the reconciler looks
# every 2 s, so a bulk send cut by SIGKILL finishes within the test's bound.
# One web process per box (not one per core): this machine's 2 cores also run NGINX,
# PostgreSQL, Redis and the clients.
CLUSTER_ENV = {"YWM_SEND_LEASE_SECONDS": "10", "YWM_RECONCILE_INTERVAL_SECONDS": "2",
               "YWM_LOG_LEVEL": "WARNING", "YWM_WEB_PROCESSES": "1"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    state = pathlib.Path(tempfile.mkdtemp(prefix="ywm-cluster-"))
    value = LocalCluster(state, f"ywm_faults_{os.getpid()}", CLUSTER_ENV)
    created: list[str] = []
    try:
        value.up(BOXES)
        created = [box["namespace"] for box in value.status()["boxes"] if box["namespace"]]
        sim_patient(value)
        yield value
    finally:
        try:
            value.down()
            left = value.status()
        finally:
            _drop_database(value)
            shutil.rmtree(state, ignore_errors=True)
    assert not any(left[k] for k in ("nginx", "pgbouncer", "carrier_sim")), left
    assert not any(box["running"] for box in left["boxes"]) and not left["redis"]["sentinels"]
    # `down` deleted the namespaces (and with them the veth pairs) it created
    assert left["network"] is None and not set(created) & set(_namespaces()), left


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=15)
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def _may_create_namespaces() -> bool:
    if shutil.which("ip") is None:
        return False
    probe = f"ywm-test-probe-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True,
                      timeout=15).returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=15)
    return True


def _drop_database(cluster: LocalCluster) -> None:
    from server.devtools.cluster import Cluster
    url = Cluster(cluster.state_dir).direct_database_url()
    conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{cluster.db}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="module")
def seeded(cluster: LocalCluster) -> Seeded:
    return asyncio.run(seed(cluster.settings(), CHURCHES, MEMBERS, BULK_RECIPIENTS))


def _assert_streams_whole(report: dict[str, Any]) -> None:
    assert report["caught_up"], report
    assert report["failed_clients"] == 0, report
    assert (report["missing"], report["gaps"], report["duplicates"], report["resyncs"]) == (
        0, 0, 0, 0), report


def test_each_box_runs_on_its_own_address(cluster: LocalCluster) -> None:
    """A namespace per box where this user may create one (YWM_CLUSTER_NETNS=0 says
    not to), else a loopback address per box."""
    from server.devtools.cluster import Cluster
    status = cluster.status()
    switched_off = os.environ.get("YWM_CLUSTER_NETNS", "").strip().lower() in (
        "0", "false", "no", "off")
    expected = "netns" if not switched_off and _may_create_namespaces() else "loopback"
    assert status["network"] == expected, status
    hosts = [box["address"].rsplit(":", 1)[0] for box in status["boxes"]]
    assert len(set(hosts)) == BOXES and all(box["health"] for box in status["boxes"])
    if expected == "loopback":
        assert hosts == [f"127.0.1.{k}" for k in range(1, BOXES + 1)], status
        return
    records = Cluster(cluster.state_dir).state["records"]
    for box, host in zip(status["boxes"], hosts):
        assert host.startswith("10.213.") and box["namespace"] in _namespaces(), status
        pids = subprocess.run(["ip", "netns", "pids", box["namespace"]], capture_output=True,
                              text=True, timeout=15).stdout.split()
        assert str(records[f"box-{box['box']}"]["pid"]) in pids  # supervisord runs inside


@pytest.mark.gen_test(timeout=300)
async def test_redis_failover_the_app_follows_sentinel_and_streams_miss_nothing(
        cluster: LocalCluster, seeded: Seeded) -> None:
    before = cluster.status()["redis"]["master"]
    report = await run_fault(cluster, seeded, ["failover-redis"], SOCKETS, TEXTS_PER_SECOND,
                             TEXT_SECONDS, bulk=True)
    print("failover-redis:", report)
    after = cluster.status()
    assert after["redis"]["master"] != before and after["ready"], after
    _assert_streams_whole(report)
    assert report["texts_lost"] == 0, report  # every text answered 2xx is stored
    # A bulk send across the switch completes: a dispatch task lost with the old master
    # is enqueued again by the reconciler from the recipients still queued.
    assert set(report["bulk"]) <= set(FINAL), report["bulk"]
    assert sum(report["bulk"].values()) == BULK_RECIPIENTS + MEMBERS


@pytest.mark.gen_test(timeout=300)
async def test_rolling_restart_fails_no_request_and_loses_no_event(
        cluster: LocalCluster, seeded: Seeded) -> None:
    report = await run_rolling(cluster, seeded, SOCKETS, TEXTS_PER_SECOND)
    print("rolling restart:", report)
    _assert_streams_whole(report)
    assert report["resumes"] >= SOCKETS  # every socket moved at least once (1001)
    assert report["texts_failed"] == 0, report["failed_answers"]
    assert report["texts_lost"] == 0


@pytest.mark.gen_test(timeout=300)
async def test_kill_box_sockets_resume_on_the_other_box_and_nothing_is_lost(
        cluster: LocalCluster, seeded: Seeded) -> None:
    report = await run_fault(cluster, seeded, ["kill-box", "1"], SOCKETS, TEXTS_PER_SECOND,
                             TEXT_SECONDS, bulk=True)
    print("kill-box:", report)
    status = cluster.status()
    assert [b["running"] for b in status["boxes"]] == [False, True] and status["ready"]
    _assert_streams_whole(report)
    assert report["resumes"] > 0, report  # box 1 held sockets (least_conn spreads them)
    assert report["texts_lost"] == 0, report  # every text answered 2xx is stored
    assert set(report["bulk"]) <= set(FINAL), report["bulk"]  # every recipient final
    assert sum(report["bulk"].values()) == BULK_RECIPIENTS + MEMBERS
    # A recipient the killed worker had sent but not recorded is sent again: at most what
    # was in flight (lanes x concurrency per lane).
    assert report["carrier_duplicates"] <= 4 * 16, report
