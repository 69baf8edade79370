"""Helpers for WebSocket stream tests: open a socket, read frames, commit events."""
from __future__ import annotations

import asyncio
import functools
import json
import pathlib
from typing import Any, Iterator
from urllib.parse import urlencode

import jsonschema
import pytest
import tornado.websocket
import ujson

from server.events.log import append_event, publish_events


_OPEN: list[Any] = []


async def connect(request: Any) -> Any:
    """websocket_connect, remembered so `close_sockets` closes it after the test."""
    ws = await tornado.websocket.websocket_connect(request)
    _OPEN.append(ws)
    return ws


@pytest.fixture(autouse=True)
def close_sockets(io_loop: Any) -> Iterator[None]:
    """Import into a test module: every socket a test opened is closed at teardown
    (before the test's loop closes, hence the `io_loop` dependency)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


async def ticket_for(api: Any, token: str) -> str:
    status, body, _ = await api.post("/api/v1/stream/ticket", token=token)
    assert status == 200, body
    return str(body["data"]["ticket"])


def stream_url(base_url: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return base_url.replace("http", "ws", 1) + "/api/v1/stream" + (f"?{query}" if query else "")


async def open_stream(api: Any, base_url: str, token: str, last_event_id: str | None = None
                      ) -> Any:
    ticket = await ticket_for(api, token)
    return await connect(stream_url(base_url, ticket=ticket, last_event_id=last_event_id))


@functools.cache
def _frame_validator() -> jsonschema.Draft202012Validator:
    path = pathlib.Path(__file__).parent.parent / "schema" / "ws" / "server_frame.json"
    return jsonschema.Draft202012Validator(json.loads(path.read_text()),
                                           format_checker=jsonschema.FormatChecker())


async def read_frame(ws: Any, timeout: float = 5.0) -> Any:
    """The next frame as a dict (checked against schema/ws/server_frame.json), or None
    when the socket closed."""
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    if raw is None:
        return None
    frame = ujson.loads(raw)
    _frame_validator().validate(frame)
    return frame


async def read_frames(ws: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    return [await read_frame(ws, timeout) for _ in range(count)]


async def assert_silent(ws: Any, seconds: float = 0.3) -> None:
    """No frame arrives within `seconds` (used to prove absence, never to time things)."""
    try:
        frame = await asyncio.wait_for(ws.read_message(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected frame {frame!r}")


async def commit_events(db: Any, redis: Any, church_id: Any, count: int,
                        type_: str = "conversation.updated", publish: bool = True
                        ) -> list[dict[str, Any]]:
    """Commit `count` events in one transaction, then publish them (after commit)."""
    async with db.transaction() as conn:
        events = [await append_event(conn, church_id, type_, {"n": n}) for n in range(count)]
    if publish:
        await publish_events(redis, events)
    return events
