"""A client that does not answer the server's WebSocket pings is closed with 1008."""
from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import pytest

from server.app import make_app
from tests.factories import register
from tests.stream_client import ticket_for


@pytest.fixture
def app(deps: Any) -> Any:
    application = make_app(deps)
    application.settings.update(websocket_ping_interval=0.2, websocket_ping_timeout=0.2)
    return application


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", await reader.readexactly(8))[0]
    return opcode, await reader.readexactly(length)


@pytest.mark.gen_test(timeout=30)
async def test_unanswered_pings_close_with_policy_violation(api: Any, base_url: str,
                                                            deps: Any) -> None:
    owner = await register(api)
    ticket = await ticket_for(api, owner["access_token"])
    host, port = base_url.split("://", 1)[1].split(":")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /api/v1/stream?ticket={ticket} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    # A raw socket that never answers pings (Tornado's client would answer them).
    opcodes = []
    while True:
        opcode, payload = await asyncio.wait_for(_read_frame(reader), 10)
        opcodes.append(opcode)
        if opcode == 0x8:
            break
    assert 0x9 in opcodes  # the server pinged
    assert struct.unpack(">H", payload[:2])[0] == 1008
    writer.close()
    await writer.wait_closed()
