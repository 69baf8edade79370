"""The Huey instance every task registers on (after-commit enqueues go through
server/services/followups.py).

One `RedisExpireHuey` per process. RedisExpireHuey (not RedisHuey) because its
`lock_task(..., ttl=)` locks are plain keys with an expiry that works on Redis 7.0
(LIBRARIES.md §4b); results expire instead of piling up.

The task decorators need the instance at import time, before any settings exist, so it
starts unconfigured (every use fails, naming the fix) and the process's composition root
hands it the one `Settings` it built: `configure(settings)` in `ywm` (server/cli.py) for
every command, `open_deps` for a process that did not, the test session in conftest.

Everything Huey writes to Redis (task messages, results, revocations, locks) goes through
`JsonSerializer`, never pickle: unpickling runs code, so with pickle anyone who can write
to Redis could run code in every worker (docs/decisions.md, "Task queue serializer").
Task arguments are therefore JSON values: ids travel as strings.

Every task message also carries, under `ywm`, when it was enqueued (`at`, the queue-age
gauge of server/services/queue_admin.py) and, while tracing is on, the W3C trace context
of the span that enqueued it (`trace`): `TracedHuey` adds both in one place, so no task
signature changes, and runs each task in a span parented on that context
(server/platform/tracing.py). Consumers without this code ignore the extra key.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any, NamedTuple

from huey import RedisExpireHuey
from huey.registry import Message
from huey.serializer import Serializer
from huey.storage import RedisExpireStorage, RedisStorage
from huey.utils import Error

from server.platform.redis import queue_pool_for
from server.platform import tracing
from server.platform.settings import Settings

RESULT_TTL_SECONDS = 3600  # results are for debugging; durable state lives in PostgreSQL

log = logging.getLogger("ywm.queue")


class RefusedPayload(ValueError):
    """A queue payload that is not one of ours (not our JSON): dropped, never run."""


class JsonSerializer(Serializer):
    """Huey's serializer hook, writing JSON instead of pickle.

    Huey stores a few Python types besides plain JSON: its task `Message` and result
    `Error` namedtuples, and datetimes/timedeltas (a task's eta and expiry, revocations).
    Each travels as a one-key object tagged `huey.<type>`; tuples become lists (a message's
    args are made a tuple again). Anything else is a `TypeError` at enqueue time, so a
    task argument that is not JSON (a UUID, an object) fails where it is written.
    """

    def _serialize(self, data: Any) -> bytes:
        return json.dumps(_tag(data), separators=(",", ":"), allow_nan=False).encode()

    def _deserialize(self, data: bytes) -> Any:
        try:
            return json.loads(data, object_hook=_untag)
        except (ValueError, TypeError, UnicodeDecodeError):
            log.error("refused a queue payload that is not JSON (%d bytes, starts %r): "
                      "not run", len(data), bytes(data[:2]))
            raise RefusedPayload("queue payload is not JSON; refused") from None


class Stamped(NamedTuple):
    """A task message plus what we add to it (`ywm`: enqueue time, trace context)."""
    message: Message
    meta: dict[str, Any]


def _tag(value: Any) -> Any:
    if isinstance(value, Stamped):
        tagged = _tag(value.message)
        tagged["huey.message"]["ywm"] = _tag(value.meta)
        return tagged
    if isinstance(value, Message):
        return {"huey.message": {name: _tag(getattr(value, name))
                                 for name in Message._fields}}
    if isinstance(value, Error):
        return {"huey.error": _tag(value.metadata)}
    if isinstance(value, dt.datetime):
        return {"huey.datetime": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"huey.timedelta": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [_tag(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("queue data: dict keys must be strings")
        return {key: _tag(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"queue data must be JSON values (ids as strings), not "
                    f"{type(value).__name__}")


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    (key, value), = obj.items()
    if key == "huey.message":
        fields = {name: value.get(name) for name in Message._fields}
        fields["args"] = tuple(fields["args"] or ())
        meta = value.get("ywm")
        message = Message(**fields)
        return Stamped(message, meta) if isinstance(meta, dict) else message
    if key == "huey.error":
        return Error(value)
    if key == "huey.datetime":
        return dt.datetime.fromisoformat(value)
    if key == "huey.timedelta":
        return dt.timedelta(seconds=value)
    return obj


class QueueNotConfigured(RuntimeError):
    """The process used the queue before handing it its settings."""


class _Unconfigured:
    """Stands in for the Redis storage until `configure()`: a task enqueued before then
    fails loudly instead of landing on some default Redis queue."""

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        self.name = name

    def close(self) -> None:
        pass

    def __getattr__(self, attr: str) -> Any:
        raise QueueNotConfigured(
            f"the task queue has no settings yet (storage.{attr}): the process must call "
            "server.platform.queue.configure(settings) first, as `ywm` does")


class TracedHuey(RedisExpireHuey):
    """RedisExpireHuey whose task messages carry their enqueue time and trace context."""

    def enqueue(self, task: Any) -> Any:
        with tracing.producing(task.name, self.name):
            return super().enqueue(task)

    def add_schedule(self, task: Any) -> None:
        with tracing.producing(task.name, self.name):
            super().add_schedule(task)

    def serialize_task(self, task: Any) -> bytes:
        meta: dict[str, Any] = {"at": time.time()}
        # The enqueuing span's context; else (the scheduler moving a due task, an early
        # task put back) the context the task already carried.
        trace = tracing.inject() or getattr(task, "trace", None)
        if trace:
            meta["trace"] = trace
        message = self._registry.create_message(task)
        return self.serializer.serialize(Stamped(message, meta))  # type: ignore[no-any-return]

    def deserialize_task(self, data: bytes) -> Any:
        value = self.serializer.deserialize(data)
        message, meta = (value.message, value.meta) if isinstance(value, Stamped) \
            else (value, {})
        task = self._registry.create_task(message)
        task.enqueued_at = meta.get("at")  # None: enqueued by an older release
        task.trace = meta.get("trace")
        return task

    def _execute(self, task: Any, timestamp: Any) -> Any:
        # Huey's one path for running a task (retries and errors included).
        with tracing.consuming(task.name, task.id, getattr(task, "trace", None)):
            return super()._execute(task, timestamp)


def oldest_waiting_age(now: float | None = None) -> float | None:
    """Seconds the longest-waiting task has waited to be taken (blocking Redis): the
    pending list's oldest entry since it was enqueued, or the schedule's earliest entry
    since it fell due (the consumers' schedulers move due tasks every second). 0 when
    nothing waits; None when the oldest task carries no enqueue time."""
    now = time.time() if now is None else now
    ages = [0.0]
    oldest = huey.storage.enqueued_items(1)
    if oldest:
        at = huey.deserialize_task(oldest[0]).enqueued_at
        if at is None:
            return None
        ages.append(now - float(at))
    first = huey.storage.scheduled_items(1)
    if first:
        eta = huey.deserialize_task(first[0]).eta  # naive UTC (utc=True)
        if eta is not None:
            ages.append(now - eta.replace(tzinfo=dt.timezone.utc).timestamp())
    return max(ages)


huey = TracedHuey(
    "unconfigured", storage_class=_Unconfigured, serializer=JsonSerializer(),
    # Result.get() would otherwise raise on the first failed attempt of a retried task.
    store_intermediate_errors=False, utc=True)
_settings: Settings | None = None


def configured() -> bool:
    return _settings is not None


def settings() -> Settings:
    """The settings the queue (and so every worker thread) was configured with."""
    if _settings is None:
        raise QueueNotConfigured("the task queue has no settings yet")
    return _settings


def configure(new_settings: Settings) -> None:
    """Point the Huey instance at `new_settings`' Redis URL and queue name."""
    global _settings
    _settings = new_settings
    old = huey.storage
    huey.name = new_settings.queue_name
    huey.storage_class = RedisExpireStorage
    # Behind Sentinel the pool finds the master on each connect (server/platform/redis.py).
    huey.storage_kwargs = {"connection_pool": queue_pool_for(new_settings),
                           "expire_time": RESULT_TTL_SECONDS}
    huey.storage = huey.create_storage()
    if isinstance(old, RedisStorage):
        old.conn.close()
