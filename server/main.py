"""The web process: open pools, listen with SO_REUSEPORT, stop gracefully on SIGTERM.

Shutdown order: stop accepting (the listening socket closes, so new connections are
refused and the kernel sends them to the box's other processes), run the `on_drain` hooks
(the live stream closes its WebSockets with 1001), wait for in-flight requests to finish,
close the idle keep-alive connections, then run `on_close` hooks and close the pools.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

import tornado.httpserver
import tornado.netutil

from db.engine import Database
from server.app import make_app
from server.deps import Deps
from server.platform.metrics import Metrics
from server.realtime.hub import hub_for
from server.platform.redis import connect_async
from server.platform.settings import Settings

log = logging.getLogger("ywm.web")

DRAIN_SECONDS = 20.0  # in-flight requests get this long after SIGTERM
DRAIN_POLL_SECONDS = 0.05
DB_POOL_MAX = 20


async def open_deps(settings: Settings) -> Deps:
    db = await Database.connect(settings.database_url, maxsize=DB_POOL_MAX)
    deps = Deps(settings=settings, db=db, redis=connect_async(settings.redis_url))
    metrics = Metrics()
    deps.extras["metrics"] = metrics

    async def start_metrics() -> None:
        metrics.start(deps.redis)

    deps.extras.setdefault("on_start", []).append(start_metrics)
    deps.extras.setdefault("on_close", []).append(lambda: metrics.stop(deps.redis))
    hub_for(deps)  # the live-stream hub registers its start/drain/close hooks
    return deps


async def close_deps(deps: Deps) -> None:
    for closer in deps.extras.get("on_close", []):
        await closer()
    await deps.db.close()
    await deps.redis.aclose()


async def serve(settings: Settings, port: int, address: str = "127.0.0.1",
                started: Callable[[Deps], Awaitable[None]] | None = None) -> None:
    deps = await open_deps(settings)
    for starter in deps.extras.get("on_start", []):
        await starter()
    app = make_app(deps)
    server = tornado.httpserver.HTTPServer(
        app, xheaders=settings.trust_proxy_headers, max_body_size=settings.max_import_bytes,
        idle_connection_timeout=75)
    server.add_sockets(tornado.netutil.bind_sockets(port, address, reuse_port=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s:%s", address, port)
    if started is not None:
        await started(deps)
    await stop.wait()
    log.info("stopping: no new connections, draining in-flight requests")
    server.stop()
    for closer in deps.extras.get("on_drain", []):
        await closer()
    await wait_for_in_flight(deps.extras["metrics"], DRAIN_SECONDS)
    # What is left are idle keep-alive connections (Tornado's close_all_connections
    # would also cut requests mid-response, hence the wait above).
    await server.close_all_connections()
    await close_deps(deps)
    log.info("stopped")


async def wait_for_in_flight(metrics: Metrics, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while metrics.in_flight > 0:
        if loop.time() >= deadline:
            log.warning("drain timed out after %ss with %s requests in flight",
                        timeout, metrics.in_flight)
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)
