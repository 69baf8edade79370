"""A Redis outage in the middle of a bulk send duplicates nothing: a private Redis (with
its append-only file) is SIGKILLed while a real worker sends 300 texts, and restarted a
few seconds later. Every member gets exactly one text, every recipient ends final, and no
send task dies on a Redis error (the carrier's answers are in PostgreSQL before any Redis
step, and every Redis step of the send path fails soft)."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable

import pytest
import redis

from server.carriers.simulator import start_simulator
from server.platform import queue
from server.services import broadcasts
from server.services.followups import enqueue
from tests.workers import procs
from tests.workers.bulk import seed_church, sql

MEMBERS = 300
OUTAGE_SECONDS = 4.0


class PrivateRedis:
    """A redis-server of this test alone (never the shared one), persisted by its AOF."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ywm-outage-redis-")
        self.port = procs.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
            raise RuntimeError("private redis-server did not start")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return check()


def start_worker(env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    """A worker that runs the reconciler, its log kept to read which tasks failed."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "server", "worker", "-w", "3"],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def failed_send_tasks(log_path: str) -> list[str]:
    """Ids of send tasks (`sends.*`) huey logged as dying on an unhandled exception."""
    with open(log_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    send_ids = set(re.findall(r"sends\.[a-z_]+: ([0-9a-f-]{36})", text))
    died = set(re.findall(r"Unhandled exception in task ([0-9a-f-]{36})", text))
    return sorted(send_ids & died)


@pytest.mark.gen_test(timeout=240)
async def test_a_redis_outage_mid_send_duplicates_nothing(deps: Any, settings: Any) -> None:
    private = PrivateRedis()
    private.start()
    outage_settings = settings.replace(redis_url=private.url)
    queue.configure(outage_settings)
    church = seed_church(settings, members=MEMBERS, mps=30)
    sim = await start_simulator(settings, status_webhooks=False)
    log_path = os.path.join(private.dir, "worker.log")
    env = procs.service_env(outage_settings, sim.url, YWM_LOG_LEVEL="INFO",
                            YWM_SEND_CONCURRENCY=8, YWM_SEND_LEASE_SECONDS=10,
                            YWM_SEND_RETRY_BASE_SECONDS=1, YWM_RECONCILE_INTERVAL_SECONDS=1)
    worker = start_worker(env, log_path)
    try:
        accepted = await broadcasts.accept(deps.db, settings, church.id, None, {
            "body": "Outage", "group_ids": [str(church.group_id)]}, None)
        message_id = accepted.body["data"]["id"]
        assert await enqueue(accepted.followups) == 1
        assert await wait_until(lambda: sim.state.counters["accepted"] >= 60, 60)
        private.kill()  # SIGKILL mid-send: queue, heartbeats, throttle buckets all gone
        await asyncio.sleep(OUTAGE_SECONDS)
        assert sim.state.counters["accepted"] < MEMBERS  # the outage was mid-send
        private.start()  # back with its append-only file

        def finished() -> bool:
            pending = sql(settings, "SELECT count(*) FROM message_recipients WHERE status "
                                    "IN ('queued', 'sending', 'retrying')")[0][0]
            return pending == 0
        assert await wait_until(finished, 150), sql(
            settings, "SELECT status, count(*) FROM message_recipients GROUP BY 1")
        statuses = dict(sql(settings, "SELECT status, count(*) FROM message_recipients "
                                      "GROUP BY 1"))
        assert statuses == {"sent": MEMBERS}
        per_phone: dict[str, int] = {}
        for sent in sim.state.messages:
            per_phone[sent["to"]] = per_phone.get(sent["to"], 0) + 1
        assert per_phone == {phone: 1 for phone in church.phones}
        assert await wait_until(lambda: sql(
            settings, "SELECT status FROM messages WHERE id = %s",
            (uuid.UUID(message_id),)) == [("completed",)], 30)
        assert worker.poll() is None
        assert failed_send_tasks(log_path) == []
    finally:
        procs.stop(worker)
        await sim.stop()
        queue.configure(settings)
        private.remove()
