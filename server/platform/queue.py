"""The Huey instance every task registers on (after-commit enqueues go through
server/services/followups.py).

One `RedisExpireHuey` per process. RedisExpireHuey (not RedisHuey) because its
`lock_task(..., ttl=)` locks are plain keys with an expiry that works on Redis 7.0
(LIBRARIES.md §4b); results expire instead of piling up.

The task decorators need the instance at import time, before any settings exist, so it
starts unconfigured (every use fails, naming the fix) and the process's composition root
hands it the one `Settings` it built: `configure(settings)` in `ywm` (server/cli.py) for
every command, `open_deps` for a process that did not, the test session in conftest.
"""
from __future__ import annotations

from typing import Any

from huey import RedisExpireHuey
from huey.storage import RedisExpireStorage, RedisStorage

from server.platform.settings import Settings

RESULT_TTL_SECONDS = 3600  # results are for debugging; durable state lives in PostgreSQL


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


huey = RedisExpireHuey(
    "unconfigured", storage_class=_Unconfigured,
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
    huey.storage_kwargs = {"url": new_settings.redis_url, "expire_time": RESULT_TTL_SECONDS}
    huey.storage = huey.create_storage()
    if isinstance(old, RedisStorage):
        old.conn.close()
