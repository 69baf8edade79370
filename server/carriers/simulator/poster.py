"""The simulator's webhook poster: plain HTTP/1.1 POSTs over pooled keep-alive connections.

A bulk send makes the simulator post two receipts a text (200,000 for a 100k send), on
the same box as the system it feeds, so its CPU per post counts against ours. aiohttp's
client spent most of the simulator's time per receipt (py-spy: its request path, payload
and header writers, response objects); what a carrier's webhook needs is much less:
write one request (head and body in one buffer), read the status line, the headers and
a Content-Length or chunked body, and keep the connection for the next post. That is
all this does, on asyncio protocols, with the same bounds as before: at most `limit`
posts in flight (the rest wait their turn, FIFO), a timeout on connect and answer
(Telnyx: 2 s), idle connections dropped after `KEEPALIVE_SECONDS`.

A pooled connection the server closed while it sat idle fails before any answer byte
arrives: that post is tried once more on a new connection, as HTTP clients do (and our
server dedupes by event id should it have got the first copy after all).
"""
from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from typing import Deque
from urllib.parse import urlsplit

KEEPALIVE_SECONDS = 20.0  # below the 60-75 s idle timeout servers commonly use
MAX_HEAD = 64 * 1024


class PostFailed(Exception):
    """No HTTP answer: `kind` is "timeout" or "network"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class _StaleConnection(Exception):
    """A reused connection closed before any byte of the answer."""


@functools.lru_cache(maxsize=64)
def _target(url: str) -> tuple[str, int, bool, str, bytes]:
    """(host, port, tls, netloc, request-target bytes) of an http(s):// URL."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise PostFailed("network", f"not an http(s) URL: {url!r}")
    tls = split.scheme == "https"
    path = (split.path or "/") + (f"?{split.query}" if split.query else "")
    return split.hostname, split.port or (443 if tls else 80), tls, split.netloc, path.encode()


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.used = False
        self.idle_since = 0.0
        self._head: tuple[int, int, int | None, bool, bool] | None = None

    # ----- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                answer = self._parse(eof=False)
            except ValueError as exc:
                self.waiter.set_exception(PostFailed("network", f"bad answer: {exc}"))
                self.close()
                return
            if answer is not None:
                self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            try:
                answer = self._parse(eof=True)
            except ValueError:
                answer = None
            if answer is not None:
                self.waiter.set_result(answer)
            elif not self.buffer and self.used:
                self.waiter.set_exception(_StaleConnection())
            else:
                self.waiter.set_exception(PostFailed("network", "connection closed"))

    # ----- one exchange ---------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        self.buffer.clear()
        self._head = None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self, eof: bool) -> tuple[int, bytes, bool] | None:
        """(status, body, keep-alive) once the whole answer is in, else None."""
        buffer = self.buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ValueError("header too large")
                return None
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            status = int(rest[:3])
            length: int | None = None
            chunked = False
            keep = version == "HTTP/1.1"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    chunked = "chunked" in value
                elif name == "connection":
                    keep = "close" not in value if keep else value == "keep-alive"
            if status in (204, 304) or 100 <= status < 200:
                length = 0
            self._head = (status, end + 4, length, chunked, keep)
        status, start, length, chunked, keep = self._head
        if chunked:
            body = self._chunks(start)
            return None if body is None else (status, body, keep)
        if length is not None:
            if len(buffer) - start < length:
                return None
            return status, bytes(buffer[start:start + length]), keep
        # Neither length nor chunks: the body runs until the server closes.
        return (status, bytes(buffer[start:]), False) if eof else None

    def _chunks(self, start: int) -> bytes | None:
        buffer, body, at = self.buffer, bytearray(), start
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            at = line_end + 2
            if size == 0:
                # Trailers (none from our server) end with an empty line.
                return bytes(body) if buffer.find(b"\r\n", at) >= 0 else None
            if len(buffer) < at + size + 2:
                return None
            body += buffer[at:at + size]
            at += size + 2


class Poster:
    """POSTs with at most `limit` in flight over keep-alive connections per host."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int], Deque[_Connection]] = collections.defaultdict(
            collections.deque)
        self.connections_opened = 0

    def set_limit(self, limit: int) -> None:
        """Posts in flight from now on; those already holding a slot of the old bound
        finish under it (for a moment both bounds count)."""
        if limit != self.limit:
            self.limit = limit
            self._slots = asyncio.Semaphore(limit)

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   timeout: float) -> tuple[int, bytes]:
        """(status, body) of our server's answer; raises `PostFailed` when none came
        within `timeout` seconds (connect and answer together, as a carrier counts)."""
        host, port, tls, netloc, target = _target(url)
        head = [b"POST ", target, b" HTTP/1.1\r\nHost: ", netloc.encode(),
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in headers.items():
            head += (name.encode(), b": ", value.encode(), b"\r\n")
        head += (b"\r\n", body)
        request = b"".join(head)
        async with self._slots:
            try:
                async with asyncio.timeout(timeout):
                    try:
                        return await self._exchange(host, port, tls, request, reuse=True)
                    except _StaleConnection:
                        return await self._exchange(host, port, tls, request, reuse=False)
            except TimeoutError:
                raise PostFailed("timeout", "timeout") from None
            except _StaleConnection:
                raise PostFailed("network", "connection closed") from None
            except OSError as exc:
                raise PostFailed("network", type(exc).__name__) from None

    async def _exchange(self, host: str, port: int, tls: bool, request: bytes, reuse: bool
                        ) -> tuple[int, bytes]:
        connection = self._checkout(host, port) if reuse else None
        if connection is None:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, host, port, ssl=_tls_context() if tls else None)
            self.connections_opened += 1
        try:
            status, body, keep = await connection.send(request)
        except BaseException:
            connection.close()  # a half-read answer must never meet the next request
            raise
        connection.used = True
        if keep and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle[(host, port)].append(connection)
        else:
            connection.close()
        return status, body

    def _checkout(self, host: str, port: int) -> _Connection | None:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely closed
            transport = connection.transport
            if not connection.closed and transport is not None \
                    and not transport.is_closing() \
                    and now - connection.idle_since < KEEPALIVE_SECONDS:
                return connection
            connection.close()
        return None

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
