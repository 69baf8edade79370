"""The async bridge for Huey worker threads: one event loop and one Deps per thread.

Services are async (aiopg, redis.asyncio); Huey runs tasks in threads. Each worker thread
opens its own loop and Deps at start-up (huey docs/shared_resources.rst) through the same
lifecycle as the web process (server/deps.py), and closes everything it opened at
shutdown, carrier clients included. `run(fn)` runs `fn(deps)` to completion on that loop.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from typing import Any, Awaitable, Callable, TypeVar

import redis.exceptions
from huey.api import Task
from huey.signals import SIGNAL_INTERRUPTED

from server.deps import Deps, close_deps, drain, open_deps, start
from server.platform import queue
from server.platform.queue import huey
from server.platform.redis import sync_client_for, sync_lock

T = TypeVar("T")
log = logging.getLogger("ywm.workers")
# A task cut off by shutdown runs again this long after: on another consumer, or on this
# one once restarted (scheduled, not enqueued: an idle thread of the dying consumer could
# take an enqueued task and lose it again, LIBRARIES.md §4d).
INTERRUPTED_RETRY_SECONDS = 5
# Huey's graceful stop has let running tasks finish before the shutdown hook runs; this
# only bounds the lifecycle's own drain step.
DRAIN_SECONDS = 5.0

_local = threading.local()


async def _open() -> Deps:
    deps = await open_deps(queue.settings(), "worker")
    await start(deps)
    return deps


async def _close(deps: Deps) -> None:
    await drain(deps, DRAIN_SECONDS)
    await close_deps(deps)


def _new_loop() -> asyncio.AbstractEventLoop:
    # YWM_EVENT_LOOP's kind, as server/main.py's new_event_loop for the web process
    if queue.settings().event_loop == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@huey.on_startup()
def open_runtime() -> None:
    if getattr(_local, "deps", None) is None:
        loop = _new_loop()
        _local.loop, _local.deps = loop, loop.run_until_complete(_open())


@huey.on_shutdown()
def close_runtime() -> None:
    deps, loop = getattr(_local, "deps", None), getattr(_local, "loop", None)
    if deps is None or loop is None:
        return
    try:
        loop.run_until_complete(_close(deps))
    finally:
        loop.close()
        _local.deps = _local.loop = None


@huey.signal(SIGNAL_INTERRUPTED)
def reschedule_interrupted(signal: str, task: Task, *args: Any, **kwargs: Any) -> None:
    """Tasks are idempotent, so a task interrupted by a stop simply runs again."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # huey's naive UTC
    task.eta = now + dt.timedelta(seconds=INTERRUPTED_RETRY_SECONDS)
    huey.add_schedule(task)
    log.warning("task %s (%s) interrupted by shutdown; runs again in %ss",
                task.name, task.id, INTERRUPTED_RETRY_SECONDS)


def run(fn: Callable[[Deps], Awaitable[T]]) -> T:
    """Run `fn(deps)` on this thread's loop, opening the runtime on first use."""
    open_runtime()
    return _local.loop.run_until_complete(fn(_local.deps))  # type: ignore[no-any-return]


def run_exclusive(lock_name: str, ttl_seconds: float, fn: Callable[[], T]) -> T | None:
    """Call `fn()` only while holding the cluster-wide Redis lock `lock_name` (with a TTL,
    so a crashed holder frees it); None when another worker holds it (periodic jobs)."""
    client = sync_client_for(queue.settings())
    try:
        lock = sync_lock(client, lock_name, ttl_seconds)
        if not lock.acquire():
            return None
        try:
            return fn()
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:  # the TTL ran out first: already free
                log.warning("lock %s expired before %s finished", lock_name, lock_name)
    finally:
        client.close()


class ProcessThread:
    """A thread of its own per consumer process (the reconcile ticker, the webhook pump):
    started by the first worker thread's startup hook, stopped and joined at shutdown so
    it closes the loop and pools `run` opened in it. `body` gets the stop event."""

    def __init__(self, name: str, body: Callable[[threading.Event], None],
                 join_seconds: float) -> None:
        self.name = name
        self.stop = threading.Event()
        self._body = body
        self._join_seconds = join_seconds
        self._started = threading.Event()
        self._threads: list[threading.Thread] = []
        huey.on_startup(name=f"{name}.start")(self.start)
        huey.on_shutdown(name=f"{name}.stop")(self.shutdown)

    def start(self) -> None:
        """Once per process (Huey runs startup hooks in every worker thread)."""
        if self._started.is_set():
            return
        self._started.set()
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(self._join_seconds)

    def _run(self) -> None:
        try:
            self._body(self.stop)
        except Exception:  # noqa: BLE001 - logged; the other consumers carry on
            log.exception("%s stopped", self.name)
        finally:
            close_runtime()  # this thread's loop, pools and HTTP sessions
