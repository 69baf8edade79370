"""The monthly runs (server/services/archive.py): last month is archived early each month,
and partitions past `YWM_RETENTION_MONTHS` are archived, verified, then detached and
dropped."""
from __future__ import annotations

from huey import crontab

from server.deps import Deps
from server.platform.queue import huey
from server.services import archive
from server.services.archive_store import open_store
from workers.runtime import run, run_exclusive

# A month of a large box takes minutes to stream: the lock must outlive the slowest run.
# A crashed holder's lock expires; the run is resumable, so next month's (or an operator's
# `ywm archive`) picks up where it stopped.
RETENTION_LOCK_TTL = 6 * 3600


@huey.periodic_task(crontab(day="2", hour="3", minute="17"), name="archive.retire_old_months")
def retire_old_months() -> list[str]:
    """Archive and drop what retention no longer keeps; one run cluster-wide (Redis lock)."""
    async def _retire(deps: Deps) -> list[str]:
        store = open_store(deps.settings.archive_location)
        return await archive.apply_retention(deps.db, store, deps.settings.retention_months)
    return run_exclusive("archive.retire_old_months", RETENTION_LOCK_TTL,
                         lambda: run(_retire)) or []


# The 4th: delivery receipts of the month's last sends have had their 72 hours.
@huey.periodic_task(crontab(day="4", hour="4", minute="17"), name="archive.archive_last_month")
def archive_last_month() -> int:
    """Archive last month for every church; one run cluster-wide (Redis lock)."""
    async def _archive(deps: Deps) -> int:
        store = open_store(deps.settings.archive_location)
        return len(await archive.archive_previous_month(deps.db, store))
    return run_exclusive("archive.archive_last_month", RETENTION_LOCK_TTL,
                         lambda: run(_archive)) or 0
