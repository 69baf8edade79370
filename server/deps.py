"""The composition root's product: what handlers, tasks and services are handed.

`Deps` holds everything a process opens, each in a typed field, and one lifecycle serves
the web process (server/main.py) and every worker thread (workers/runtime.py) alike:

    deps = await open_deps(settings, "web")   # pools, metrics; the hub for "web"
    await start(deps)                         # background work (the hub's subscriber)
    ...                                       # serve requests / run tasks
    await drain(deps, timeout)                # close live streams 1001, finish requests
    await close_deps(deps)                    # carrier clients, hub, pools: all it opened
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

import redis.asyncio as aioredis

from db.engine import Database
from db.replicas import ReadPools, ReplicaStatus
from server.carriers import http as carrier_http
from server.platform import queue, webhook_http
from server.platform.metrics import Metrics, describe, open_metrics
from server.platform.redis import client_for
from server.platform.settings import Settings

if TYPE_CHECKING:
    from server.realtime.hub import Hub
    from server.services.dispatch import Dispatcher
    from server.services.webhook_batch import WebhookBatcher

log = logging.getLogger("ywm.deps")

Role = Literal["web", "worker"]
# PostgreSQL connections per pool: a web process serves many requests at once; a worker
# thread runs one task at a time, with a few spare for its fan-out.
POOL_SIZES: dict[Role, int] = {"web": 20, "worker": 4}
DRAIN_POLL_SECONDS = 0.05
REPLICA_LAG = "ywm_db_replica_lag_seconds"
REPLICA_IN_ROTATION = "ywm_db_replica_in_rotation"
describe(REPLICA_LAG, "gauge", "Seconds a read replica is at least behind the primary, "
         "by WAL position (db/replicas.py).")
describe(REPLICA_IN_ROTATION, "gauge", "1 while a read replica serves reads, 0 while it is "
         "down or too far behind.")


@dataclass
class Deps:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)
    # The live-stream hub of a web process (server.realtime.hub.hub_for makes it).
    hub: Hub | None = None
    # Carrier clients and the send throttle, made by the first send
    # (server.services.dispatch.dispatcher_for).
    dispatcher: Dispatcher | None = None
    # A web process's read replicas (YWM_DATABASE_REPLICA_URLS); None: every read is the
    # primary's. Reads choose through server.services.reads.reader.
    replicas: ReadPools | None = None
    # A web process's carrier-webhook group commit, made by the first webhook
    # (server.services.webhook_batch.batcher_for).
    webhook_batcher: WebhookBatcher | None = None


async def open_deps(settings: Settings, role: Role = "web") -> Deps:
    """Open the pools and metrics; a web process also gets its live-stream hub."""
    if not queue.configured():  # `ywm` configured it already; tests and benches may not
        queue.configure(settings)
    db = await Database.connect(settings.database_url, maxsize=POOL_SIZES[role])
    deps = Deps(settings=settings, db=db, redis=client_for(settings),
                metrics=open_metrics(settings))
    if role == "web":
        from server.realtime.hub import hub_for  # the hub is the web role's alone
        hub_for(deps)
        if settings.database_replica_urls:
            deps.replicas = await ReadPools.connect(
                db, settings.database_replica_urls, settings.replica_max_lag_seconds,
                maxsize=POOL_SIZES[role], on_check=_replica_reporter(deps.metrics))
        deps.metrics.serving()
    return deps


async def start(deps: Deps) -> None:
    if deps.hub is not None:
        await deps.hub.start()
    if deps.replicas is not None:
        deps.replicas.start()


async def drain(deps: Deps, timeout: float) -> None:
    """Close live streams with 1001 (clients resume elsewhere), then wait up to `timeout`
    seconds for in-flight requests."""
    if deps.hub is not None:
        await deps.hub.drain()
    await wait_for_in_flight(deps.metrics, timeout)


async def close_deps(deps: Deps) -> None:
    """Close everything `deps` opened, the most dependent first."""
    if deps.dispatcher is not None:
        await deps.dispatcher.close()
        deps.dispatcher = None
    if deps.hub is not None:
        await deps.hub.stop()
    await carrier_http.close()  # this event loop's pooled carrier connections
    await webhook_http.close()  # and its customer-webhook connections
    if deps.replicas is not None:
        await deps.replicas.close()
    await deps.db.close()
    await deps.redis.aclose()


def _replica_reporter(metrics: Metrics) -> Callable[[list[ReplicaStatus]], None]:
    def report(statuses: list[ReplicaStatus]) -> None:
        for status in statuses:
            metrics.set(REPLICA_IN_ROTATION, float(status.in_rotation), replica=status.name)
            if status.lag is not None:
                metrics.set(REPLICA_LAG, status.lag, replica=status.name)
    return report


async def wait_for_in_flight(metrics: Metrics, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while metrics.in_flight > 0:
        if loop.time() >= deadline:
            log.warning("drain timed out after %ss with %s requests in flight",
                        timeout, metrics.in_flight)
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)
