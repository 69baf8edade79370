"""Recurring messages on the minute: a Huey periodic task under the `recurring` lock.

The reconciler's ticker (workers/reconcile.py) also runs due occurrences every few
seconds; this minute task is the same pass on Huey's own schedule. Exactly-once per
occurrence does not depend on either lock: it is the `recurring_runs` primary key.
"""
from __future__ import annotations

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.platform.redis import sync_client_for, sync_lock
from server.services import recurring
from server.services.followups import enqueue_now, start_dispatches
from workers import sends  # noqa: F401  (registers the follow-up runners)
from workers.runtime import run

LOCK_TTL_SECONDS = 50.0  # under a minute: the next minute's run can always take it


@huey.periodic_task(crontab(minute="*"), name="recurring.tick")
def recurring_tick() -> int:
    client = sync_client_for(queue_settings())
    try:
        if not sync_lock(client, "recurring", LOCK_TTL_SECONDS).acquire():
            return 0

        async def _due(deps: Deps) -> list[tuple[str, str]]:
            return await recurring.run_due(deps)
        started = run(_due)
    finally:
        client.close()
    enqueue_now(start_dispatches(started))
    return len(started)
