"""Huey signal handlers that keep the admin queues view's counters in Redis.

processed/failed per task name in one hash; running task ids in a sorted set scored by
an expiry, so a SIGKILLed worker's running entries drop out on their own. Imported by
workers/reconcile.py so every consumer registers them.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from huey import signals

from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.platform.redis import queue_running_key, queue_stats_key, sync_client_for
from server.services.queue_admin import RUNNING_TTL_SECONDS

log = logging.getLogger("ywm.workers.queue_stats")

_client: Any = None


def _redis() -> Any:
    global _client
    if _client is None:
        _client = sync_client_for(queue_settings())
    return _client


@huey.signal(signals.SIGNAL_EXECUTING, signals.SIGNAL_COMPLETE, signals.SIGNAL_ERROR)
def count_task(signal: str, task: Any, *args: Any) -> None:
    member = f"{task.id}|{task.name}"
    try:
        pipe = _redis().pipeline(transaction=False)
        if signal == signals.SIGNAL_EXECUTING:
            pipe.zadd(queue_running_key(), {member: time.time() + RUNNING_TTL_SECONDS})
        else:
            pipe.zrem(queue_running_key(), member)
            field = "processed" if signal == signals.SIGNAL_COMPLETE else "failed"
            pipe.hincrby(queue_stats_key(), f"{task.name}:{field}", 1)
        pipe.execute()
    except Exception:  # noqa: BLE001 - counters are best effort; never fail the task
        log.warning("queue stats update failed", exc_info=True)
