"""Fair share and cluster-wide scheduling with real worker processes.

- A big broadcast accepted first does not hold the worker pool: lanes work in time
  slices and re-enqueue at the back, so a small broadcast of another church accepted
  later finishes first.
- Three consumers ticking the scheduler produce exactly one broadcast per recurring
  occurrence.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from server.platform import queue
from server.carriers.simulator import start_simulator
from server.services import broadcasts, recurring
from tests.workers import procs
from tests.workers.bulk import seed_church, sql
from workers import sends


async def _completed(settings: Any, message_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = sql(settings, "SELECT completed_at FROM messages WHERE id = %s::uuid",
                  (message_id,))
        if row and row[0][0]:
            return row[0][0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"broadcast {message_id} did not complete")


@pytest.mark.gen_test(timeout=120)
async def test_a_small_church_is_not_starved_by_a_big_broadcast(deps: Any,
                                                                settings: Any) -> None:
    queue.configure(settings)
    big = seed_church(settings, members=600, mps=50)
    small = seed_church(settings, members=20, mps=50, block=1)
    sim = await start_simulator(settings, status_webhooks=False)
    env = procs.service_env(settings, sim.url)
    ids = []
    for church in (big, small):
        accepted = await broadcasts.accept(deps.db, settings, church.id, None, {
            "body": "Hello", "group_ids": [str(church.group_id)]}, None)
        ids.append(accepted.body["data"]["id"])
        sends.start_dispatch(str(church.id), ids[-1])  # big's lanes are first in line
    worker = procs.start_worker(env, threads=1)
    try:
        small_done = await _completed(settings, ids[1], 60)
        big_done = await _completed(settings, ids[0], 60)
        assert small_done < big_done
    finally:
        procs.stop(worker)
        await sim.stop()
        queue.huey.flush()


@pytest.mark.gen_test(timeout=120)
async def test_three_consumers_one_broadcast_per_occurrence(deps: Any, settings: Any) -> None:
    queue.configure(settings)
    church = seed_church(settings, members=3)
    item = await recurring.create(deps.db, church.id, None, {
        "body": "Weekly", "group_ids": [str(church.group_id)], "schedule": "0 9 * * 0",
        "timezone": "America/New_York"})
    sim = await start_simulator(settings, status_webhooks=False)
    env = procs.service_env(settings, sim.url, YWM_RECONCILE_INTERVAL_SECONDS=0.3)
    workers = [procs.start_worker(env, threads=2) for _ in range(3)]
    try:
        for occurrence in range(3):  # make an occurrence due, wait until it has run
            due = datetime.now(timezone.utc) - timedelta(seconds=5 + occurrence)
            sql(settings, "UPDATE recurring_messages SET next_run_at = %s", (due,))
            deadline = time.monotonic() + 30
            while sql(settings, "SELECT count(*) FROM recurring_runs")[0][0] <= occurrence:
                assert time.monotonic() < deadline, "occurrence never ran"
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # several more ticks by every consumer: nothing new
        runs = sql(settings, "SELECT outcome, message_id FROM recurring_runs")
        assert len(runs) == 3 and {r[0] for r in runs} == {"sent"}
        messages = sql(settings, "SELECT id FROM messages WHERE recurring_id = %s::uuid",
                       (item["id"],))
        assert sorted(m[0] for m in messages) == sorted(r[1] for r in runs)
        deadline = time.monotonic() + 30
        while sim.state.counters["accepted"] < 9 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert sim.state.summary(limit=0)["count"] == 9  # 3 occurrences × 3 members
    finally:
        for worker in workers:
            procs.stop(worker)
        await sim.stop()
        queue.huey.flush()
