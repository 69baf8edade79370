"""`/api/v1/stream`: the staff live stream over WebSocket (API.md §7).

Credentials are checked in `get()` before the upgrade, so a bad ticket, token or cookie
is a plain `401` with the error body and never a socket. After the upgrade the socket
registers with the process hub (`server.realtime.hub`), which subscribes first; the client
then replays (from the hub's recent frames, else the durable log) and goes live
(`StreamClient.catch_up_from_hub`, `StreamClient.catch_up`). A process with too many
sockets still opening closes a new one with 1013 (try again later). When the
socket's session ends (logout, removal, role or password change) the hub closes it with
4001 on whichever process holds it.
"""
from __future__ import annotations

import logging
from typing import Any

import tornado.iostream
import tornado.websocket
import ujson

import schema
from handlers.base import read_credentials, render_error
from server.auth.api_keys import check_scope
from server.auth.authenticate import authenticate
from server.auth.sessions import Actor
from server.deps import Deps
from server.platform.errors import AppError, ValidationFailed
from server.realtime.client import (CLOSE_INTERNAL, CLOSE_POLICY, CLOSE_SESSION_ENDED,
                                    CLOSE_TRY_AGAIN, Frame, StreamClient)
from server.realtime.hub import hub_for
from server.services import reads

log = logging.getLogger("ywm.stream")

MAX_CLIENT_FRAME = 4096  # client frames are tiny control messages
MAX_BAD_FRAMES = 10  # then it is abuse, not a bug: close 1008


class _StreamProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado closes a socket that misses its pings with 1000; API.md §7 says 1008."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is None and reason == "ping timed out":
            code = CLOSE_POLICY
        super().close(code, reason)


class StreamSocketHandler(tornado.websocket.WebSocketHandler):
    """One staff socket: auth before upgrade, hello, replay, live, ping/pong."""

    def initialize(self, deps: Deps) -> None:  # type: ignore[override]
        self.deps = deps
        self.actor: Actor | None = None
        self.client: StreamClient | None = None
        self.bad_frames = 0
        self.admitted = False  # counted in the hub's sockets opening (released once)

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return MAX_CLIENT_FRAME

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, tornado.websocket.WebSocketProtocol13):
            return _StreamProtocol(self, False, protocol.params)
        return protocol

    def write_frame(self, frame: Frame) -> Any:
        """Write a frame's prebuilt wire bytes (shared by every socket of the church) to
        this socket: what `write_message` does per socket (encode, frame, wrap a task),
        done once. Compression is never negotiated here (no `get_compression_options`):
        it would cost ~70 µs a socket per frame (LIBRARIES.md §7)."""
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            raise tornado.websocket.WebSocketClosedError()
        if getattr(connection, "_compressor", None) is not None:
            return self.write_message(frame.text)
        try:
            return connection.stream.write(frame.wire())  # type: ignore[attr-defined]
        except tornado.iostream.StreamClosedError:
            raise tornado.websocket.WebSocketClosedError() from None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        hub = hub_for(self.deps)
        if not hub.admit():
            # Shed before any work: upgrade, then close 1013 in open(); the client
            # resumes with its last_event_id shortly (nothing to authenticate for that).
            await super().get(*args, **kwargs)
            return
        self.admitted = True
        try:
            try:
                async with hub.auth_gate:
                    credentials = read_credentials(self, self.get_query_argument("ticket",
                                                                                 None))
                    self.actor = await authenticate(self.deps.db, self.deps.redis,
                                                    self.deps.settings, credentials)
                check_scope(self.actor, schema.api_key_scope("GET", self.request.path))
                self.last_event_id = _parse_last_event_id(self.get_query_argument(
                    "last_event_id", None))
            except AppError as error:
                render_error(self, error)
                return
            await super().get(*args, **kwargs)  # returns when the socket has closed
        finally:
            self._opened()

    async def open(self, *args: Any, **kwargs: Any) -> None:
        if not self.admitted:
            self.close(CLOSE_TRY_AGAIN, "busy, resume shortly")
            return
        assert self.actor is not None
        hub = hub_for(self.deps)
        actor = self.actor
        self.client = StreamClient(str(actor.church_id), self,
                                   user_id=str(actor.user_id) if actor.user_id else None,
                                   session_id=actor.session_id)
        try:
            await hub.join(self.client)
            # Subscribed now, so a later revocation reaches us; one before it is seen here.
            if actor.session_id is not None and not await hub.session_alive(
                    str(actor.church_id), actor.session_id):
                self.client.close(CLOSE_SESSION_ENDED, "session ended")
                return
            if not self.client.catch_up_from_hub(self.last_event_id):
                await self.client.catch_up(await reads.reader(self.deps, actor),
                                           self.last_event_id, self.deps.settings)
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception:  # noqa: BLE001 - Starlette's rule: log it, close 1011
            log.exception("stream open failed", extra={"church_id": self.client.church_id})
            self.client.close(CLOSE_INTERNAL, "stream unavailable")
        finally:
            self._opened()  # live, refused or gone: no longer opening

    def _opened(self) -> None:
        if self.admitted:
            self.admitted = False
            hub_for(self.deps).opened()

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._close_policy("binary frames are not part of this protocol")
            return
        try:
            frame = ujson.loads(message)
        except ValueError:
            frame = None
        if isinstance(frame, dict) and frame.get("type") == "ping":
            if self.client is not None:
                self.client.send_control({"type": "pong"})
            return
        self.bad_frames += 1
        if self.bad_frames > MAX_BAD_FRAMES:
            self._close_policy("too many invalid frames")
        elif self.client is not None:
            self.client.send_control({"type": "error", "code": "invalid_frame",
                                      "message": 'Send {"type": "ping"}; nothing else.'})

    def _close_policy(self, reason: str) -> None:
        if self.client is not None:
            self.client.close(CLOSE_POLICY, reason)
        else:
            self.close(CLOSE_POLICY, reason)

    def on_close(self) -> None:
        if self.client is not None:
            self.client.closed = True
            hub_for(self.deps).leave(self.client)


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise ValidationFailed("last_event_id must be an event id from this stream.",
                               [{"field": "last_event_id",
                                 "message": "Must be a non-negative integer string."}])
    return int(value)
