"""The task queue speaks JSON, never pickle (issue 10, item 14).

Write access to Redis must not mean code execution in workers: a pickled payload pushed
onto the queue's Redis list is refused by a real `ywm worker` consumer (logged, not
unpickled, not run), while a task enqueued the normal way still runs.
"""
from __future__ import annotations

import datetime as dt
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
from huey.registry import Message
from huey.utils import Error

from server.platform import queue
from server.platform.redis import ping_key

WAIT_SECONDS = 30  # a consumer process starts and runs one task well within this


class _TouchOnLoad:
    """Unpickling this creates a file: a stand-in for any code an attacker would run."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture
def test_queue(settings, clean):
    queue.configure(settings)
    yield queue.huey
    queue.huey.flush()


def _env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "YWM_QUEUE_NAME": settings.queue_name, "YWM_ENV": "test",
                "YWM_LOG_LEVEL": "WARNING"})
    return env


def test_messages_results_and_times_round_trip(test_queue) -> None:
    serializer = test_queue.serializer
    eta = dt.datetime(2026, 12, 3, 6, 30, 0, 123456)
    message = Message("id-1", "ops.ping", eta, 3, 1, None, ("a", "b"), {"k": [1, 2.5]},
                      None, None, dt.timedelta(seconds=90), None, None, None, None)
    raw = serializer.serialize(message)
    assert not raw.startswith(b"\x80")  # pickle's first byte
    assert serializer.deserialize(raw) == message
    error = Error({"error": "boom", "retries": 0, "traceback": "", "task_id": "id-1"})
    assert serializer.deserialize(serializer.serialize(error)) == error
    assert serializer.deserialize(serializer.serialize((eta, True))) == [eta, True]


def test_a_task_argument_that_is_not_json_is_refused_at_enqueue(test_queue) -> None:
    from workers import ops
    with pytest.raises(TypeError, match="ids as strings"):
        ops.ping(uuid.uuid4())
    assert test_queue.pending_count() == 0


def test_worker_refuses_a_pickled_payload_and_runs_the_next_task(settings, test_queue,
                                                                 tmp_path) -> None:
    from workers import ops
    marker = tmp_path / "unpickled"
    bad_token, good_token = uuid.uuid4().hex, uuid.uuid4().hex
    # A well-formed huey message for a real task, pickled as huey's default serializer
    # would write it, carrying an argument whose unpickling has a side effect.
    evil = Message(uuid.uuid4().hex, "ops.ping", None, 0, None, None,
                   (bad_token, _TouchOnLoad(marker)), {}, None, None, None, None, None,
                   None, None)
    client = redis.Redis.from_url(settings.redis_url)
    client.lpush(test_queue.storage.queue_key, pickle.dumps(evil))  # taken first (FIFO)
    ops.ping(good_token)
    proc = subprocess.Popen([sys.executable, "-m", "server", "worker", "-w", "1", "-n"],
                            env=_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while (client.get(ping_key(good_token)) is None and time.monotonic() < deadline
               and proc.poll() is None):
            time.sleep(0.1)
        assert client.get(ping_key(good_token)) is not None  # the normal task ran
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=WAIT_SECONDS)[0].decode()
    try:
        assert client.get(ping_key(bad_token)) is None  # never run
    finally:
        client.close()
    assert not marker.exists()  # never unpickled
    assert "refused a queue payload that is not JSON" in output, output
    assert test_queue.pending_count() == 0
