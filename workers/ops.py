"""Operational tasks: a ping that proves the queue and the worker runtime work, and the
partition upkeep every six hours (months ahead, and the DEFAULT partitions' row counts as
the `ywm_db_default_partition_rows{table}` gauge that deploy/prometheus/alerts.yml watches)."""
from __future__ import annotations

import time

from huey import crontab

from db.partitions import count_default_rows, ensure_partitions
from server.deps import Deps
from server.platform.metrics import describe
from server.platform.queue import huey
from server.platform.queue import settings as queue_settings
from server.platform.redis import ping_key
from workers.runtime import run, run_exclusive

PING_TTL_SECONDS = 300  # long enough to read it back, short enough to need no cleanup
# Upkeep takes well under a second; the lock only has to outlive one run.
PARTITIONS_LOCK_TTL = 600
DEFAULT_ROWS = "ywm_db_default_partition_rows"
describe(DEFAULT_ROWS, "gauge",
         "Rows in a partitioned table's DEFAULT partition (0 unless upkeep fell behind).")


@huey.task(name="ops.ping")
def ping(token: str) -> str:
    """Write `pong <unix time>` under the token's key after a database round trip."""
    async def _ping(deps: Deps) -> str:
        await deps.db.execute("SELECT 1")
        value = f"pong {time.time():.3f}"
        await deps.redis.set(ping_key(token), value, ex=PING_TTL_SECONDS)
        return value
    return run(_ping)


@huey.periodic_task(crontab(minute="7", hour="*/6"), name="ops.ensure_partitions")
def upkeep_partitions() -> list[str]:
    """Create next months' partitions and report the DEFAULT partitions' rows; one run
    cluster-wide per slot (Redis lock, TTL)."""
    return run_exclusive("ops.ensure_partitions", PARTITIONS_LOCK_TTL, _upkeep) or []


def _upkeep() -> list[str]:
    url = queue_settings().database_url
    created = ensure_partitions(url)
    counts = count_default_rows(url)

    async def _report(deps: Deps) -> None:
        for table, rows in counts.items():
            deps.metrics.set(DEFAULT_ROWS, rows, table=table)
    run(_report)
    return created
