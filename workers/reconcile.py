"""The reconciler's schedule: a ticker thread in every consumer plus a Huey periodic task.

Huey's periodic tasks tick once a minute per scheduling consumer (LIBRARIES.md §4c), too
coarse to recover a killed broadcast quickly, so each consumer also runs a small ticker
thread every `reconcile_interval_seconds`. Either way a pass runs only while holding the
cluster-wide Redis lock `reconcile` (token + TTL, never without expiry); the lock is left
to expire rather than released, so passes are spaced one interval apart cluster-wide
however many consumers tick.
"""
from __future__ import annotations

import logging
import threading

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.platform.redis import sync_client_for, sync_lock
from server.services import number_linking, reconcile
from server.services.followups import enqueue_now
from workers import queue_stats  # noqa: F401  (registers the queue counters)
from workers import sends  # noqa: F401  (registers the follow-up runners)
from workers.runtime import ProcessThread, run, run_exclusive

log = logging.getLogger("ywm.workers.reconcile")

# A stop waits this long for a pass in progress to end, so the ticker closes its pools.
TICKER_JOIN_SECONDS = 20.0


def tick() -> int:
    """One reconcile pass if this process wins the interval's lock; lanes enqueued."""
    settings = queue_settings()
    client = sync_client_for(settings)
    try:
        lock = sync_lock(client, "reconcile", max(1.0, settings.reconcile_interval_seconds * 0.9))
        if not lock.acquire():
            return 0

        async def _pass(deps: Deps) -> reconcile.ReconcileReport:
            return await reconcile.reconcile(deps)
        report = run(_pass)
    finally:
        client.close()
    return enqueue_now(report.followups)


@huey.periodic_task(crontab(minute="*"), name="reconcile.tick")
def reconcile_periodic() -> int:
    return tick()


LINK_LOCK_TTL = 300.0  # longer than one pass of carrier calls; a crash frees it in 5 min


@huey.periodic_task(crontab(minute="*"), name="numbers.relink")
def relink_numbers() -> int:
    """Retry provisioning of numbers that are not linked; one run cluster-wide."""
    async def _relink(deps: Deps) -> int:
        return int((await number_linking.relink(deps))["linked"])  # type: ignore[call-overload]
    return run_exclusive("numbers.relink", LINK_LOCK_TTL, lambda: run(_relink)) or 0


def _ticker(stop: threading.Event) -> None:
    interval = queue_settings().reconcile_interval_seconds
    while not stop.is_set():
        try:
            tick()
        except Exception:  # noqa: BLE001 - keep ticking; the next pass retries
            log.exception("reconcile pass failed")
        stop.wait(interval)


ticker = ProcessThread("ywm-reconcile", _ticker, TICKER_JOIN_SECONDS)
