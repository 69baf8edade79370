"""The web process: open pools, listen with SO_REUSEPORT, stop gracefully on SIGTERM."""
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
from server.redis import connect_async
from server.settings import Settings

log = logging.getLogger("ywm.web")

DRAIN_SECONDS = 20.0  # in-flight requests get this long after SIGTERM
DB_POOL_MAX = 20


async def open_deps(settings: Settings) -> Deps:
    db = await Database.connect(settings.database_url, maxsize=DB_POOL_MAX)
    return Deps(settings=settings, db=db, redis=connect_async(settings.redis_url))


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
        app, xheaders=True, max_body_size=settings.max_import_bytes,
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
    try:
        await asyncio.wait_for(server.close_all_connections(), DRAIN_SECONDS)
    except asyncio.TimeoutError:
        log.warning("drain timed out after %ss", DRAIN_SECONDS)
    await close_deps(deps)
