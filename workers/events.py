"""Periodic pruning of the stream's event log (server/services/events.py)."""
from __future__ import annotations

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.services import events as retention
from workers.runtime import run, run_exclusive

# A run deletes in 5,000-row batches and takes seconds; the TTL only has to outlive one
# run, and frees the slot if the worker dies holding it.
PRUNE_LOCK_TTL = 900


@huey.periodic_task(crontab(minute="*/15"), name="events.prune")
def prune_events() -> int:
    """Prune past retention; one run cluster-wide per slot (Redis lock with a TTL)."""
    async def _prune(deps: Deps) -> int:
        return (await retention.prune_events(deps.db)).deleted
    return run_exclusive("events.prune", PRUNE_LOCK_TTL, lambda: run(_prune)) or 0
