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
from server.platform import jsonenc, tracing
from server.platform.settings import Settings

__all__ = ["serve", "run", "new_event_loop", "open_deps", "close_deps"]

log = logging.getLogger("ywm.web")

DRAIN_SECONDS = 20.0  # in-flight requests get this long after SIGTERM
# Pending connections the kernel queues before accept (Tornado's default is 128): a
# storm of thousands of sockets opening at once (a church's Sunday, a reconnect wave)
# must queue, not be dropped into the clients' 1 s / 3 s SYN retries. The kernel caps it
# at net.core.somaxconn (4096 here).
LISTEN_BACKLOG = 4096


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop of YWM_EVENT_LOOP's kind: "asyncio" (the default) or "uvloop" (an
    optional dependency, measured in bench/loop_json.py; imported only when chosen)."""
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(settings: Settings, port: int, address: str = "127.0.0.1") -> None:
    """`ywm web`: serve on the event loop the settings name until SIGTERM."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as runner:
        runner.run(serve(settings, port, address))


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
    server.add_sockets(tornado.netutil.bind_sockets(port, address, reuse_port=True,
                                                    backlog=LISTEN_BACKLOG))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # the loop's own module ("asyncio" or "uvloop") and the JSON encoder in use, so the
    # log shows what really runs
    log.info("listening on %s:%s (%s loop, %s)", address, port,
             type(loop).__module__.split(".")[0], jsonenc.encoder)
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
