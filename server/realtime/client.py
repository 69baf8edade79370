"""One socket's live stream: what it was sent, the events it holds while it replays from
the database, and the WebSocket close codes (the hub, server/realtime/hub.py, feeds it).

A live event is one `Frame` shared by every socket of its church: its text is decoded
from Redis once, and its WebSocket wire bytes (RFC 6455 header + UTF-8 payload) are built
once, on first use, then written as they are to each socket (`Transport.write_frame`),
instead of Tornado encoding, framing and wrapping a task per socket.
"""
from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any, Protocol

from db.engine import Database
from db.queries import events as q
from server.events.log import encode_event, event_frame
from server.platform.settings import Settings

if TYPE_CHECKING:
    from server.realtime.hub import Hub

log = logging.getLogger("ywm.realtime")

# A socket this many frames behind (written but not flushed to the kernel) is a slow
# consumer: at ~300 B a frame that is a few hundred kB per socket at most.
MAX_PENDING_FRAMES = 1000
# Live events held while a socket replays from the database; more means it cannot keep up.
MAX_HELD_EVENTS = 5000
REPLAY_BATCH = 500

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
# The process has too many sockets opening at once: reconnect shortly, resuming with
# `last_event_id` (RFC 6455 1013 "try again later"; the web app and the bench do).
CLOSE_TRY_AGAIN = 1013
# Private-use range (RFC 6455 §7.4.2): the session ended, sign in again; unlike 1008/1011
# the client must not resume with the same credentials (docs/decisions.md).
CLOSE_SESSION_ENDED = 4001


class Frame:
    """One server frame's text, and its wire bytes built once for every socket."""

    __slots__ = ("text", "_wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    def wire(self) -> bytes:
        """The unmasked, unfragmented, uncompressed text frame a server sends."""
        if self._wire is None:
            payload = self.text.encode()
            size = len(payload)
            if size < 126:
                header = struct.pack("!BB", 0x81, size)  # FIN | opcode text
            elif size <= 0xFFFF:
                header = struct.pack("!BBH", 0x81, 126, size)
            else:
                header = struct.pack("!BBQ", 0x81, 127, size)
            self._wire = header + payload
        return self._wire


class Transport(Protocol):
    """What a StreamClient writes to: handlers/stream.py's socket satisfies it; a
    transport without `write_frame` gets `write_message(frame.text)`."""

    def write_message(self, message: str) -> Any: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class StreamClient:
    """One socket's stream state: last id sent, held live events while catching up."""

    def __init__(self, church_id: str, transport: Transport, user_id: str | None = None,
                 session_id: str | None = None) -> None:
        self.church_id = church_id
        self.transport = transport
        # Who this socket belongs to, so a `session.revoked` message can find it; an API
        # key's socket has neither.
        self.user_id = user_id
        self.session_id = session_id
        self.max_pending = MAX_PENDING_FRAMES
        self.max_held = MAX_HELD_EVENTS
        self.last_sent = 0
        self.catching_up = True
        self.closed = False
        self.pending = 0
        self.held: list[tuple[int, Frame]] = []
        self.hub: Hub | None = None  # set by Hub.join
        write_frame = getattr(transport, "write_frame", None)
        self._write: Any = write_frame if write_frame is not None else (
            lambda frame: transport.write_message(frame.text))

    def deliver(self, event_id: int, frame: Frame) -> None:
        """Called by the hub for each live event of this church, in id order."""
        if self.closed:
            return
        if self.catching_up:
            if len(self.held) >= self.max_held:
                self.close(CLOSE_POLICY, "slow consumer")
                return
            self.held.append((event_id, frame))
            return
        self._send_event(event_id, frame)

    def _send_event(self, event_id: int, frame: Frame) -> Any:
        if event_id <= self.last_sent:
            return None  # already replayed
        self.last_sent = event_id
        return self.send(frame)

    def send(self, frame: Frame) -> Any:
        """Write one frame; close the socket as a slow consumer past the bound."""
        if self.closed:
            return None
        if self.pending >= self.max_pending:
            self.close(CLOSE_POLICY, "slow consumer")
            return None
        try:
            future = self._write(frame)
        except Exception:  # noqa: BLE001 - WebSocketClosedError: the close path cleans up
            self.closed = True
            return None
        self.pending += 1
        future.add_done_callback(self._written)
        return future

    def send_control(self, frame: dict[str, Any]) -> Any:
        return self.send(Frame(encode_event(frame)))

    def _written(self, future: Any) -> None:
        self.pending -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a closed stream is handled by on_close

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.held.clear()
        if self.hub is not None:
            self.hub.leave(self)  # now, not after the closing handshake
        try:
            self.transport.close(code, reason)
        except Exception:  # noqa: BLE001 - already closing
            log.debug("close failed", exc_info=True)

    def catch_up_from_hub(self, after: int | None) -> bool:
        """hello, the replay after `after` from the hub's recent frames, then live, with no
        database read; False (nothing sent) when the hub cannot cover it: use `catch_up`.

        Call after `Hub.join()` returned. Synchronous on purpose: no event can be fanned
        out between reading the hub's head and going live."""
        if self.hub is None or self.closed:
            return False
        replay = self.hub.recent(self.church_id, after)
        if replay is None:
            return False
        head, frames = replay
        start = head if after is None else after
        self.send_control({"type": "hello", "last_event_id": str(start)})
        self.last_sent = start
        for event_id, frame in frames:
            self._send_event(event_id, frame)
        self._go_live()
        return True

    async def catch_up(self, db: Database, after: int | None, settings: Settings) -> None:
        """hello, then resync_required or the replay after `after`, then live.

        Call after `Hub.join()` returned: the subscription is ready, so every event
        committed after our database reads also reaches `held`.
        """
        async with db.acquire() as conn:
            head = await q.last_event_id(conn, self.church_id)
            rows = await q.events_after(conn, self.church_id, after, REPLAY_BATCH) \
                if after is not None and after < head else []
        if self.hub is not None and db is not self.hub.db and head < self.hub.head(
                self.church_id):
            # A replica behind what this socket's subscription already passed: the events
            # in between would be neither replayed nor held. Replay from the primary.
            await self.catch_up(self.hub.db, after, settings)
            return
        resync = after is not None and (after > head or (
            after < head and (not rows or rows[0]["id"] != after + 1)))
        start = head if after is None or resync else after
        self.send_control({"type": "hello", "last_event_id": str(start)})
        if resync:
            self.send_control({"type": "resync_required"})
        self.last_sent = start
        while rows and not self.closed:
            last_future = None
            for row in rows:
                last_future = self._send_event(
                    int(row["id"]), Frame(encode_event(event_frame(row, settings))))
            if last_future is not None:
                await last_future  # backpressure: a large replay waits for the socket
            if len(rows) < REPLAY_BATCH:
                break
            async with db.acquire() as conn:
                rows = await q.events_after(conn, self.church_id, self.last_sent,
                                            REPLAY_BATCH)
        self._go_live()

    def _go_live(self) -> None:
        held, self.held = self.held, []
        self.catching_up = False
        for event_id, frame in held:
            self._send_event(event_id, frame)
