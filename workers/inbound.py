"""Periodic upkeep of inbound carrier traffic: pruning the webhook dedupe records."""
from __future__ import annotations

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.services import inbound
from workers.runtime import run, run_exclusive

# One DELETE by the received_at index; the TTL only has to outlive one run.
PRUNE_LOCK_TTL = 600


@huey.periodic_task(crontab(minute="7"), name="inbound.prune_dedupe")
def prune_dedupe() -> int:
    """Drop dedupe rows past 72 h; one run cluster-wide per hour (Redis lock with a TTL)."""
    async def _prune(deps: Deps) -> int:
        return await inbound.prune_dedupe(deps.db)
    return run_exclusive("inbound.prune_dedupe", PRUNE_LOCK_TTL, lambda: run(_prune)) or 0
