"""The Huey instance every task registers on, and `enqueue` for async callers.

One `RedisExpireHuey` per process, named from `settings.queue_name` on `settings.redis_url`.
RedisExpireHuey (not RedisHuey) because its `lock_task(..., ttl=)` locks are plain keys with
an expiry that works on Redis 7.0 (LIBRARIES.md §4b); results expire instead of piling up.
The instance is built at import from the environment, because `huey_consumer workers.huey`
and the task decorators need it at import time; tests repoint it with `configure()`.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable

from huey import RedisExpireHuey
from huey.api import Result

from server.platform.settings import Settings

RESULT_TTL_SECONDS = 3600  # results are for debugging; durable state lives in PostgreSQL

_settings = Settings.from_env()
huey = RedisExpireHuey(
    _settings.queue_name, url=_settings.redis_url, expire_time=RESULT_TTL_SECONDS,
    # Result.get() would otherwise raise on the first failed attempt of a retried task.
    store_intermediate_errors=False, utc=True)


def settings() -> Settings:
    """The settings the queue (and so every worker thread) was configured with."""
    return _settings


def configure(new_settings: Settings) -> None:
    """Point the Huey instance at another Redis URL / queue name (tests, `ywm worker`)."""
    global _settings
    _settings = new_settings
    old = huey.storage
    huey.name = new_settings.queue_name
    huey.storage_kwargs = {"url": new_settings.redis_url, "expire_time": RESULT_TTL_SECONDS}
    huey.storage = huey.create_storage()
    old.conn.close()


async def enqueue(task: Callable[..., Result | None], *args: Any, **kwargs: Any
                  ) -> Result | None:
    """Call a Huey task from async code: the Redis write runs in the default executor
    so the event loop never blocks on it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(task, *args, **kwargs))
