"""A small keep-alive HTTP/1.1 client: pooled persistent connections per host, http/https.

Why not Tornado's AsyncHTTPClient: SimpleAsyncHTTPClient opens a new connection (and TLS
handshake) per request, and its per-request machinery cost about 1 ms of CPU per call
when profiled (curl_httpclient would reuse connections, but pycurl is not installed).
Carrier sends and simulator webhooks go to one or two hosts, so a pool of persistent
connections per (scheme, host, port) with Content-Length or chunked bodies is enough.

A pooled connection idle longer than IDLE_SECONDS is dropped rather than reused, so a
server's keep-alive timeout (60-75 s is usual) rarely closes one under us. If it happens
anyway and nothing of the answer arrived, `resend_stale=True` (webhooks, safe to repeat)
resends once on a fresh connection; otherwise the failure is reported (`StaleConnection`)
and the caller classifies it (carrier sends: retryable later).
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

MAX_CONNECTIONS_PER_HOST = 64
IDLE_SECONDS = 20.0
MAX_BODY = 4 * 1_048_576  # carrier answers are small; never buffer more than this

Key = tuple[str, str, int]


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; the last value wins
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class ConnectTimeout(Exception):
    pass


class RequestTimeout(Exception):
    pass


class StaleConnection(ConnectionError):
    """A pooled connection was closed by the server before any byte of the answer."""


class KeepAliveClient:
    def __init__(self, max_per_host: int = MAX_CONNECTIONS_PER_HOST,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Key, list[_Conn]] = {}
        self._limits: dict[Key, asyncio.Semaphore] = {}
        self._max = max_per_host
        self._ssl = ssl_context

    async def request(self, method: str, url: str, body: bytes, headers: dict[str, str], *,
                      connect_timeout: float, request_timeout: float,
                      resend_stale: bool = False) -> Response:
        """One request. Raises ConnectTimeout, RequestTimeout, StaleConnection or OSError."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("only http and https URLs are supported")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                            else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        raw = _head(method, target, parts.netloc, len(body), headers.items()) + body
        limit = self._limits.setdefault(key, asyncio.Semaphore(self._max))
        async with limit:
            for attempt in range(2):
                conn = self._pooled(key) or await self._connect(key, connect_timeout)
                try:
                    response, keep = await asyncio.wait_for(_exchange(conn, raw),
                                                            request_timeout)
                except StaleConnection:
                    conn.close()
                    if resend_stale and attempt == 0:
                        continue
                    raise
                except asyncio.TimeoutError:
                    conn.close()
                    raise RequestTimeout(url) from None
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    conn.close()
                    raise ConnectionResetError(f"{type(exc).__name__}") from None
                if keep:
                    conn.idle_since = time.monotonic()
                    self._idle.setdefault(key, []).append(conn)
                else:
                    conn.close()
                return response
        raise StaleConnection(url)

    def _pooled(self, key: Key) -> _Conn | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            if now - conn.idle_since < IDLE_SECONDS and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _connect(self, key: Key, timeout: float) -> _Conn:
        scheme, host, port = key
        context = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context,
                                        server_hostname=host if context else None), timeout)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"{host}:{port}") from None
        return _Conn(reader, writer)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _head(method: str, target: str, host: str, length: int,
          headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _exchange(conn: _Conn, request: bytes) -> tuple[Response, bool]:
    reader, writer = conn.reader, conn.writer
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise StaleConnection("closed before the answer")
    version, status = status_line.split(b" ", 2)[:2]
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
    code = int(status)
    if code in (204, 304) or 100 <= code < 200:
        return Response(code, headers, b""), keep
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(code, headers, await _chunked(reader)), keep
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError("answer too large")
        return Response(code, headers, await reader.readexactly(length)), keep
    return Response(code, headers, await reader.read(MAX_BODY)), False  # body until close


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise ValueError("answer too large")
        out += await reader.readexactly(size)
        await reader.readline()
