"""The async bridge for Huey worker threads: one event loop and one Deps per thread.

Services are async (aiopg, redis.asyncio); Huey runs tasks in threads. Each worker thread
opens its own loop, aiopg pool and Redis client at start-up (huey
docs/shared_resources.rst) and `run(fn)` runs `fn(deps)` to completion on that loop.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable, TypeVar

from db.engine import Database
from server import queue
from server.deps import Deps
from server.queue import huey
from server.redis import connect_async
from server.settings import Settings

T = TypeVar("T")
WORKER_DB_POOL_MAX = 4  # a task uses one connection at a time; a few spare for fan-out

_local = threading.local()


async def _open(settings: Settings) -> Deps:
    db = await Database.connect(settings.database_url, maxsize=WORKER_DB_POOL_MAX)
    return Deps(settings=settings, db=db, redis=connect_async(settings.redis_url))


@huey.on_startup()
def open_runtime() -> None:
    if getattr(_local, "deps", None) is None:
        loop = asyncio.new_event_loop()
        _local.loop, _local.deps = loop, loop.run_until_complete(_open(queue.settings()))


@huey.on_shutdown()
def close_runtime() -> None:
    deps, loop = getattr(_local, "deps", None), getattr(_local, "loop", None)
    if deps is None or loop is None:
        return
    loop.run_until_complete(deps.db.close())
    loop.run_until_complete(deps.redis.aclose())
    loop.close()
    _local.deps = _local.loop = None


def run(fn: Callable[[Deps], Awaitable[T]]) -> T:
    """Run `fn(deps)` on this thread's loop, opening the runtime on first use."""
    open_runtime()
    return _local.loop.run_until_complete(fn(_local.deps))  # type: ignore[no-any-return]
