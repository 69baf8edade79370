"""Customer webhook receivers for tests: real HTTP servers on loopback in the test process.

Every receiver checks each request's `YWM-Signature` with the verification snippet
published in docs/webhooks.md, read from that file (so the snippet itself is tested), and
keeps what it received. `respond(event, attempt)` decides the answer: a status code, or
an awaitable of one (a receiver that hangs until released).
"""
from __future__ import annotations

import asyncio
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import tornado.httpserver
import tornado.web
import ujson

from tests.workers.procs import free_port

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"


def documented_verify() -> Callable[..., bool]:
    """The `verify` function of docs/webhooks.md, exactly as published."""
    text = DOC.read_text()
    section = text.split("## Verifying the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "docs/webhooks.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["verify"]  # type: ignore[no-any-return]


Respond = Callable[[dict[str, Any], int], "int | Awaitable[int]"]


@dataclass
class Received:
    event: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    respond: Respond = lambda event, attempt: 200
    received: list[Received] = field(default_factory=list)  # every request, answered or not
    answered: list[tuple[str, int]] = field(default_factory=list)  # (event id, status)
    attempts: dict[str, int] = field(default_factory=dict)
    in_progress: int = 0
    url: str = ""
    server: Any = None

    @property
    def ids(self) -> list[str]:
        """Event ids answered 2xx, in order (duplicates kept)."""
        return [event_id for event_id, status in self.answered if 200 <= status < 300]

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        check = documented_verify()
        header = headers.get("Ywm-Signature", "")
        return bool(self.secrets) and all(check(secret, header, body) for secret in self.secrets)


class _Handler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:  # type: ignore[override]
        self.receiver = receiver

    async def post(self) -> None:
        r = self.receiver
        body = self.request.body
        headers = dict(self.request.headers)
        event = ujson.loads(body)
        r.received.append(Received(event, headers, body, r.verify(headers, body)))
        r.attempts[event["id"]] = attempt = r.attempts.get(event["id"], 0) + 1
        r.in_progress += 1
        try:
            status = r.respond(event, attempt)
            if not isinstance(status, int):
                status = await status
        finally:
            r.in_progress -= 1
        r.answered.append((event["id"], status))
        self.set_status(status)
        self.finish("ok" if status < 300 else f"nope {status}")


async def start_receiver(respond: Respond | None = None, secrets: list[str] | None = None
                         ) -> Receiver:
    receiver = Receiver(secrets=list(secrets or []))
    if respond is not None:
        receiver.respond = respond
    app = tornado.web.Application([(r"/hook", _Handler, {"receiver": receiver})])
    port = free_port()
    receiver.server = tornado.httpserver.HTTPServer(app)
    receiver.server.listen(port, address="127.0.0.1")
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return receiver


async def stop_receiver(receiver: Receiver) -> None:
    receiver.server.stop()
    await asyncio.wait_for(receiver.server.close_all_connections(), 10)


async def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `check` until true or `timeout` seconds passed (a bound, not an assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(step)
    return check()
