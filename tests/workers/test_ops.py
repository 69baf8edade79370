"""A real `ywm worker` consumer process runs a task enqueued from here, and stops
cleanly on SIGINT; the partition upkeep task respects its cluster-wide lock."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import redis

from db.partitions import months_to_cover, partition_name
from server.platform import queue
from server.platform.redis import connect_sync, ping_key, sync_lock


def _env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "YWM_QUEUE_NAME": settings.queue_name, "YWM_ENV": "test",
                "YWM_LOG_LEVEL": "WARNING"})
    return env


@pytest.fixture
def test_queue(settings, clean):
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


def test_worker_process_runs_an_enqueued_task(settings, test_queue):
    from workers import ops
    token = uuid.uuid4().hex
    ops.ping(token)  # enqueued before the consumer exists: it must pick it up
    proc = subprocess.Popen([sys.executable, "-m", "server", "worker", "-w", "2", "-n"],
                            env=_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        value = None
        while value is None and time.monotonic() < deadline and proc.poll() is None:
            value = client.get(ping_key(token))
            time.sleep(0.1)
        assert value is not None and value.startswith("pong "), proc.stdout.read1()
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)  # graceful: finish running tasks, then exit
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output


def test_partition_upkeep_runs_only_without_the_lock(settings, test_queue):
    from workers import ops
    today = dt.datetime.now(dt.timezone.utc).date()
    newest = partition_name("events", months_to_cover(today)[-1])
    _sql(settings.database_url, f'DROP TABLE "{newest}"')
    client = connect_sync(settings.redis_url)
    lock = sync_lock(client, "ops.ensure_partitions", 30)
    assert lock.acquire()
    try:
        assert ops.upkeep_partitions.call_local() == []  # another run holds the slot
    finally:
        lock.release()
        client.close()
    assert ops.upkeep_partitions.call_local() == [newest]


def _sql(url: str, statement: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def test_a_task_interrupted_by_shutdown_is_scheduled_again(test_queue):
    from workers import ops
    from workers.runtime import reschedule_interrupted
    task = ops.ping.s("again")
    reschedule_interrupted("interrupted", task)
    scheduled = test_queue.scheduled()
    assert [t.id for t in scheduled] == [task.id]
    assert scheduled[0].name == task.name and scheduled[0].args == ("again",)
