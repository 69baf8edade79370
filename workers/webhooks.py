"""Customer webhook delivery in every consumer: a pump thread, and the hourly prune.

The pump (server/services/webhook_delivery.py) runs on a thread of its own with its own
loop and Deps (workers/runtime.py), like the reconcile ticker: Huey's periodic tasks tick
once a minute, too coarse for webhooks, and a task per delivery would put one slow
endpoint's requests in the same worker threads as every other endpoint's. Cursors and
leases live in PostgreSQL, so any number of consumers may pump at once; a killed one's
claimed deliveries fall due again when their leases end.
"""
from __future__ import annotations

import threading

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.services import webhook_delivery
from workers.runtime import ProcessThread, run, run_exclusive

PRUNE_LOCK_TTL = 900  # outlives one prune; frees the slot if the worker dies holding it
DELIVERY_RETENTION_DAYS = 30  # finished deliveries listed by the API this long
STOP_JOIN_SECONDS = 30.0  # the pump waits for requests in flight (10 s timeout) first


def _pump(stop: threading.Event) -> None:
    async def _run(deps: Deps) -> None:
        await webhook_delivery.Pump(deps).run(stop.is_set)
    run(_run)


pump = ProcessThread("ywm-webhooks", _pump, STOP_JOIN_SECONDS)


@huey.periodic_task(crontab(minute="7"), name="webhooks.prune")
def prune_deliveries() -> int:
    """Drop finished deliveries past retention; one run cluster-wide (Redis lock)."""
    async def _prune(deps: Deps) -> int:
        return await webhook_delivery.prune(deps, DELIVERY_RETENTION_DAYS)
    return run_exclusive("webhooks.prune", PRUNE_LOCK_TTL, lambda: run(_prune)) or 0
