"""The web process: open Deps, listen with SO_REUSEPORT, stop gracefully on SIGTERM.

Shutdown order: stop accepting (the listening socket closes, so new connections are
refused and the kernel sends them to the box's other processes), drain (the live stream
closes its WebSockets with 1001, in-flight requests finish), close the idle keep-alive
connections, then close everything Deps opened (server/deps.py).
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

import tornado.httpserver
import tornado.netutil

from server.app import make_app
from server.deps import Deps, close_deps, drain, open_deps, start
from server.platform import tracing
from server.platform.settings import Settings

__all__ = ["serve", "open_deps", "close_deps"]

log = logging.getLogger("ywm.web")

DRAIN_SECONDS = 20.0  # in-flight requests get this long after SIGTERM


async def serve(settings: Settings, port: int, address: str = "127.0.0.1",
                started: Callable[[Deps], Awaitable[None]] | None = None) -> None:
    tracing.configure(settings, "web")  # off unless YWM_OTEL_ENDPOINT is set
    deps = await open_deps(settings, "web")
    await start(deps)
    app = make_app(deps)
    # max_body_size is the largest any route reads (the streamed CSV import); every other
    # route's smaller limit is enforced before its body is buffered (server/app.py).
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
    await drain(deps, DRAIN_SECONDS)
    # What is left are idle keep-alive connections (Tornado's close_all_connections
    # would also cut requests mid-response, hence the drain above).
    await server.close_all_connections()
    await close_deps(deps)
    tracing.shutdown()  # export the spans still buffered
    log.info("stopped")
