"""Customer webhook delivery in every consumer: a pump thread, and the hourly prune.

The pump (server/services/webhook_delivery.py) runs on a thread of its own with its own
loop and Deps (workers/runtime.py), like the reconcile ticker: Huey's periodic tasks tick
once a minute, too coarse for webhooks, and a task per delivery would put one slow
endpoint's requests in the same worker threads as every other endpoint's. Cursors and
leases live in PostgreSQL, so any number of consumers may pump at once; a killed one's
claimed deliveries fall due again when their leases end.
"""
from __future__ import annotations

import logging
import threading

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.services import webhook_delivery
from workers.runtime import close_runtime, run, run_exclusive

log = logging.getLogger("ywm.workers.webhooks")

PRUNE_LOCK_TTL = 900  # outlives one prune; frees the slot if the worker dies holding it
DELIVERY_RETENTION_DAYS = 30  # finished deliveries listed by the API this long
STOP_JOIN_SECONDS = 30.0  # the pump waits for requests in flight (10 s timeout) first

_started = threading.Event()
_stop = threading.Event()
_threads: list[threading.Thread] = []


def _pump() -> None:
    try:
        async def _run(deps: Deps) -> None:
            await webhook_delivery.Pump(deps).run(_stop.is_set)
        run(_run)
    except Exception:  # noqa: BLE001 - logged; the other consumers keep delivering
        log.exception("webhook pump stopped")
    finally:
        close_runtime()  # this thread's loop, pools and HTTP sessions


@huey.on_startup()
def start_pump() -> None:
    """Start this process's pump once (the hook runs in every worker thread)."""
    if _started.is_set():
        return
    _started.set()
    thread = threading.Thread(target=_pump, name="ywm-webhooks", daemon=True)
    _threads.append(thread)
    thread.start()


@huey.on_shutdown()
def stop_pump() -> None:
    _stop.set()
    for thread in _threads:
        thread.join(STOP_JOIN_SECONDS)


@huey.periodic_task(crontab(minute="7"), name="webhooks.prune")
def prune_deliveries() -> int:
    """Drop finished deliveries past retention; one run cluster-wide (Redis lock)."""
    async def _prune(deps: Deps) -> int:
        return await webhook_delivery.prune(deps, DELIVERY_RETENTION_DAYS)
    return run_exclusive("webhooks.prune", PRUNE_LOCK_TTL, lambda: run(_prune)) or 0
