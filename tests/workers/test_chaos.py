"""Chaos: SIGKILL worker processes repeatedly during a 5,000-recipient send and flush the
Huey queue once. Every recipient still ends final, and the carrier saw at most
(texts in flight per process) × (kills) duplicates."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from server.platform import queue
from server.carriers.simulator import start_simulator
from server.services import broadcasts
from server.services.followups import enqueue
from tests.workers import procs
from tests.workers.bulk import seed_church, sql

THREADS = 3
CONCURRENCY = 8
KILLS = 3


def progress(settings: Any) -> dict[str, int]:
    return dict(sql(settings, "SELECT status, count(*) FROM message_recipients GROUP BY 1"))


async def wait_until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.gen_test(timeout=240)
async def test_kills_and_a_flushed_queue_lose_nothing(deps: Any, settings: Any) -> None:
    queue.configure(settings)
    church = seed_church(settings, members=5000, mps=5000)
    sim = await start_simulator(settings, status_webhooks=False, latency_ms=5)
    env = procs.service_env(settings, sim.url, YWM_SEND_CONCURRENCY=CONCURRENCY,
                            YWM_SEND_LEASE_SECONDS=3, YWM_RECONCILE_INTERVAL_SECONDS=1,
                            YWM_SEND_CHUNK_SIZE=50)
    workers = [procs.start_worker(env, THREADS) for _ in range(2)]
    try:
        accepted = await broadcasts.accept(deps.db, settings, church.id, None, {
            "body": "Chaos", "group_ids": [str(church.group_id)]}, None)
        message_id = accepted.body["data"]["id"]
        assert await enqueue(accepted.followups) == 1  # as POST /messages does
        for kill in range(KILLS):
            target = 1000 * (kill + 1)
            assert await wait_until(lambda: sim.state.counters["accepted"] >= target, 90)
            procs.kill(workers.pop(0))  # SIGKILL mid-send
            if kill == 1:
                queue.huey.flush()  # every queued and scheduled lane is gone too
            workers.append(procs.start_worker(env, THREADS))
        done = await wait_until(lambda: progress(settings).get("sent", 0) == 5000, 120)
        counts = progress(settings)
        assert done, counts
        assert set(counts) == {"sent"}
        summary = sim.state.summary(limit=0)
        duplicates = summary["duplicates"]["count"]
        assert summary["count"] == 5000 + duplicates
        print(f"chaos: {KILLS} kills, 1 flush, {duplicates} duplicate submissions")
        assert duplicates <= THREADS * CONCURRENCY * KILLS
        assert {m["to"] for m in sim.state.messages} == set(church.phones)
        status = sql(settings, "SELECT status FROM messages WHERE id = %s::uuid", (message_id,))
        assert status == [("completed",)]
    finally:
        for proc in workers:
            procs.stop(proc)
        await sim.stop()
        queue.huey.flush()
