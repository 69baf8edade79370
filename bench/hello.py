"""A bare Tornado "hello" server, the floor our web stack is compared against.

Same process model as `ywm web`: N processes, one port, SO_REUSEPORT, default event loop.
Run: `python -m bench.hello --port 8100`; SIGTERM/SIGINT stop it.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import tornado.httpserver
import tornado.netutil
import tornado.web


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


async def serve(port: int) -> None:
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", HelloHandler)]))
    server.add_sockets(tornado.netutil.bind_sockets(port, "127.0.0.1", reuse_port=True))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8100)
    asyncio.run(serve(parser.parse_args().port))
